//! The statistics of a run: intervals, paired tests, correlations, means by dose and anatomy.
use super::{BenchOptions, BenchRun, MethodKind, MethodRun};
use crate::metrics;
use crate::rng::Rng;
use crate::window::Window;
use serde::Serialize;

/// A two-sided paired Wilcoxon signed-rank test.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Test {
    /// `min(R+, R-)`; `None` when every difference is zero (then `p` is 1).
    pub statistic: Option<f64>,
    pub p: f64,
}

fn wilcoxon(diffs: &[f64]) -> Option<Test> {
    match metrics::wilcoxon_signed_rank(diffs) {
        Ok((statistic, p)) => Some(Test { statistic: Some(statistic), p }),
        Err(metrics::MetricError::NoNonZeroDifferences) if !diffs.is_empty() => {
            Some(Test { statistic: None, p: 1.0 })
        }
        Err(_) => None,
    }
}

/// Mean with a bootstrap interval.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Estimate {
    pub mean: f64,
    /// 95% percentile-bootstrap interval of the mean.
    pub ci: Option<(f64, f64)>,
    pub n: usize,
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

fn estimate(xs: &[f64], opts: &BenchOptions, stream: u64) -> Option<Estimate> {
    if xs.is_empty() {
        return None;
    }
    let seed = Rng::derive(&[opts.seed, stream]).next_u64();
    let ci = metrics::bootstrap_ci(xs, mean, opts.bootstrap, seed).ok();
    Some(Estimate { mean: mean(xs), ci, n: xs.len() })
}

/// The statistics of one method.
#[derive(Debug, Clone, Serialize)]
pub struct MethodSummary {
    pub name: String,
    pub kind: MethodKind,
    /// `ok` or `failed`.
    pub status: String,
    pub error: Option<String>,
    /// Images scored.
    pub n: usize,
    pub score: Option<Estimate>,
    pub score_std: Option<f64>,
    /// Mean of (score - input score), paired, with its interval (not for the input itself).
    pub gain: Option<Estimate>,
    /// Fraction of images whose score rose above / fell below the input's.
    pub improved: Option<f64>,
    pub worsened: Option<f64>,
    /// Wilcoxon signed-rank test of the paired differences against the input.
    pub vs_input: Option<Test>,
    pub psnr: Option<Estimate>,
    pub ssim: Option<Estimate>,
    /// Mean PSNR / SSIM minus the input's, over the same images.
    pub psnr_gain: Option<f64>,
    pub ssim_gain: Option<f64>,
    /// VIF (HU + 1024, as ldct-benchmark) and its gain over the input.
    pub vif: Option<Estimate>,
    pub vif_gain: Option<f64>,
    /// Spearman correlation across images between the score and PSNR / SSIM / VIF.
    pub srocc_score_psnr: Option<f64>,
    pub srocc_score_ssim: Option<f64>,
    pub srocc_score_vif: Option<f64>,
    pub denoise_seconds: f64,
}

/// A paired comparison of two methods over the images both have.
#[derive(Debug, Clone, Serialize)]
pub struct Pairwise {
    pub a: String,
    pub b: String,
    pub n: usize,
    /// Mean of score(a) - score(b).
    pub mean_diff: f64,
    pub test: Option<Test>,
    /// Holm-adjusted p-value over all pairs.
    pub p_holm: Option<f64>,
}

/// Mean scores per dose.
#[derive(Debug, Clone, Serialize)]
pub struct DoseRow {
    pub dose: f64,
    pub n: usize,
    /// Mean score per method (ok methods, in method order).
    pub mean_score: Vec<(String, f64)>,
}

/// Means over the images of one anatomy (`meta.json`'s `anatomy`).
#[derive(Debug, Clone, Serialize)]
pub struct AnatomyRow {
    pub anatomy: String,
    pub n: usize,
    /// The HU window of these images' PSNR and SSIM.
    pub window: Window,
    /// Per ok method, in method order: mean score, PSNR, SSIM and VIF over these images.
    pub methods: Vec<AnatomyMeans>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AnatomyMeans {
    pub method: String,
    pub score: Option<f64>,
    pub psnr: Option<f64>,
    pub ssim: Option<f64>,
    pub vif: Option<f64>,
}

/// Everything [`write_reports`](super::write_reports) prints.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub images: usize,
    pub with_reference: usize,
    pub methods: Vec<MethodSummary>,
    pub pairwise: Vec<Pairwise>,
    pub by_dose: Vec<DoseRow>,
    pub by_anatomy: Vec<AnatomyRow>,
    /// Spearman correlation between score and PSNR / SSIM over all (method, image) pairs with a
    /// reference (input and denoisers).
    pub pooled_srocc_score_psnr: Option<f64>,
    pub pooled_srocc_score_ssim: Option<f64>,
    pub pooled_srocc_score_vif: Option<f64>,
    /// Spearman correlation between the input's score and the data set's labels.
    pub srocc_input_label: Option<f64>,
    pub window: Window,
    /// Some images were measured in their anatomy's window rather than `window`.
    pub anatomy_windows: bool,
    pub bootstrap: usize,
    pub seed: u64,
}

