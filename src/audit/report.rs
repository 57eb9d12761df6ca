//! The means of an audit and its files: `summary.md`, `audit.json` and the plot `audit.png`/`.svg`.
use super::AuditRun;
use super::Result;
use crate::bench::Estimate;
use crate::error::Error;
use crate::metrics;
use crate::rng::Rng;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Bootstrap replicates of each interval.
const BOOTSTRAP: usize = 2000;

/// One point of a curve over the images: the mean score and its spread.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CurvePoint {
    /// Sigma (pixels) or noise level.
    pub x: f64,
    pub mean: f64,
    pub q25: f64,
    pub q75: f64,
    /// Fraction of images scored higher here than at the curve's first point.
    pub above_first: f64,
}

/// Means over the images at one ascent step.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepRow {
    pub step: usize,
    pub score: f64,
    /// Mean PSNR change from the input, dB.
    pub psnr_change: f64,
}

/// Means over the images of one dose.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DoseRow {
    pub dose: f64,
    pub n: usize,
    pub score_input: f64,
    pub score_gain: f64,
    pub psnr_change: f64,
    /// Mean PSNR change of the point nearest the reference within the budget, dB.
    pub psnr_ceiling_change: f64,
    pub ssim_change: f64,
}

/// Everything [`write_reports`] prints.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub images: usize,
    pub score_input: f64,
    pub score_reference: f64,
    /// Score of the ascent's result minus the input's (mean, 95% bootstrap interval).
    pub score_gain: Estimate,
    /// PSNR of the ascent's result minus the input's, dB.
    pub psnr_change: Estimate,
    /// The most the PSNR could change within the budget (mean over the images of
    /// [`super::ImageAudit::psnr_ceiling`] minus the input's), dB.
    pub psnr_ceiling_change: f64,
    pub ssim_change: Estimate,
    /// Over the images with a VIF (41 x 41 and larger).
    pub vif_change: Option<Estimate>,
    /// Fraction of images whose PSNR the ascent lowered.
    pub psnr_lowered: f64,
    /// Cosine between the score's gradient at the input and `reference - input`.
    pub gradient_cosine: Estimate,
    /// Largest pixel change over all images (at most epsilon).
    pub linf: f64,
    pub by_step: Vec<StepRow>,
    pub by_dose: Vec<DoseRow>,
    /// Score against blur sigma, at [`super::AuditOptions::sigmas`].
    pub blur: Vec<CurvePoint>,
    /// Score against white-noise level, at [`super::AuditOptions::noise_levels`].
    pub noise: Vec<CurvePoint>,
}

impl Summary {
    /// The ascent lowers PSNR on average (what `ldctq audit --strict` refuses).
    pub fn ascent_lowers_psnr(&self) -> bool {
        self.psnr_change.mean < 0.0
    }

    /// Some blur of the reference scores higher, on average, than the curve's first sigma.
    pub fn blur_rewarded(&self) -> bool {
        rewarded(&self.blur)
    }

    /// Some added noise scores higher, on average, than the curve's first level.
    pub fn noise_rewarded(&self) -> bool {
        rewarded(&self.noise)
    }
}

fn rewarded(curve: &[CurvePoint]) -> bool {
    curve.first().is_some_and(|first| curve[1..].iter().any(|p| p.mean > first.mean))
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

fn quantile(xs: &[f64], q: f64) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let h = (v.len().max(1) - 1) as f64 * q;
    let (i, f) = (h.floor() as usize, h.fract());
    match (v.get(i), v.get(i + 1)) {
        (Some(a), Some(b)) => a + f * (b - a),
        (Some(a), None) => *a,
        _ => f64::NAN,
    }
}

fn estimate(xs: &[f64], seed: u64, stream: u64) -> Estimate {
    let seed = Rng::derive(&[seed, stream]).next_u64();
    Estimate { mean: mean(xs), ci: metrics::bootstrap_ci(xs, mean, BOOTSTRAP, seed).ok(), n: xs.len() }
}

