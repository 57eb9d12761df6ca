//! The files of a run: `per_image.csv`, `summary.csv`, `summary.json`, `summary.md` and plots.
use super::{BenchRun, Estimate, MethodKind, MethodRun, MethodSummary, Provenance, Summary, Test};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map(|v| format!("{v:.digits$}")).unwrap_or_default()
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// `per_image.csv`: one row per image; `score_<method>` for every method, `psnr_<method>`,
/// `ssim_<method>` and `vif_<method>` when the set has references. Failed methods are left out.
pub fn per_image_csv(run: &BenchRun) -> String {
    let ok: Vec<&MethodRun> = run.methods.iter().filter(|m| m.ok()).collect();
    let refs = run.images.iter().any(|r| r.has_reference);
    let mut out = String::from("file,frame,label,dose,views,anatomy");
    for m in &ok {
        out.push_str(&format!(",score_{}", csv_field(&m.name)));
    }
    if refs {
        for m in ok.iter().filter(|m| m.kind != MethodKind::Reference) {
            out.push_str(&format!(",psnr_{0},ssim_{0},vif_{0}", csv_field(&m.name)));
        }
    }
    out.push('\n');
    for (i, r) in run.images.iter().enumerate() {
        out.push_str(&format!(
            "{},{},{},{},{},{}",
            csv_field(&r.file),
            r.frame,
            r.label.map(|l| l.to_string()).unwrap_or_default(),
            r.dose.map(|d| d.to_string()).unwrap_or_default(),
            r.views.map(|d| d.to_string()).unwrap_or_default(),
            csv_field(r.anatomy.as_deref().unwrap_or(""))
        ));
        for m in &ok {
            out.push_str(&format!(",{}", opt(m.scores[i], 6)));
        }
        if refs {
            for m in ok.iter().filter(|m| m.kind != MethodKind::Reference) {
                out.push_str(&format!(",{},{},{}", opt(m.psnr[i], 4), opt(m.ssim[i], 6), opt(m.vif[i], 6)));
            }
        }
        out.push('\n');
    }
    out
}

/// `summary.csv`: one row per method.
pub fn summary_csv(summary: &Summary) -> String {
    let mut out = String::from(
        "method,kind,status,n,mean_score,score_ci_lo,score_ci_hi,score_std,gain,gain_ci_lo,gain_ci_hi,improved,worsened,\
         wilcoxon_stat,wilcoxon_p,psnr,psnr_ci_lo,psnr_ci_hi,ssim,ssim_ci_lo,ssim_ci_hi,psnr_gain,ssim_gain,\
         srocc_score_psnr,srocc_score_ssim,vif,vif_ci_lo,vif_ci_hi,vif_gain,srocc_score_vif,error\n",
    );
    let est = |e: &Option<Estimate>, d: usize| {
        let (lo, hi) = e.as_ref().and_then(|e| e.ci).map_or((None, None), |(a, b)| (Some(a), Some(b)));
        format!("{},{},{}", opt(e.as_ref().map(|e| e.mean), d), opt(lo, d), opt(hi, d))
    };
    for m in &summary.methods {
        let kind =
            serde_json::to_value(m.kind).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        out.push_str(&format!(
            "{},{kind},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            csv_field(&m.name),
            m.status,
            m.n,
            est(&m.score, 6),
            opt(m.score_std, 6),
            est(&m.gain, 6),
            opt(m.improved, 4),
            opt(m.worsened, 4),
            opt(m.vs_input.as_ref().and_then(|t| t.statistic), 1),
            m.vs_input.as_ref().map(|t| format!("{:.6e}", t.p)).unwrap_or_default(),
            est(&m.psnr, 4),
            est(&m.ssim, 6),
            opt(m.psnr_gain, 4),
            opt(m.ssim_gain, 6),
            opt(m.srocc_score_psnr, 4),
            opt(m.srocc_score_ssim, 4),
            est(&m.vif, 6),
            opt(m.vif_gain, 6),
            opt(m.srocc_score_vif, 4),
            csv_field(m.error.as_deref().unwrap_or("")),
        ));
    }
    out
}