fn values(xs: &[Option<f64>]) -> Vec<f64> {
    xs.iter().flatten().copied().collect()
}

/// Pairs `(a_i, b_i)` where both exist.
fn paired(a: &[Option<f64>], b: &[Option<f64>]) -> (Vec<f64>, Vec<f64>) {
    a.iter().zip(b).filter_map(|(x, y)| Some(((*x)?, (*y)?))).unzip()
}

/// The statistics of a run (see the module docs).
pub fn summarize(run: &BenchRun, opts: &BenchOptions) -> Summary {
    let input = &run.methods[0];
    let mut methods = Vec::new();
    for m in &run.methods {
        // One bootstrap stream per statistic, shared by all methods: paired resamples, so identical data
        // give identical intervals.
        let stream = 0;
        let scores = values(&m.scores);
        let mut s = MethodSummary {
            name: m.name.clone(),
            kind: m.kind,
            status: if m.ok() { "ok" } else { "failed" }.into(),
            error: m.error.as_ref().map(|e| e.to_string()),
            n: scores.len(),
            score: None,
            score_std: None,
            gain: None,
            improved: None,
            worsened: None,
            vs_input: None,
            psnr: None,
            ssim: None,
            psnr_gain: None,
            ssim_gain: None,
            vif: None,
            vif_gain: None,
            srocc_score_psnr: None,
            srocc_score_ssim: None,
            srocc_score_vif: None,
            denoise_seconds: m.denoise_seconds,
        };
        if m.ok() && !scores.is_empty() {
            s.score = estimate(&scores, opts, stream);
            if scores.len() > 1 {
                let mu = mean(&scores);
                s.score_std = Some(
                    (scores.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / (scores.len() - 1) as f64).sqrt(),
                );
            }
            if m.kind != MethodKind::Input {
                let (a, b) = paired(&m.scores, &input.scores);
                let diffs: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
                s.gain = estimate(&diffs, opts, stream + 1);
                let nd = diffs.len().max(1) as f64;
                s.improved = Some(diffs.iter().filter(|d| **d > 0.0).count() as f64 / nd);
                s.worsened = Some(diffs.iter().filter(|d| **d < 0.0).count() as f64 / nd);
                s.vs_input = wilcoxon(&diffs);
            }
            if m.kind != MethodKind::Reference {
                let (p, q) = (values(&m.psnr), values(&m.ssim));
                s.psnr = estimate(&p, opts, stream + 2);
                s.ssim = estimate(&q, opts, stream + 3);
                s.vif = estimate(&values(&m.vif), opts, stream + 4);
                if m.kind != MethodKind::Input {
                    let gain = |a: &[Option<f64>], b: &[Option<f64>]| {
                        let (x, y) = paired(a, b);
                        (!x.is_empty()).then(|| mean(&x) - mean(&y))
                    };
                    s.psnr_gain = gain(&m.psnr, &input.psnr);
                    s.ssim_gain = gain(&m.ssim, &input.ssim);
                    s.vif_gain = gain(&m.vif, &input.vif);
                }
                let (sc, p) = paired(&m.scores, &m.psnr);
                s.srocc_score_psnr = metrics::srocc(&sc, &p).ok();
                let (sc, q) = paired(&m.scores, &m.ssim);
                s.srocc_score_ssim = metrics::srocc(&sc, &q).ok();
                let (sc, v) = paired(&m.scores, &m.vif);
                s.srocc_score_vif = metrics::srocc(&sc, &v).ok();
            }
        }
        methods.push(s);
    }
    // Every pair of ok methods.
    let ok: Vec<&MethodRun> = run.methods.iter().filter(|m| m.ok()).collect();
    let mut pairwise = Vec::new();
    for (i, a) in ok.iter().enumerate() {
        for b in &ok[i + 1..] {
            let (x, y) = paired(&a.scores, &b.scores);
            let diffs: Vec<f64> = x.iter().zip(&y).map(|(x, y)| x - y).collect();
            pairwise.push(Pairwise {
                a: a.name.clone(),
                b: b.name.clone(),
                n: diffs.len(),
                mean_diff: mean(&diffs),
                test: wilcoxon(&diffs),
                p_holm: None,
            });
        }
    }
    holm(&mut pairwise);
    // By dose.
    let mut doses: Vec<f64> = run.images.iter().filter_map(|r| r.dose).collect();
    doses.sort_by(|a, b| b.total_cmp(a));
    doses.dedup();
    let by_dose = doses
        .iter()
        .map(|&d| {
            let idx: Vec<usize> = (0..run.images.len()).filter(|&i| run.images[i].dose == Some(d)).collect();
            let mean_score = ok
                .iter()
                .filter_map(|m| {
                    let v: Vec<f64> = idx.iter().filter_map(|&i| m.scores[i]).collect();
                    (!v.is_empty()).then(|| (m.name.clone(), mean(&v)))
                })
                .collect();
            DoseRow { dose: d, n: idx.len(), mean_score }
        })
        .collect();
    // Pooled correlations.
    // By anatomy.
    let mut anatomies: Vec<&str> = run.images.iter().filter_map(|r| r.anatomy.as_deref()).collect();
    anatomies.sort_unstable();
    anatomies.dedup();
    let by_anatomy = anatomies
        .iter()
        .map(|&a| {
            let idx: Vec<usize> =
                (0..run.images.len()).filter(|&i| run.images[i].anatomy.as_deref() == Some(a)).collect();
            let mean_of = |v: &[Option<f64>]| {
                let x: Vec<f64> = idx.iter().filter_map(|&i| v[i]).collect();
                (!x.is_empty()).then(|| mean(&x))
            };
            AnatomyRow {
                anatomy: a.to_string(),
                n: idx.len(),
                window: run.images[idx[0]].window, // one anatomy, one window
                methods: ok
                    .iter()
                    .map(|m| AnatomyMeans {
                        method: m.name.clone(),
                        score: mean_of(&m.scores),
                        psnr: mean_of(&m.psnr),
                        ssim: mean_of(&m.ssim),
                        vif: mean_of(&m.vif),
                    })
                    .collect(),
            }
        })
        .collect();
    let pooled = |metric: fn(&MethodRun) -> &[Option<f64>]| {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for m in ok.iter().filter(|m| m.kind != MethodKind::Reference) {
            let (x, y) = paired(&m.scores, metric(m));
            a.extend(x);
            b.extend(y);
        }
        metrics::srocc(&a, &b).ok()
    };
    let labels: Vec<Option<f64>> = run.images.iter().map(|r| r.label).collect();
    let (li, ll) = paired(&input.scores, &labels);
    Summary {
        images: run.images.len(),
        with_reference: run.images.iter().filter(|r| r.has_reference).count(),
        methods,
        pairwise,
        by_dose,
        by_anatomy,
        pooled_srocc_score_psnr: pooled(|m| &m.psnr),
        pooled_srocc_score_ssim: pooled(|m| &m.ssim),
        pooled_srocc_score_vif: pooled(|m| &m.vif),
        srocc_input_label: metrics::srocc(&li, &ll).ok(),
        window: run.window,
        anatomy_windows: run.images.iter().any(|r| r.window != run.window),
        bootstrap: opts.bootstrap,
        seed: opts.seed,
    }
}

/// Holm's step-down adjustment of the pairs' p-values.
fn holm(pairs: &mut [Pairwise]) {
    let mut idx: Vec<usize> = (0..pairs.len()).filter(|&i| pairs[i].test.is_some()).collect();
    let m = idx.len();
    idx.sort_by(|&a, &b| {
        let p = |i: usize| pairs[i].test.as_ref().map_or(1.0, |t| t.p);
        p(a).total_cmp(&p(b))
    });
    let mut running: f64 = 0.0;
    for (rank, &i) in idx.iter().enumerate() {
        let p = pairs[i].test.as_ref().map_or(1.0, |t| t.p);
        running = running.max(((m - rank) as f64 * p).min(1.0));
        pairs[i].p_holm = Some(running);
    }
}