/// The curve through `xs` of the per-image values `values[image][point]`.
fn curve(xs: &[f64], values: &[Vec<f64>]) -> Vec<CurvePoint> {
    xs.iter()
        .enumerate()
        .map(|(k, &x)| {
            let at: Vec<f64> = values.iter().map(|v| v[k]).collect();
            let above = values.iter().filter(|v| v[k] > v[0]).count();
            CurvePoint {
                x,
                mean: mean(&at),
                q25: quantile(&at, 0.25),
                q75: quantile(&at, 0.75),
                above_first: above as f64 / values.len().max(1) as f64,
            }
        })
        .collect()
}

/// The means of `run`, with bootstrap intervals seeded from its options.
pub fn summarize(run: &AuditRun) -> Summary {
    let im = &run.images;
    let seed = run.options.seed;
    let diff = |f: &dyn Fn(&super::ImageAudit) -> f64| im.iter().map(f).collect::<Vec<f64>>();
    let psnr = diff(&|i| i.psnr_ascent - i.psnr_input);
    let vif: Vec<f64> = im.iter().filter_map(|i| Some(i.vif_ascent? - i.vif_input?)).collect();
    let steps = im.first().map_or(0, |i| i.score_by_step.len());
    let by_step = (0..steps)
        .map(|k| StepRow {
            step: k,
            score: mean(&diff(&|i| i.score_by_step[k])),
            psnr_change: mean(&diff(&|i| i.psnr_by_step[k] - i.psnr_by_step[0])),
        })
        .collect();
    let mut doses: Vec<f64> = im.iter().filter_map(|i| i.dose).collect();
    doses.sort_by(|a, b| b.total_cmp(a));
    doses.dedup();
    let by_dose = doses
        .into_iter()
        .map(|d| {
            let at: Vec<&super::ImageAudit> = im.iter().filter(|i| i.dose == Some(d)).collect();
            let m =
                |f: &dyn Fn(&super::ImageAudit) -> f64| mean(&at.iter().map(|i| f(i)).collect::<Vec<_>>());
            DoseRow {
                dose: d,
                n: at.len(),
                score_input: m(&|i| i.score_input),
                score_gain: m(&|i| i.score_ascent - i.score_input),
                psnr_change: m(&|i| i.psnr_ascent - i.psnr_input),
                psnr_ceiling_change: m(&|i| i.psnr_ceiling - i.psnr_input),
                ssim_change: m(&|i| i.ssim_ascent - i.ssim_input),
            }
        })
        .collect();
    Summary {
        images: im.len(),
        score_input: mean(&diff(&|i| i.score_input)),
        score_reference: mean(&diff(&|i| i.score_reference)),
        score_gain: estimate(&diff(&|i| i.score_ascent - i.score_input), seed, 1),
        psnr_lowered: psnr.iter().filter(|d| **d < 0.0).count() as f64 / im.len().max(1) as f64,
        psnr_change: estimate(&psnr, seed, 2),
        gradient_cosine: estimate(&diff(&|i| i.gradient_cosine), seed, 5),
        psnr_ceiling_change: mean(&diff(&|i| i.psnr_ceiling - i.psnr_input)),
        ssim_change: estimate(&diff(&|i| i.ssim_ascent - i.ssim_input), seed, 3),
        vif_change: (!vif.is_empty()).then(|| estimate(&vif, seed, 4)),
        linf: im.iter().map(|i| i.linf).fold(0.0, f64::max),
        by_step,
        by_dose,
        blur: curve(&run.options.sigmas, &diff_vecs(im, |i| &i.blur_scores)),
        noise: curve(&run.options.noise_levels, &diff_vecs(im, |i| &i.noise_scores)),
    }
}

fn diff_vecs(im: &[super::ImageAudit], f: impl Fn(&super::ImageAudit) -> &Vec<f64>) -> Vec<Vec<f64>> {
    im.iter().map(|i| f(i).clone()).collect()
}

fn est(e: &Estimate, digits: usize) -> String {
    match e.ci {
        Some((lo, hi)) => format!("{:+.digits$} [{lo:+.digits$}, {hi:+.digits$}]", e.mean),
        None => format!("{:+.digits$}", e.mean),
    }
}