fn fmt_est(e: &Option<Estimate>, d: usize) -> String {
    match e {
        Some(Estimate { mean, ci: Some((lo, hi)), .. }) => format!("{mean:.d$} [{lo:.d$}, {hi:.d$}]"),
        Some(Estimate { mean, ci: None, .. }) => format!("{mean:.d$}"),
        None => "–".into(),
    }
}

fn fmt_p(t: &Option<Test>) -> String {
    match t {
        Some(Test { statistic: None, .. }) => "identical".into(),
        Some(Test { p, .. }) if *p < 1e-4 => format!("{p:.1e}"),
        Some(Test { p, .. }) => format!("{p:.4}"),
        None => "–".into(),
    }
}

/// `summary.md`.
pub fn summary_markdown(run: &BenchRun, summary: &Summary, prov: &Provenance) -> String {
    let mut s = String::new();
    let t = &run.timing;
    s.push_str("# ldctq denoiser benchmark\n\n");
    s.push_str(&format!(
        "Model `{}` ({}; sha256 `{}`), data `{}` ({} images, {} with a reference; sha256 `{}`).\n\n",
        prov.model.display(),
        prov.model_name,
        &prov.model_sha256[..16.min(prov.model_sha256.len())],
        prov.data.display(),
        summary.images,
        summary.with_reference,
        &prov.data_sha256[..16.min(prov.data_sha256.len())],
    ));
    s.push_str(&format!(
        "ldctq {}, tch {}, libtorch {}, device {} ({}); bootstrap {} replicates, seed {}; PSNR/SSIM in the HU \
         window {}/{}{}, VIF (sigma_n^2 = 2) on HU + 1024 as ldct-benchmark.\n\n",
        prov.ldctq_version,
        prov.tch_version,
        prov.libtorch_version,
        prov.device,
        prov.dtype,
        summary.bootstrap,
        summary.seed,
        summary.window.center,
        summary.window.width,
        if summary.anatomy_windows {
            " (images with an anatomy in meta.json: its window, as ldct-benchmark; see By anatomy)"
        } else {
            ""
        }
    ));
    if !run.anatomy_prompts.is_empty() {
        s.push_str(&format!(
            "Scores: each image conditioned on its anatomy (the model's anatomy prompts: {}; images without \
             one: the prompt alone).\n\n",
            run.anatomy_prompts.join(", ")
        ));
    }
    s.push_str(&format!(
        "Timing: {:.1} s for {} images, **{:.3} images/s** (whole benchmark, model loading excluded); \
         scoring {:.1} s (**{:.1}%** of the time), denoising {:.1} s, PSNR/SSIM/VIF {:.1} s, reading {:.1} s.\n\n",
        t.total_seconds,
        t.images,
        t.images_per_second,
        t.score_seconds,
        100.0 * t.score_share,
        t.denoise_seconds,
        t.metrics_seconds,
        t.load_seconds
    ));
    s.push_str(
        "## Methods\n\nScores are in [0, 4], higher is better; intervals are 95% bootstrap intervals; \
        `improved` is the fraction of images scored above the input; p is the two-sided Wilcoxon \
        signed-rank test of the paired scores against the input.\n\n",
    );
    s.push_str("| method | n | mean score | gain over input | improved | p vs input | PSNR (dB) | SSIM | VIF | SROCC score~PSNR | SROCC score~SSIM | SROCC score~VIF | denoise s |\n");
    s.push_str("|---|---:|---|---|---:|---:|---|---|---|---:|---:|---:|---:|\n");
    for m in summary.methods.iter().filter(|m| m.status == "ok") {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            md_cell(&m.name),
            m.n,
            fmt_est(&m.score, 3),
            if m.kind == MethodKind::Input { "–".into() } else { fmt_est(&m.gain, 3) },
            m.improved.map_or("–".into(), |f| format!("{:.0}%", 100.0 * f)),
            if m.kind == MethodKind::Input { "–".into() } else { fmt_p(&m.vs_input) },
            fmt_est(&m.psnr, 2),
            fmt_est(&m.ssim, 4),
            fmt_est(&m.vif, 4),
            opt(m.srocc_score_psnr, 3),
            opt(m.srocc_score_ssim, 3),
            opt(m.srocc_score_vif, 3),
            if m.kind == MethodKind::Denoiser { format!("{:.2}", m.denoise_seconds) } else { "–".into() },
        ));
    }
    let failed: Vec<&MethodSummary> = summary.methods.iter().filter(|m| m.status != "ok").collect();
    if !failed.is_empty() {
        s.push_str("\n## Failed denoisers\n\n");
        for (m, r) in failed.iter().zip(run.methods.iter().filter(|m| !m.ok())) {
            s.push_str(&format!(
                "- **{}** (`{}`), stopped at image {}: {}\n",
                md_cell(&m.name),
                md_cell(r.spec.as_deref().unwrap_or("")),
                r.failed_at.unwrap_or(0),
                md_cell(m.error.as_deref().unwrap_or(""))
            ));
        }
    }
    if summary.with_reference > 0 || summary.srocc_input_label.is_some() {
        s.push_str("\n## Agreement\n\n");
        for (metric, r) in [
            ("PSNR", summary.pooled_srocc_score_psnr),
            ("SSIM", summary.pooled_srocc_score_ssim),
            ("VIF", summary.pooled_srocc_score_vif),
        ] {
            if let Some(r) = r {
                s.push_str(&format!(
                    "- SROCC between the no-reference score and {metric} over all (method, image) pairs: {r:.3}\n"
                ));
            }
        }
        if let Some(r) = summary.srocc_input_label {
            s.push_str(&format!("- SROCC between the input's score and the data set's labels: {r:.3}\n"));
        }
    }
    if !summary.pairwise.is_empty() {
        s.push_str("\n## Pairwise comparisons\n\nMean of score(a) - score(b) over the images both have; two-sided \
            Wilcoxon signed-rank p, and Holm-adjusted over all pairs.\n\n| a | b | n | mean diff | p | p (Holm) |\n|---|---|---:|---:|---:|---:|\n");
        for p in &summary.pairwise {
            s.push_str(&format!(
                "| {} | {} | {} | {:+.4} | {} | {} |\n",
                md_cell(&p.a),
                md_cell(&p.b),
                p.n,
                p.mean_diff,
                fmt_p(&p.test),
                p.p_holm.map_or("–".into(), |q| if q < 1e-4 {
                    format!("{q:.1e}")
                } else {
                    format!("{q:.4}")
                })
            ));
        }
    }
    if !summary.by_dose.is_empty() {
        let names: Vec<&String> = summary.by_dose[0].mean_score.iter().map(|(n, _)| n).collect();
        s.push_str("\n## Mean score by dose\n\n| dose | n |");
        for n in &names {
            s.push_str(&format!(" {} |", md_cell(n)));
        }
        s.push_str("\n|---:|---:|");
        s.push_str(&"---:|".repeat(names.len()));
        s.push('\n');
        for row in &summary.by_dose {
            s.push_str(&format!("| {} | {} |", row.dose, row.n));
            for n in &names {
                let v = row.mean_score.iter().find(|(m, _)| m == *n).map(|(_, v)| format!("{v:.3}"));
                s.push_str(&format!(" {} |", v.unwrap_or_else(|| "–".into())));
            }
            s.push('\n');
        }
    }
    if !summary.by_anatomy.is_empty() {
        s.push_str(
            "\n## By anatomy\n\nMeans over the images of each anatomy (`meta.json`); PSNR and SSIM in the window \
             shown.\n\n| anatomy | window | n | method | score | PSNR (dB) | SSIM | VIF |\n|---|---|---:|---|---:|---:|---:|---:|\n",
        );
        for row in &summary.by_anatomy {
            for m in &row.methods {
                s.push_str(&format!(
                    "| {} | {}/{} | {} | {} | {} | {} | {} | {} |\n",
                    md_cell(&row.anatomy),
                    row.window.center,
                    row.window.width,
                    row.n,
                    md_cell(&m.method),
                    opt(m.score, 3),
                    opt(m.psnr, 2),
                    opt(m.ssim, 4),
                    opt(m.vif, 4)
                ));
            }
        }
    }
    s.push_str("\nFiles: `per_image.csv`, `summary.csv`, `summary.json`");
    if cfg!(feature = "plots") {
        s.push_str(", plots `scores.png`/`.svg`");
        if !summary.by_dose.is_empty() {
            s.push_str(", `score_vs_dose.png`/`.svg`");
        }
        if summary.with_reference > 0 {
            s.push_str(", `score_vs_psnr.png`/`.svg`");
        }
    }
    s.push_str(".\n");
    s
}

/// What [`write_reports`] wrote.
#[derive(Debug, Clone, Default)]
pub struct Written {
    pub files: Vec<PathBuf>,
    /// Why the plots are missing, when they could not be drawn (the other files are written).
    pub plots_error: Option<String>,
}

/// Writes `per_image.csv`, `summary.csv`, `summary.json`, `summary.md` and (with the `plots` feature)
/// the plots to `dir`. Plots that cannot be drawn are skipped, and [`Written::plots_error`] says why.
pub fn write_reports(dir: &Path, run: &BenchRun, summary: &Summary, prov: &Provenance) -> Result<Written> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut written = Written::default();
    let mut write = |name: &str, text: &str| -> Result<()> {
        let path = dir.join(name);
        crate::io::write_atomic(&path, text.as_bytes())?;
        written.files.push(path);
        Ok(())
    };
    write("per_image.csv", &per_image_csv(run))?;
    write("summary.csv", &summary_csv(summary))?;
    let json = serde_json::json!({
        "run": prov,
        "timing": run.timing,
        "summary": summary,
        "images": run.images,
        "methods": run.methods,
        "anatomy_prompts": run.anatomy_prompts,
    });
    write("summary.json", &serde_json::to_string_pretty(&json).expect("serializes"))?;
    write("summary.md", &summary_markdown(run, summary, prov))?;
    #[cfg(feature = "plots")]
    match draw_plots(dir, run) {
        Ok(files) => written.files.extend(files),
        Err(e) => written.plots_error = Some(e.to_string()),
    }
    Ok(written)
}