fn curve_rows(s: &mut String, name: &str, unit: &str, points: &[CurvePoint]) {
    s.push_str(&format!(
        "| {name} | mean score | 25% | 75% | images above {name} {} |\n|---|---|---|---|---|\n",
        points.first().map_or(0.0, |p| p.x)
    ));
    for p in points {
        s.push_str(&format!(
            "| {}{unit} | {:.3} | {:.3} | {:.3} | {:.0}% |\n",
            p.x,
            p.mean,
            p.q25,
            p.q75,
            100.0 * p.above_first
        ));
    }
}

/// `summary.md`: the ascent, by dose and by step, the blur and noise curves, and what they mean.
pub fn summary_markdown(run: &AuditRun, summary: &Summary, model: &str, data: &str) -> String {
    let o = &run.options;
    let mut s = format!(
        "# ldctq audit\n\nModel `{model}` ({}), data `{data}`: {} images with full-dose references, \
         {:.1} s.\n\n",
        run.criterion, summary.images, run.seconds
    );
    s.push_str(&format!(
        "## Gradient ascent on the score\n\nFrom each low-dose input, {} steps of {:.4} (signed \
         gradient) within an L-infinity budget of {} ([0, 1] units, LDCTIQA window -300/1400; largest \
         change made {:.4}). PSNR and SSIM in the window {}; VIF on HU + 1024. Means with 95% \
         bootstrap intervals.\n\n",
        o.steps, run.step_size, o.epsilon, summary.linf, o.window
    ));
    s.push_str("| | value |\n|---|---|\n");
    s.push_str(&format!(
        "| score: input, reference | {:.3}, {:.3} |\n",
        summary.score_input, summary.score_reference
    ));
    s.push_str(&format!("| score gained | {} |\n", est(&summary.score_gain, 3)));
    s.push_str(&format!("| PSNR change (dB) | {} |\n", est(&summary.psnr_change, 3)));
    s.push_str(&format!(
        "| PSNR change of the point nearest the reference within the budget (the ceiling, dB) | {:+.3} |\n",
        summary.psnr_ceiling_change
    ));
    s.push_str(&format!(
        "| cosine of the gradient at the input and reference - input | {} |\n",
        est(&summary.gradient_cosine, 3)
    ));
    s.push_str(&format!("| SSIM change | {} |\n", est(&summary.ssim_change, 4)));
    if let Some(v) = &summary.vif_change {
        s.push_str(&format!("| VIF change | {} |\n", est(v, 4)));
    }
    s.push_str(&format!("| images whose PSNR fell | {:.0}% |\n\n", 100.0 * summary.psnr_lowered));
    if !summary.by_dose.is_empty() {
        s.push_str(
            "| dose | n | input score | score gained | PSNR change (dB) | ceiling (dB) | SSIM change |\n",
        );
        s.push_str("|---|---|---|---|---|---|---|\n");
        for d in &summary.by_dose {
            s.push_str(&format!(
                "| {} | {} | {:.3} | {:+.3} | {:+.3} | {:+.3} | {:+.4} |\n",
                d.dose, d.n, d.score_input, d.score_gain, d.psnr_change, d.psnr_ceiling_change, d.ssim_change
            ));
        }
        s.push('\n');
    }
    s.push_str("| step | mean score | mean PSNR change (dB) |\n|---|---|---|\n");
    for r in &summary.by_step {
        s.push_str(&format!("| {} | {:.3} | {:+.3} |\n", r.step, r.score, r.psnr_change));
    }
    s.push_str("\n## The score of the reference, blurred\n\nGaussian blur of the full-dose reference.\n\n");
    curve_rows(&mut s, "sigma", " px", &summary.blur);
    s.push_str(
        "\n## The score of the reference, with white noise\n\nThe reference plus white noise of LEVEL \
         times the rms of each low-dose image's own noise.\n\n",
    );
    curve_rows(&mut s, "level", "", &summary.noise);
    s.push_str("\n## Findings\n\n");
    let said = |b: bool, yes: &str, no: &str| if b { yes.to_string() } else { no.to_string() };
    s.push_str(&format!(
        "- {}\n- {}\n- {}\n",
        said(
            summary.ascent_lowers_psnr(),
            "Pushing the score up moves images away from the reference on average (PSNR falls): the \
             score is not a safe optimisation target in this budget.",
            "Pushing the score up moves images towards the reference on average (PSNR rises)."
        ),
        said(
            summary.blur_rewarded(),
            "Blurring the reference raises its mean score at some sigma: the score rewards blur.",
            "Blurring the reference never raises its mean score."
        ),
        said(
            summary.noise_rewarded(),
            "Adding white noise to the reference raises its mean score at some level.",
            "Adding white noise to the reference never raises its mean score."
        ),
    ));
    s
}