/// The plots of a run: score distributions per method, score against dose (when the set has doses)
/// and against PSNR (when it has references).
#[cfg(feature = "plots")]
fn draw_plots(dir: &Path, run: &BenchRun) -> crate::plots::PlotResult<Vec<PathBuf>> {
    use crate::plots::{boxes, points_and_means, scatter, Series};
    let ok: Vec<&MethodRun> = run.methods.iter().filter(|m| m.ok()).collect();
    let n = run.images.len();
    let groups: Vec<(String, Vec<Option<f64>>)> =
        ok.iter().map(|m| (m.name.clone(), m.scores.clone())).collect();
    let title = format!("No-reference score per method ({n} images)");
    let mut files = boxes(dir, "scores", &title, "score", &groups)?;
    let series = |methods: &[&MethodRun], x: &dyn Fn(&MethodRun, usize) -> Option<f64>| -> Vec<Series> {
        methods
            .iter()
            .map(|m| Series {
                name: m.name.clone(),
                points: (0..n).filter_map(|i| Some((x(m, i)?, m.scores[i]?))).collect(),
            })
            .collect()
    };
    if run.images.iter().any(|r| r.dose.is_some()) {
        let by_dose = series(&ok, &|_, i| run.images[i].dose);
        files.extend(points_and_means(
            dir,
            "score_vs_dose",
            "Score against dose",
            ("dose fraction", "score"),
            &by_dose,
        )?);
    }
    if run.images.iter().any(|r| r.has_reference) {
        let fr: Vec<&MethodRun> = ok.iter().copied().filter(|m| m.kind != MethodKind::Reference).collect();
        let by_psnr = series(&fr, &|m, i| m.psnr[i]);
        files.extend(scatter(dir, "score_vs_psnr", "Score against PSNR", ("PSNR (dB)", "score"), &by_psnr)?);
    }
    if let Some(maps) = &run.maps {
        let names: Vec<String> = run
            .images
            .iter()
            .map(|r| {
                let stem = Path::new(&r.file)
                    .file_stem()
                    .map_or(String::new(), |s| s.to_string_lossy().into_owned());
                if r.frame > 0 {
                    format!("{stem}-{}", r.frame)
                } else {
                    stem
                }
            })
            .collect();
        files.extend(maps.draw(dir, &names)?);
    }
    Ok(files)
}