/// What [`write_reports`] wrote.
#[derive(Debug, Clone, Default)]
pub struct Written {
    pub files: Vec<PathBuf>,
    /// Why the plot is missing, when it could not be drawn (the other files are written).
    pub plots_error: Option<String>,
}

/// Writes `summary.md`, `audit.json` (options, summary, every image) and, with the `plots` feature,
/// `audit.png` and `audit.svg` to `dir`. `model` and `data` name what was audited.
pub fn write_reports(
    dir: &Path,
    run: &AuditRun,
    summary: &Summary,
    model: &str,
    data: &str,
) -> Result<Written> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut written = Written::default();
    let mut write = |name: &str, text: &str| -> Result<()> {
        let path = dir.join(name);
        crate::io::write_atomic(&path, text.as_bytes()).map_err(Error::from)?;
        written.files.push(path);
        Ok(())
    };
    let json = serde_json::json!({
        "ldctq": env!("CARGO_PKG_VERSION"),
        "model": model,
        "data": data,
        "criterion": run.criterion,
        "options": run.options,
        "step_size": run.step_size,
        "seconds": run.seconds,
        "summary": summary,
        "findings": {
            "ascent_lowers_psnr": summary.ascent_lowers_psnr(),
            "blur_rewarded": summary.blur_rewarded(),
            "noise_rewarded": summary.noise_rewarded(),
        },
        "images": run.images,
    });
    write("audit.json", &serde_json::to_string_pretty(&json).expect("serializes"))?;
    write("summary.md", &summary_markdown(run, summary, model, data))?;
    #[cfg(feature = "plots")]
    match draw_plot(dir, summary) {
        Ok(files) => written.files.extend(files),
        Err(e) => written.plots_error = Some(e.to_string()),
    }
    Ok(written)
}

/// Four panels: score against blur sigma and against noise level (mean and quartiles), and the
/// ascent's mean score and PSNR change by step.
#[cfg(feature = "plots")]
fn draw_plot(dir: &Path, summary: &Summary) -> crate::plots::PlotResult<Vec<PathBuf>> {
    use crate::plots::{xy_panels, Series, XyPanel};
    let series = |name: &str, pts: Vec<(f64, f64)>| Series { name: name.into(), points: pts };
    let quartiles = |c: &[CurvePoint]| {
        vec![
            series("mean", c.iter().map(|p| (p.x, p.mean)).collect()),
            series("25%", c.iter().map(|p| (p.x, p.q25)).collect()),
            series("75%", c.iter().map(|p| (p.x, p.q75)).collect()),
        ]
    };
    let step = |f: &dyn Fn(&StepRow) -> f64| summary.by_step.iter().map(|r| (r.step as f64, f(r))).collect();
    let panels = [
        XyPanel {
            title: "Score of the reference vs blur".into(),
            x_label: "Gaussian sigma (px)".into(),
            lines: quartiles(&summary.blur),
        },
        XyPanel {
            title: "Score of the reference vs white noise".into(),
            x_label: "noise level (x low-dose noise rms)".into(),
            lines: quartiles(&summary.noise),
        },
        XyPanel {
            title: "Ascent: mean score".into(),
            x_label: "step".into(),
            lines: vec![series("score", step(&|r| r.score))],
        },
        XyPanel {
            title: "Ascent: mean PSNR change (dB)".into(),
            x_label: "step".into(),
            lines: vec![series("PSNR change", step(&|r| r.psnr_change))],
        },
    ];
    xy_panels(dir, "audit", &panels)
}
