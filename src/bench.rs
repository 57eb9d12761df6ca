//! The no-reference denoiser benchmark behind `ldctq bench`.
//!
//! For every image of a [`Dataset`]: the quality score of the low-dose input, of each denoiser's output
//! and of the full-dose reference when the set has one (`reference/` beside `image/`), plus PSNR and SSIM
//! against the reference in an HU window and VIF on HU + 1024 (ldct-benchmark's three metrics). [`run`] does the work ([`BenchRun`]), [`summarize`] the
//! statistics ([`Summary`]) and [`write_reports`] the files: `per_image.csv`, `summary.md`, `summary.csv`,
//! `summary.json` and plots (`scores.png`/`.svg`, `score_vs_dose.png`/`.svg` when the set has a
//! `meta.json` with doses, `score_vs_psnr.png`/`.svg` when it has references).
//!
//! Images are handled in the LDCTIQA2023 space, float32 in [0, 1] (HU through the window -300/1400):
//! that is what denoisers see (see [`crate::denoise`]); a model that expects HU gets `x * 1400 - 1000`.
//!
//! Statistics, per method: mean score with a percentile-bootstrap 95% interval, the gain over the input
//! (paired, with its own interval), the fraction of images improved, a two-sided Wilcoxon signed-rank
//! test against the input and between every pair of methods (with Holm-adjusted p-values), PSNR, SSIM
//! and VIF (mean and interval) and the Spearman correlation between the score and each of them. Every random draw
//! derives from [`BenchOptions::seed`], so the same inputs give the same numbers.
use crate::criterion::QualityCriterion;
use crate::data::{Dataset, Sample};
use crate::denoise::{denoise_checked, hex, sha256_file, Candidate, DenoiseError, Denoiser, DenoiserInfo};
use crate::error::{Error, Result};
use crate::io::{self, Space};
use crate::metrics;
use crate::preprocess::InputSpace;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// How a benchmark runs.
#[derive(Debug, Clone, Serialize)]
pub struct BenchOptions {
    /// Images per batch (denoisers and the model see batches of this many images of one size).
    pub batch: usize,
    /// HU window `(center, width)` of PSNR and SSIM; the default, the LDCTIQA window (-300, 1400), means
    /// the [0, 1] images as they are (clipped to [0, 1]).
    pub window: (f64, f64),
    /// PSNR and SSIM of each image in the window of its anatomy (`meta.json`'s `anatomy`: one of
    /// [`ANATOMY_WINDOWS`]), as ldct-benchmark; images without one use `window`.
    pub anatomy_windows: bool,
    /// Bootstrap replicates of each interval.
    pub bootstrap: usize,
    /// Seed of the bootstraps (and of libtorch's generator, for TorchScript denoisers).
    pub seed: u64,
    /// Benchmark only the first images of the set.
    pub limit: Option<usize>,
    /// What the values of npy / integer TIFF files are (`Unit` or `Hu`); `None` refuses such files.
    #[serde(skip)]
    pub raw_as: Option<Space>,
    /// Write every denoised image as a TIFF to `DIR/<method>/<file>.tif`.
    #[serde(skip)]
    pub save_images: Option<PathBuf>,
    /// Show a progress bar.
    #[serde(skip)]
    pub progress: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            batch: 8,
            window: InputSpace::LDCTIQA_WINDOW,
            anatomy_windows: false,
            bootstrap: 2000,
            seed: 0,
            limit: None,
            raw_as: None,
            save_images: None,
            progress: false,
        }
    }
}

/// One benchmarked image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageRecord {
    /// Path relative to the data set's root.
    pub file: String,
    pub frame: usize,
    /// The data set's label (mean opinion score), when it has one.
    pub label: Option<f64>,
    /// Dose fraction from the set's `meta.json`, when present.
    pub dose: Option<f64>,
    /// Views from the set's `meta.json`, when present.
    pub views: Option<i64>,
    /// Anatomy from the set's `meta.json` (e.g. chest, abdomen, neuro), when present.
    pub anatomy: Option<String>,
    /// The HU window of this image's PSNR and SSIM.
    pub window: (f64, f64),
    pub has_reference: bool,
}

/// What a method is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MethodKind {
    /// The low-dose image itself.
    Input,
    /// The full-dose reference.
    Reference,
    Denoiser,
}

/// Per-image results of one method, aligned with [`BenchRun::images`] (`None`: not available).
#[derive(Debug, Clone, Serialize)]
pub struct MethodRun {
    pub name: String,
    pub kind: MethodKind,
    /// The `--denoiser` text.
    pub spec: Option<String>,
    pub info: Option<DenoiserInfo>,
    pub scores: Vec<Option<f64>>,
    pub psnr: Vec<Option<f64>>,
    pub ssim: Vec<Option<f64>>,
    /// VIF on HU + 1024 (as ldct-benchmark), for images of at least 41 x 41.
    pub vif: Vec<Option<f64>>,
    /// Why the denoiser stopped (load, create or a batch): it has no statistics then.
    pub error: Option<DenoiseError>,
    /// Index of the first image of the batch that failed.
    pub failed_at: Option<usize>,
    /// Seconds spent in the denoiser.
    pub denoise_seconds: f64,
}

impl MethodRun {
    fn new(name: &str, kind: MethodKind, n: usize) -> Self {
        Self {
            name: name.into(),
            kind,
            spec: None,
            info: None,
            scores: vec![None; n],
            psnr: vec![None; n],
            ssim: vec![None; n],
            vif: vec![None; n],
            error: None,
            failed_at: None,
            denoise_seconds: 0.0,
        }
    }

    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// Where the time went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timing {
    pub images: usize,
    pub total_seconds: f64,
    /// Reading images and references.
    pub load_seconds: f64,
    /// The quality model (inputs, outputs, references).
    pub score_seconds: f64,
    /// All denoisers.
    pub denoise_seconds: f64,
    /// PSNR and SSIM.
    pub metrics_seconds: f64,
    /// Images per second of the whole benchmark.
    pub images_per_second: f64,
    /// Fraction of the total spent scoring.
    pub score_share: f64,
}

/// The raw results of a benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRun {
    pub images: Vec<ImageRecord>,
    /// `input`, then `reference` (when the set has references), then the denoisers.
    pub methods: Vec<MethodRun>,
    pub timing: Timing,
    pub window: (f64, f64),
}

/// ldct-benchmark's per-anatomy HU windows `(center, width)` of PSNR and SSIM (its chest, abdomen and
/// neuro test patients).
pub const ANATOMY_WINDOWS: [(&str, (f64, f64)); 3] =
    [("abdomen", (50.0, 400.0)), ("chest", (-600.0, 1500.0)), ("neuro", (40.0, 80.0))];

/// The window of `anatomy` in [`ANATOMY_WINDOWS`].
pub fn anatomy_window(anatomy: &str) -> Option<(f64, f64)> {
    ANATOMY_WINDOWS.iter().find(|(name, _)| *name == anatomy).map(|(_, w)| *w)
}

/// What a `meta.json` says of an image, each part when known.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageMeta {
    pub dose: Option<f64>,
    pub views: Option<i64>,
    pub anatomy: Option<String>,
}

/// Dose, views and anatomy per file name, from a `meta.json` (a list of `{"file", "dose", "views",
/// "anatomy", ...}`, or an object keyed by file name).
pub fn read_meta(root: &Path) -> Result<BTreeMap<String, ImageMeta>> {
    let path = root.join("meta.json");
    let mut out = BTreeMap::new();
    if !path.is_file() {
        return Ok(out);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::Config { path: path.clone(), msg: e.to_string() })?;
    let entry = |v: &serde_json::Value| ImageMeta {
        dose: v.get("dose").and_then(|d| d.as_f64()),
        views: v.get("views").and_then(|d| d.as_i64()),
        anatomy: v.get("anatomy").and_then(|d| d.as_str()).map(|a| a.trim().to_ascii_lowercase()),
    };
    match &value {
        serde_json::Value::Array(items) => {
            for v in items {
                if let Some(file) = v.get("file").and_then(|f| f.as_str()) {
                    out.insert(file.to_string(), entry(v));
                }
            }
        }
        serde_json::Value::Object(map) => {
            for (file, v) in map {
                out.insert(file.clone(), entry(v));
            }
        }
        _ => {}
    }
    Ok(out)
}

/// The frame of `path` as a `(H, W)` f32 tensor in [0, 1] (LDCTIQA window for HU files).
fn read_unit(path: &Path, frame: usize, raw_as: Option<Space>) -> Result<Tensor> {
    let slices = io::read_image(path)?;
    let space = match (slices.space, raw_as) {
        (Space::Raw, Some(s)) if s != Space::Raw => s,
        (Space::Raw, _) => {
            return Err(Error::InvalidInput(format!(
                "{}: the meaning of its values is unknown; say whether they are HU or in [0, 1]",
                path.display()
            )))
        }
        (s, _) => s,
    };
    let (frames, h, w) = slices.pixels.dim();
    if frame >= frames {
        return Err(Error::InvalidInput(format!("{}: frame {frame} of {frames}", path.display())));
    }
    let values: Vec<f32> = slices.pixels.index_axis(ndarray::Axis(0), frame).iter().copied().collect();
    let x = Tensor::from_slice(&values).view([h as i64, w as i64]);
    Ok(match space {
        Space::Hu => {
            let (c, wd) = InputSpace::LDCTIQA_WINDOW;
            ((x - (c - wd / 2.0)) / wd).clamp(0.0, 1.0)
        }
        _ => x,
    })
}

/// `[0, 1]` LDCTIQA images in the model's input space.
fn to_model_space(x: &Tensor, input: InputSpace) -> Tensor {
    match input {
        InputSpace::Unit => x.shallow_clone(),
        InputSpace::Hu { .. } => {
            let (c, w) = InputSpace::LDCTIQA_WINDOW;
            x * w + (c - w / 2.0)
        }
    }
}

/// `[0, 1]` LDCTIQA images through the HU window `(center, width)`, clipped to [0, 1].
pub fn apply_window(x: &Tensor, window: (f64, f64)) -> Tensor {
    let (c0, w0) = InputSpace::LDCTIQA_WINDOW;
    if window == (c0, w0) {
        return x.clamp(0.0, 1.0);
    }
    let hu = x * w0 + (c0 - w0 / 2.0);
    ((hu - (window.0 - window.1 / 2.0)) / window.1).clamp(0.0, 1.0)
}

/// PSNR in dB of `(N, 1, H, W)` images in [0, 1] against references (data range 1), per image. A
/// perfect match gives 200 dB (the mean squared error is floored at 1e-20).
pub fn psnr(x: &Tensor, reference: &Tensor) -> Tensor {
    let x = x.to_kind(Kind::Double);
    let r = reference.to_kind(Kind::Double);
    let mse = (x - r).square().mean_dim(&[1i64, 2, 3][..], false, Kind::Double).clamp_min(1e-20);
    mse.log10() * -10.0
}

/// SSIM (Wang et al. 2004) of `(N, 1, H, W)` images against references, per image: an 11 x 11 Gaussian
/// window of sigma 1.5 (separable), K1 0.01, K2 0.03, data range 1, population (co)variances, mean
/// over the valid region (no padding), as `skimage.metrics.structural_similarity(gaussian_weights=True,
/// use_sample_covariance=False, data_range=1)` away from the borders. Images smaller than 11 pixels use
/// the largest odd window that fits. Computed in f64.
pub fn ssim(x: &Tensor, reference: &Tensor) -> Tensor {
    let (h, w) = (x.size()[2], x.size()[3]);
    let mut k = 11.min(h).min(w);
    if k % 2 == 0 {
        k -= 1;
    }
    let dev = x.device();
    let x = x.to_kind(Kind::Double);
    let y = reference.to_kind(Kind::Double).to_device(dev);
    let n = x.size()[0];
    let maps = Tensor::cat(&[&x, &y, &(&x * &x), &(&y * &y), &(&x * &y)], 0); // (5N, 1, H, W)
    let filtered = gaussian_filter(k, 1.5, dev)(&maps);
    let parts = filtered.split(n, 0);
    let (mx, my, mxx, myy, mxy) = (&parts[0], &parts[1], &parts[2], &parts[3], &parts[4]);
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let (sxx, syy, sxy) = (mxx - mx * mx, myy - my * my, mxy - mx * my);
    let num = (mx * my * 2.0 + c1) * (sxy * 2.0 + c2);
    let den = (mx * mx + my * my + c1) * (sxx + syy + c2);
    (num / den).mean_dim(&[1i64, 2, 3][..], false, Kind::Double)
}

/// The visual noise variance of VIF on HU + 1024 values (ldct-benchmark's, torchmetrics' default).
pub const VIF_NOISE_VARIANCE: f64 = 2.0;

/// `[0, 1]` LDCTIQA images as HU + 1024, clipped to [0, 2924] (air 0 to bone 1900 HU), the values
/// ldct-benchmark computes VIF on.
pub fn hu_plus_1024(x: &Tensor) -> Tensor {
    let (c, w) = InputSpace::LDCTIQA_WINDOW;
    (x.to_kind(Kind::Double) * w + (c - w / 2.0 + 1024.0)).clamp(0.0, 2924.0)
}

/// Smallest height and width [`vif`] takes: the coarsest scale needs 41 pixels.
pub const VIF_MIN_SIZE: i64 = 41;

/// Pixel-domain VIF (VIF-P, Sheikh and Bovik 2006) of `(N, 1, H, W)` images against references, per
/// image: four scales with Gaussian windows of 17, 9, 5 and 3 pixels (sigma = size / 5, applied as two
/// 1-D passes); before each
/// scale after the first, both images are filtered with that scale's window and decimated by 2; valid
/// convolutions; visual noise variance `sigma_n_sq`. The same definition, masks included, as
/// torchmetrics' `visual_information_fidelity`, which ldct-benchmark reports with `sigma_n_sq` 2 on
/// HU + 1024 values. `None` when H or W is below [`VIF_MIN_SIZE`]. Computed in f64.
pub fn vif(x: &Tensor, reference: &Tensor, sigma_n_sq: f64) -> Option<Tensor> {
    let [n, _, h, w] = x.size()[..] else { return None };
    if h < VIF_MIN_SIZE || w < VIF_MIN_SIZE {
        return None;
    }
    let dev = x.device();
    let opts = (Kind::Double, dev);
    let eps = 1e-10;
    let (mut d, mut r) = (x.to_kind(Kind::Double), reference.to_kind(Kind::Double).to_device(dev));
    let (mut num, mut den) = (Tensor::zeros([n], opts), Tensor::zeros([n], opts));
    for scale in 0..4 {
        let k = (1i64 << (4 - scale)) + 1; // 17, 9, 5, 3
        let filter = gaussian_filter(k, k as f64 / 5.0, dev);
        if scale > 0 {
            r = filter(&r).slice(2, 0, None, 2).slice(3, 0, None, 2);
            d = filter(&d).slice(2, 0, None, 2).slice(3, 0, None, 2);
        }
        let stats = filter(&Tensor::cat(&[&r, &d, &(&r * &r), &(&d * &d), &(&r * &d)], 0)); // (5N, 1, h', w')
        let p = stats.split(n, 0);
        let (mu_r, mu_d) = (&p[0], &p[1]);
        let mut var_r = (&p[2] - mu_r * mu_r).clamp_min(0.0);
        let var_d = (&p[3] - mu_d * mu_d).clamp_min(0.0);
        let cov = &p[4] - mu_r * mu_d;
        let zero = var_r.zeros_like();
        // Gain g and distortion variance var_v of the model d = g r + v, with the degenerate cases:
        // flat reference (no information to lose), flat distortion, negative gain.
        let mut g = &cov / (&var_r + eps);
        let mut var_v = &var_d - &g * &cov;
        let flat_r = var_r.lt(eps);
        g = zero.where_self(&flat_r, &g);
        var_v = var_d.where_self(&flat_r, &var_v);
        var_r = zero.where_self(&flat_r, &var_r);
        let flat_d = var_d.lt(eps);
        g = zero.where_self(&flat_d, &g);
        var_v = zero.where_self(&flat_d, &var_v);
        let negative = g.lt(0.0);
        var_v = var_d.where_self(&negative, &var_v);
        g = zero.where_self(&negative, &g);
        let var_v = var_v.clamp_min(eps);
        let dims = &[1i64, 2, 3][..];
        let kept = (&g * &g * &var_r / (var_v + sigma_n_sq) + 1.0).log10();
        num += kept.sum_dim_intlist(dims, false, Kind::Double);
        den += (&var_r / sigma_n_sq + 1.0).log10().sum_dim_intlist(dims, false, Kind::Double);
    }
    Some(num / den)
}

/// Valid (unpadded) filtering of `(N, 1, H, W)` f64 images with the normalised `k x k` Gaussian of
/// `sigma`, as two 1-D passes (the 2-D Gaussian is the outer product of the 1-D one).
fn gaussian_filter(k: i64, sigma: f64, dev: Device) -> impl Fn(&Tensor) -> Tensor {
    let taps: Vec<f64> =
        (0..k).map(|i| (-(i as f64 - (k - 1) as f64 / 2.0).powi(2) / (2.0 * sigma * sigma)).exp()).collect();
    let sum: f64 = taps.iter().sum();
    let g = Tensor::from_slice(&taps.iter().map(|t| t / sum).collect::<Vec<_>>()).to_device(dev);
    let (gx, gy) = (g.view([1, 1, 1, k]), g.view([1, 1, k, 1]));
    move |t: &Tensor| {
        t.conv2d(&gx, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1).conv2d(
            &gy,
            None::<Tensor>,
            [1, 1],
            [0, 0],
            [1, 1],
            1,
        )
    }
}

fn to_vec(t: &Tensor) -> Result<Vec<f64>> {
    Ok(Vec::<f64>::try_from(t.to_kind(Kind::Double).to_device(Device::Cpu).contiguous().view(-1))?)
}

/// Runs every candidate on every image of `data` (the first `opts.limit`) and scores everything with
/// `criterion`. Images and denoisers run on `device`. A denoiser that fails (to load, on a batch, with a
/// bad output) is recorded with its error and dropped; the others go on.
pub fn run(
    criterion: &dyn QualityCriterion,
    data: &Dataset,
    candidates: Vec<Candidate>,
    opts: &BenchOptions,
    device: Device,
) -> Result<BenchRun> {
    if opts.batch == 0 {
        return Err(Error::InvalidInput("batch must be at least 1".into()));
    }
    if !(opts.window.1 > 0.0 && opts.window.0.is_finite()) {
        return Err(Error::InvalidInput(format!("invalid window {:?}", opts.window)));
    }
    let start = Instant::now();
    tch::manual_seed(opts.seed as i64);
    let _guard = tch::no_grad_guard();
    let samples: &[Sample] = &data.samples[..opts.limit.unwrap_or(usize::MAX).min(data.samples.len())];
    if samples.is_empty() {
        return Err(Error::InvalidInput(format!("{}: no images", data.root.display())));
    }
    let meta = read_meta(&data.root)?;
    let images: Vec<ImageRecord> = samples
        .iter()
        .map(|s| {
            let name = s.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let ImageMeta { dose, views, anatomy } = meta.get(&name).cloned().unwrap_or_default();
            let file = s.path.strip_prefix(&data.root).unwrap_or(&s.path).display().to_string();
            let window = match (&anatomy, opts.anatomy_windows) {
                (Some(a), true) => anatomy_window(a).ok_or_else(|| {
                    let names = ANATOMY_WINDOWS.map(|(n, _)| n).join(", ");
                    Error::InvalidInput(format!(
                        "{}: anatomy {a:?} of {file} has no window (known: {names})",
                        data.root.join("meta.json").display(),
                    ))
                })?,
                _ => opts.window,
            };
            Ok(ImageRecord {
                file,
                frame: s.frame,
                label: s.label,
                dose,
                views,
                anatomy,
                window,
                has_reference: s.reference.is_some(),
            })
        })
        .collect::<Result<_>>()?;
    let n = samples.len();
    let has_refs = samples.iter().any(|s| s.reference.is_some());
    let mut methods = vec![MethodRun::new("input", MethodKind::Input, n)];
    if has_refs {
        methods.push(MethodRun::new("reference", MethodKind::Reference, n));
    }
    let first_denoiser = methods.len();
    let mut active: Vec<Option<Box<dyn Denoiser>>> = Vec::new();
    for c in candidates {
        let mut m = MethodRun::new(&c.name, MethodKind::Denoiser, n);
        m.spec = Some(c.spec);
        match c.denoiser {
            Ok(d) => {
                m.info = Some(d.info());
                active.push(Some(d));
            }
            Err(e) => {
                m.error = Some(e);
                m.failed_at = Some(0);
                active.push(None);
            }
        }
        methods.push(m);
    }
    let bar = if opts.progress {
        indicatif::ProgressBar::new(n as u64).with_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} images {per_sec} eta {eta} {msg}")
                .expect("valid template"),
        )
    } else {
        indicatif::ProgressBar::hidden()
    };
    for m in methods.iter().filter(|m| m.error.is_some()) {
        let e = m.error.as_ref().expect("filtered");
        bar.suspend(|| eprintln!("denoiser {} is skipped: {e}", m.name));
    }
    let input_space = criterion.info().input;
    let mut timing = Timing { images: n, ..Timing::default() };
    let mut i0 = 0;
    while i0 < n {
        // A batch: consecutive images of one size.
        let t = Instant::now();
        let mut frames = vec![read_unit(&samples[i0].path, samples[i0].frame, opts.raw_as)?];
        while i0 + frames.len() < n && frames.len() < opts.batch {
            let s = &samples[i0 + frames.len()];
            let next = read_unit(&s.path, s.frame, opts.raw_as)?;
            if next.size() != frames[0].size() {
                break;
            }
            frames.push(next);
        }
        let count = frames.len();
        let batch = &samples[i0..i0 + count];
        let mut refs: Vec<(usize, Tensor)> = Vec::new();
        for (j, s) in batch.iter().enumerate() {
            if let Some(rp) = &s.reference {
                let r = read_unit(rp, s.frame, opts.raw_as)
                    .or_else(|_| read_unit(rp, 0, opts.raw_as))
                    .map_err(|e| Error::InvalidInput(format!("reference of {}: {e}", s.path.display())))?;
                if r.size() != frames[j].size() {
                    return Err(Error::InvalidInput(format!(
                        "{}: reference {} is {:?}, the image {:?}",
                        s.path.display(),
                        rp.display(),
                        r.size(),
                        frames[j].size()
                    )));
                }
                refs.push((j, r));
            }
        }
        let x = Tensor::stack(&frames, 0).unsqueeze(1).to_kind(Kind::Float).contiguous().to_device(device);
        let ref_idx: Vec<usize> = refs.iter().map(|(j, _)| *j).collect();
        let ref_t = (!refs.is_empty()).then(|| {
            let list: Vec<&Tensor> = refs.iter().map(|(_, r)| r).collect();
            Tensor::stack(&list, 0).unsqueeze(1).to_kind(Kind::Float).to_device(device)
        });
        let ref_sel =
            Tensor::from_slice(&ref_idx.iter().map(|&j| j as i64).collect::<Vec<_>>()).to_device(device);
        // Each reference image's window (one call when they share it).
        let ref_windows: Vec<(f64, f64)> = ref_idx.iter().map(|&j| images[i0 + j].window).collect();
        let window_each = |t: &Tensor| match ref_windows.first() {
            Some(w0) if ref_windows.iter().all(|w| w == w0) => apply_window(t, *w0),
            _ => Tensor::cat(
                &ref_windows
                    .iter()
                    .enumerate()
                    .map(|(k, w)| apply_window(&t.narrow(0, k as i64, 1), *w))
                    .collect::<Vec<_>>(),
                0,
            ),
        };
        let ref_windowed = ref_t.as_ref().map(window_each);
        let ref_hu = ref_t.as_ref().map(hu_plus_1024);
        timing.load_seconds += t.elapsed().as_secs_f64();

        // Scores and full-reference metrics of one batch of images (of the method `m`).
        let evaluate = |m: &mut MethodRun, y: &Tensor, timing: &mut Timing| -> Result<()> {
            let t = Instant::now();
            let scores = to_vec(&criterion.score(&to_model_space(y, input_space))?)?;
            timing.score_seconds += t.elapsed().as_secs_f64();
            for (j, s) in scores.into_iter().enumerate() {
                m.scores[i0 + j] = Some(s);
            }
            if let Some(r) = &ref_windowed {
                let t = Instant::now();
                let y_sel = y.index_select(0, &ref_sel);
                let y = window_each(&y_sel);
                let (p, q) = (to_vec(&psnr(&y, r))?, to_vec(&ssim(&y, r))?);
                let v = match ref_hu.as_ref().and_then(|r| vif(&hu_plus_1024(&y_sel), r, VIF_NOISE_VARIANCE))
                {
                    Some(v) => to_vec(&v)?.into_iter().map(|x| x.is_finite().then_some(x)).collect(),
                    None => vec![None; p.len()],
                };
                for (k, &j) in ref_idx.iter().enumerate() {
                    m.psnr[i0 + j] = Some(p[k]);
                    m.ssim[i0 + j] = Some(q[k]);
                    m.vif[i0 + j] = v[k];
                }
                timing.metrics_seconds += t.elapsed().as_secs_f64();
            }
            Ok(())
        };
        bar.set_message("input");
        evaluate(&mut methods[0], &x, &mut timing)?;
        if let Some(r) = &ref_t {
            let t = Instant::now();
            let scores = to_vec(&criterion.score(&to_model_space(r, input_space))?)?;
            timing.score_seconds += t.elapsed().as_secs_f64();
            for (k, &j) in ref_idx.iter().enumerate() {
                methods[1].scores[i0 + j] = Some(scores[k]);
            }
        }
        for (k, slot) in active.iter_mut().enumerate() {
            let Some(denoiser) = slot.as_mut() else { continue };
            let m = &mut methods[first_denoiser + k];
            bar.set_message(m.name.clone());
            let t = Instant::now();
            let out = denoise_checked(denoiser.as_mut(), &x);
            let dt = t.elapsed().as_secs_f64();
            m.denoise_seconds += dt;
            timing.denoise_seconds += dt;
            match out {
                Ok(y) => {
                    evaluate(m, &y, &mut timing)?;
                    if let Some(dir) = &opts.save_images {
                        save_batch(&dir.join(&m.name), &y, &images[i0..i0 + count])?;
                    }
                }
                Err(e) => {
                    bar.suspend(|| {
                        eprintln!(
                            "denoiser {} failed on images {}..{}: {e}; it is dropped",
                            m.name,
                            i0,
                            i0 + count
                        )
                    });
                    m.error = Some(e);
                    m.failed_at = Some(i0);
                    *slot = None; // destroys the state; a plugin's library stays loaded
                }
            }
        }
        i0 += count;
        bar.inc(count as u64);
    }
    bar.finish_and_clear();
    timing.total_seconds = start.elapsed().as_secs_f64();
    timing.images_per_second = n as f64 / timing.total_seconds.max(1e-9);
    timing.score_share = timing.score_seconds / timing.total_seconds.max(1e-9);
    Ok(BenchRun { images, methods, timing, window: opts.window })
}

fn save_batch(dir: &Path, y: &Tensor, images: &[ImageRecord]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let y = y.to_device(Device::Cpu).to_kind(Kind::Float);
    let (h, w) = (y.size()[2] as usize, y.size()[3] as usize);
    for (j, rec) in images.iter().enumerate() {
        let values = Vec::<f32>::try_from(y.get(j as i64).contiguous().view(-1))?;
        let stem =
            Path::new(&rec.file).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let name = if rec.frame > 0 { format!("{stem}_{}.tif", rec.frame) } else { format!("{stem}.tif") };
        let image = ndarray::Array2::from_shape_vec((h, w), values)
            .map_err(|e| Error::InvalidInput(format!("saving {name}: {e}")))?;
        io::write_tiff_f32(&dir.join(name), &image.view())?;
    }
    Ok(())
}

// -------------------------------------------------------------------------------------------------------
// Statistics

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
    let seed = crate::data::Rng::derive(&[opts.seed, stream]).next_u64();
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
    pub window: (f64, f64),
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

/// Everything [`write_reports`] prints.
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
    pub window: (f64, f64),
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

// -------------------------------------------------------------------------------------------------------
// Provenance

/// Versions, hashes, seeds and options of a run: what `summary.json` records under `"run"`.
#[derive(Debug, Clone, Serialize)]
pub struct Provenance {
    pub ldctq_version: String,
    pub tch_version: String,
    pub libtorch_version: String,
    pub device: String,
    pub dtype: String,
    pub model: PathBuf,
    /// sha256 over the model folder's files (see [`hash_model`]).
    pub model_sha256: String,
    pub model_files: Vec<(String, String)>,
    pub model_name: String,
    pub data: PathBuf,
    /// sha256 over the benchmarked images, references, labels and `meta.json` (see [`hash_dataset`]).
    pub data_sha256: String,
    pub denoisers: Vec<String>,
    pub options: BenchOptions,
    pub command: Vec<String>,
}

/// The libtorch this binary runs on: `version.py` of the pip wheel (or `build-version` of a libtorch
/// archive) next to the library folder it was linked against.
pub fn libtorch_version() -> String {
    let lib = Path::new(env!("LDCTQ_LIBTORCH_LIB"));
    let root = lib.parent().unwrap_or(lib);
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("__version__ = ") {
                return v.trim().trim_matches(|c| c == '\'' || c == '"').to_string();
            }
        }
    }
    std::fs::read_to_string(root.join("build-version"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn hash_files(files: &mut Vec<(String, String)>, dir: &Path, prefix: &str) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    entries.sort();
    for p in entries {
        let name = format!("{prefix}{}", p.file_name().unwrap_or_default().to_string_lossy());
        files.push((name, sha256_file(&p).map_err(|e| Error::io(&p, e))?));
    }
    Ok(())
}

/// sha256 of a model folder: over `name\0sha256\n` of its files (not subfolders, not hidden files) in
/// name order, plus the member folders of an `ensemble.json`. The backbone is recorded by name only.
pub fn hash_model(dir: &Path) -> Result<(String, Vec<(String, String)>)> {
    use sha2::{Digest, Sha256};
    let mut files = Vec::new();
    hash_files(&mut files, dir, "")?;
    let ensemble = dir.join("ensemble.json");
    if ensemble.is_file() {
        let text = std::fs::read_to_string(&ensemble).map_err(|e| Error::io(&ensemble, e))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Config { path: ensemble.clone(), msg: e.to_string() })?;
        for (i, m) in v.get("members").and_then(|m| m.as_array()).into_iter().flatten().enumerate() {
            if let Some(p) = m.as_str() {
                hash_files(&mut files, &dir.join(p), &format!("member{i}/"))?;
            }
        }
    }
    let mut h = Sha256::new();
    for (name, sum) in &files {
        h.update(format!("{name}\0{sum}\n").as_bytes());
    }
    Ok((hex(&h.finalize()), files))
}

/// sha256 of the benchmarked part of a data set: over `file\0frame\0label\0sha256(image)\0sha256(reference)\n`
/// per image, then `meta.json`'s sha256 when present.
pub fn hash_dataset(data: &Dataset, limit: Option<usize>) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let n = limit.unwrap_or(usize::MAX).min(data.samples.len());
    for s in &data.samples[..n] {
        let file = s.path.strip_prefix(&data.root).unwrap_or(&s.path).display().to_string();
        let image = sha256_file(&s.path).map_err(|e| Error::io(&s.path, e))?;
        let reference = match &s.reference {
            Some(r) => sha256_file(r).map_err(|e| Error::io(r, e))?,
            None => String::new(),
        };
        let label = s.label.map(|l| l.to_string()).unwrap_or_default();
        h.update(format!("{file}\0{}\0{label}\0{image}\0{reference}\n", s.frame).as_bytes());
    }
    let meta = data.root.join("meta.json");
    if meta.is_file() {
        h.update(format!("meta.json\0{}\n", sha256_file(&meta).map_err(|e| Error::io(&meta, e))?).as_bytes());
    }
    Ok(hex(&h.finalize()))
}

// -------------------------------------------------------------------------------------------------------
// Reports

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
        summary.window.0,
        summary.window.1,
        if summary.anatomy_windows {
            " (images with an anatomy in meta.json: its window, as ldct-benchmark; see By anatomy)"
        } else {
            ""
        }
    ));
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
                    row.window.0,
                    row.window.1,
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
    s.push_str("\nFiles: `per_image.csv`, `summary.csv`, `summary.json`, plots `scores.png`/`.svg`");
    if !summary.by_dose.is_empty() {
        s.push_str(", `score_vs_dose.png`/`.svg`");
    }
    if summary.with_reference > 0 {
        s.push_str(", `score_vs_psnr.png`/`.svg`");
    }
    s.push_str(".\n");
    s
}

/// Writes `per_image.csv`, `summary.csv`, `summary.json`, `summary.md` and the plots to `dir`; returns
/// the files written. Plots that cannot be drawn are reported on stderr and skipped.
pub fn write_reports(
    dir: &Path,
    run: &BenchRun,
    summary: &Summary,
    prov: &Provenance,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut written = Vec::new();
    let mut write = |name: &str, text: &str| -> Result<()> {
        let path = dir.join(name);
        crate::fsutil::write_atomic(&path, text.as_bytes())?;
        written.push(path);
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
    });
    write("summary.json", &serde_json::to_string_pretty(&json).expect("serializes"))?;
    write("summary.md", &summary_markdown(run, summary, prov))?;
    match plots::draw_all(dir, run) {
        Ok(files) => written.extend(files),
        Err(e) => eprintln!("warning: plots not drawn: {e}"),
    }
    Ok(written)
}

/// The plots (plotters): PNG through an RGB buffer and the `png` crate, SVG directly. Text uses
/// DejaVu Sans loaded at run time (`LDCTQ_PLOT_FONT` overrides the path); without a font the plots are
/// drawn without any text.
pub mod plots {
    use super::{BenchRun, MethodKind, MethodRun};
    use plotters::coord::Shift;
    use plotters::prelude::*;
    use std::error::Error as StdError;
    use std::path::{Path, PathBuf};
    use std::sync::OnceLock;

    type Res<T> = std::result::Result<T, Box<dyn StdError>>;

    const SIZE: (u32, u32) = (960, 600);
    const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

    /// Registers the font once; false when there is none (plots are then drawn without text).
    pub fn font_available() -> bool {
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| {
            let path = std::env::var("LDCTQ_PLOT_FONT").unwrap_or_else(|_| DEFAULT_FONT.into());
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
                }
                Err(_) => false,
            }
        })
    }

    fn color(i: usize) -> RGBColor {
        const C: [(u8, u8, u8); 10] = [
            (31, 119, 180),
            (255, 127, 14),
            (44, 160, 44),
            (214, 39, 40),
            (148, 103, 189),
            (140, 86, 75),
            (227, 119, 194),
            (127, 127, 127),
            (188, 189, 34),
            (23, 190, 207),
        ];
        let (r, g, b) = C[i % C.len()];
        RGBColor(r, g, b)
    }

    /// Deterministic jitter in [-1, 1] for point `i`.
    fn jitter(i: usize) -> f64 {
        crate::rng::Rng::new(i as u64).uniform() * 2.0 - 1.0
    }

    fn quantile(sorted: &[f64], q: f64) -> f64 {
        let h = (sorted.len() - 1) as f64 * q;
        let (i, f) = (h.floor() as usize, h.fract());
        if i + 1 < sorted.len() {
            sorted[i] + f * (sorted[i + 1] - sorted[i])
        } else {
            sorted[i]
        }
    }

    fn padded(lo: f64, hi: f64) -> (f64, f64) {
        let span = (hi - lo).max(1e-3);
        (lo - 0.05 * span, hi + 0.05 * span)
    }

    fn write_png(path: &Path, buf: &[u8]) -> Res<()> {
        let file = std::fs::File::create(path)?;
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), SIZE.0, SIZE.1);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header()?.write_image_data(buf)?;
        Ok(())
    }

    type Area<DB> = DrawingArea<DB, Shift>;

    /// Draws `$body` (generic over the backend, using the area `$a`) to `DIR/STEM.png` and `.svg`.
    macro_rules! both {
        ($dir:expr, $stem:expr, |$a:ident| $body:expr) => {{
            let (png_path, svg_path) =
                ($dir.join(format!("{}.png", $stem)), $dir.join(format!("{}.svg", $stem)));
            let mut buf = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
            {
                let $a = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
                $body?;
            }
            write_png(&png_path, &buf)?;
            {
                let $a = SVGBackend::new(&svg_path, SIZE).into_drawing_area();
                $body?;
            }
            vec![png_path, svg_path]
        }};
    }

    /// Training curves of `train_log.jsonl` records: losses (left) and validation correlations
    /// (right) per epoch, one colour per fold and series; written to `DIR/curves.png` and `.svg`.
    pub fn training_curves(dir: &Path, logs: &[crate::train::EpochLog]) -> Res<Vec<PathBuf>> {
        let text = font_available();
        Ok(both!(dir, "curves", |a| curves(a, logs, text)))
    }

    fn curves<DB: DrawingBackend>(area: Area<DB>, logs: &[crate::train::EpochLog], text: bool) -> Res<()>
    where
        DB::ErrorType: 'static,
    {
        type Log = crate::train::EpochLog;
        type Series<'a> = [(&'a str, fn(&Log) -> f64); 2];
        let max_epoch = logs.iter().map(|l| l.epoch).max().unwrap_or(1) as f64;
        let max_loss = logs.iter().map(|l| l.train_loss.max(l.val_loss)).fold(0.0, f64::max).max(1e-3);
        let mut folds: Vec<usize> = logs.iter().map(|l| l.fold).collect();
        folds.dedup();
        area.fill(&WHITE)?;
        let panels = area.split_evenly((1, 2));
        let series: [(&str, f64, Series); 2] = [
            ("ranking loss", max_loss * 1.05, [("train", |l| l.train_loss), ("val", |l| l.val_loss)]),
            ("validation correlation", 1.0, [("SROCC", |l| l.val_srocc), ("PLCC", |l| l.val_plcc)]),
        ];
        for (panel, (title, top, lines)) in panels.iter().zip(series) {
            let mut b = ChartBuilder::on(panel);
            b.margin(12).x_label_area_size(36).y_label_area_size(48);
            if text {
                b.caption(title, ("sans-serif", 18));
            }
            let mut chart = b.build_cartesian_2d(0.5..max_epoch + 0.5, 0.0..top)?;
            let mut mesh = chart.configure_mesh();
            if text {
                mesh.x_desc("epoch");
            } else {
                mesh.x_labels(0).y_labels(0);
            }
            mesh.draw()?;
            for (k, &fold) in folds.iter().enumerate() {
                for (j, (name, f)) in lines.iter().enumerate() {
                    let pts: Vec<(f64, f64)> = logs
                        .iter()
                        .filter(|l| l.fold == fold)
                        .map(|l| (l.epoch as f64, f(l).max(0.0)))
                        .collect();
                    let c = color(2 * k + j);
                    let drawn = chart.draw_series(LineSeries::new(pts, c.stroke_width(2)))?;
                    if text {
                        drawn.label(format!("fold {fold} {name}")).legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                        });
                    }
                }
            }
            if text {
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()?;
            }
        }
        area.present()?;
        Ok(())
    }

    /// Every plot of a run.
    pub fn draw_all(dir: &Path, run: &BenchRun) -> Res<Vec<PathBuf>> {
        let text = font_available();
        let ok: Vec<&MethodRun> = run.methods.iter().filter(|m| m.ok()).collect();
        let n = run.images.len();
        let mut files = both!(dir, "scores", |a| boxes(a, &ok, n, text));
        if run.images.iter().any(|r| r.dose.is_some()) {
            files.extend(both!(dir, "score_vs_dose", |a| dose(a, run, &ok, text)));
        }
        if run.images.iter().any(|r| r.has_reference) {
            let fr: Vec<&MethodRun> =
                ok.iter().copied().filter(|m| m.kind != MethodKind::Reference).collect();
            files.extend(both!(dir, "score_vs_psnr", |a| psnr(a, &fr, text)));
        }
        Ok(files)
    }

    fn chart<'a, DB: DrawingBackend + 'a>(
        area: &'a Area<DB>,
        title: &str,
        text: bool,
        x: (f64, f64),
        y: (f64, f64),
    ) -> Res<
        ChartContext<
            'a,
            DB,
            Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
        >,
    >
    where
        DB::ErrorType: 'static,
    {
        area.fill(&WHITE)?;
        let mut b = ChartBuilder::on(area);
        b.margin(16);
        if text {
            b.caption(title, ("sans-serif", 20)).x_label_area_size(48).y_label_area_size(60);
        }
        Ok(b.build_cartesian_2d(x.0..x.1, y.0..y.1)?)
    }

    /// Score distributions: a box (quartiles, whiskers to the extremes within 1.5 IQR) and the points.
    fn boxes<DB: DrawingBackend>(area: Area<DB>, ok: &[&MethodRun], n: usize, text: bool) -> Res<()>
    where
        DB::ErrorType: 'static,
    {
        let all: Vec<f64> = ok.iter().flat_map(|m| m.scores.iter().flatten().copied()).collect();
        let (lo, hi) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
        let k = ok.len();
        let mut c = chart(
            &area,
            &format!("No-reference score per method ({n} images)"),
            text,
            (-0.5, k as f64 - 0.5),
            padded(lo, hi),
        )?;
        if text {
            let names: Vec<String> = ok.iter().map(|m| m.name.clone()).collect();
            let fmt = move |v: &f64| {
                let i = v.round();
                if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                    names[i as usize].clone()
                } else {
                    String::new()
                }
            };
            c.configure_mesh()
                .disable_x_mesh()
                .x_labels(k + 1)
                .x_label_formatter(&fmt)
                .y_desc("score")
                .label_style(("sans-serif", 14))
                .draw()?;
        } else {
            c.configure_mesh().disable_x_mesh().x_labels(0).y_labels(0).draw()?;
        }
        for (i, m) in ok.iter().enumerate() {
            let mut v: Vec<f64> = m.scores.iter().flatten().copied().collect();
            if v.is_empty() {
                continue;
            }
            v.sort_by(f64::total_cmp);
            let (q1, q2, q3) = (quantile(&v, 0.25), quantile(&v, 0.5), quantile(&v, 0.75));
            let iqr = q3 - q1;
            let wl = v.iter().copied().find(|&x| x >= q1 - 1.5 * iqr).unwrap_or(v[0]);
            let wh = v.iter().rev().copied().find(|&x| x <= q3 + 1.5 * iqr).unwrap_or(v[v.len() - 1]);
            let x = i as f64;
            let col = color(i);
            c.draw_series(std::iter::once(Rectangle::new(
                [(x - 0.3, q1), (x + 0.3, q3)],
                col.mix(0.25).filled(),
            )))?;
            c.draw_series(std::iter::once(Rectangle::new(
                [(x - 0.3, q1), (x + 0.3, q3)],
                col.stroke_width(2),
            )))?;
            c.draw_series(std::iter::once(PathElement::new(
                vec![(x - 0.3, q2), (x + 0.3, q2)],
                col.stroke_width(3),
            )))?;
            c.draw_series(std::iter::once(PathElement::new(vec![(x, q3), (x, wh)], col.stroke_width(1))))?;
            c.draw_series(std::iter::once(PathElement::new(vec![(x, q1), (x, wl)], col.stroke_width(1))))?;
            let pts: Vec<(f64, f64)> = m
                .scores
                .iter()
                .enumerate()
                .filter_map(|(j, s)| s.map(|s| (x + 0.12 * jitter(j * 31 + i), s)))
                .collect();
            c.draw_series(pts.into_iter().map(|p| Circle::new(p, 2, BLACK.mix(0.45).filled())))?;
        }
        area.present()?;
        Ok(())
    }

    fn legend<'a, DB: DrawingBackend + 'a>(
        c: &mut ChartContext<
            'a,
            DB,
            Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
        >,
        text: bool,
    ) -> Res<()>
    where
        DB::ErrorType: 'static,
    {
        if text {
            c.configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .position(SeriesLabelPosition::LowerRight)
                .draw()?;
        }
        Ok(())
    }

    /// Score against dose: every image as a point, the mean per dose as a line, per method.
    fn dose<DB: DrawingBackend>(area: Area<DB>, run: &BenchRun, ok: &[&MethodRun], text: bool) -> Res<()>
    where
        DB::ErrorType: 'static,
    {
        let doses: Vec<f64> = run.images.iter().filter_map(|r| r.dose).filter(|d| *d > 0.0).collect();
        let (dmin, dmax) =
            doses.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
        let log = dmax / dmin >= 4.0;
        let tx = |d: f64| if log { d.log10() } else { d };
        let all: Vec<f64> = ok.iter().flat_map(|m| m.scores.iter().flatten().copied()).collect();
        let (lo, hi) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
        let xr = padded(tx(dmin), tx(dmax));
        let mut c = chart(&area, "Score against dose", text, xr, padded(lo, hi))?;
        if text {
            let fmt = move |v: &f64| if log { format!("{:.3}", 10f64.powf(*v)) } else { format!("{v:.3}") };
            c.configure_mesh()
                .x_desc(if log { "dose fraction (log scale)" } else { "dose fraction" })
                .y_desc("score")
                .x_label_formatter(&fmt)
                .label_style(("sans-serif", 14))
                .draw()?;
        } else {
            c.configure_mesh().x_labels(0).y_labels(0).draw()?;
        }
        let mut levels: Vec<f64> = doses.clone();
        levels.sort_by(f64::total_cmp);
        levels.dedup();
        for (i, m) in ok.iter().enumerate() {
            let col = color(i);
            let pts: Vec<(f64, f64)> = run
                .images
                .iter()
                .zip(&m.scores)
                .filter_map(|(r, s)| Some((tx(r.dose.filter(|d| *d > 0.0)?), (*s)?)))
                .enumerate()
                .map(|(j, (x, y))| (x + 0.004 * (xr.1 - xr.0) * jitter(j * 17 + i), y))
                .collect();
            c.draw_series(pts.into_iter().map(|p| Circle::new(p, 2, col.mix(0.5).filled())))?;
            let means: Vec<(f64, f64)> = levels
                .iter()
                .filter_map(|&d| {
                    let v: Vec<f64> = run
                        .images
                        .iter()
                        .zip(&m.scores)
                        .filter(|(r, _)| r.dose == Some(d))
                        .filter_map(|(_, s)| *s)
                        .collect();
                    (!v.is_empty()).then(|| (tx(d), v.iter().sum::<f64>() / v.len() as f64))
                })
                .collect();
            let name = m.name.clone();
            c.draw_series(LineSeries::new(means, col.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], col.stroke_width(2)));
        }
        legend(&mut c, text)?;
        area.present()?;
        Ok(())
    }

    /// Score against PSNR, every (method, image) pair with a reference.
    fn psnr<DB: DrawingBackend>(area: Area<DB>, ok: &[&MethodRun], text: bool) -> Res<()>
    where
        DB::ErrorType: 'static,
    {
        let pairs: Vec<(f64, f64)> = ok
            .iter()
            .flat_map(|m| m.psnr.iter().zip(&m.scores).filter_map(|(p, s)| Some(((*p)?, (*s)?))))
            .collect();
        if pairs.is_empty() {
            area.fill(&WHITE)?;
            area.present()?;
            return Ok(());
        }
        let fold = |f: fn(&(f64, f64)) -> f64| {
            pairs.iter().map(f).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)))
        };
        let (xr, yr) = (fold(|p| p.0), fold(|p| p.1));
        let mut c = chart(&area, "Score against PSNR", text, padded(xr.0, xr.1), padded(yr.0, yr.1))?;
        if text {
            c.configure_mesh().x_desc("PSNR (dB)").y_desc("score").label_style(("sans-serif", 14)).draw()?;
        } else {
            c.configure_mesh().x_labels(0).y_labels(0).draw()?;
        }
        for (i, m) in ok.iter().enumerate() {
            let col = color(i);
            let pts: Vec<(f64, f64)> =
                m.psnr.iter().zip(&m.scores).filter_map(|(p, s)| Some(((*p)?, (*s)?))).collect();
            c.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, col.mix(0.6).filled())))?
                .label(m.name.clone())
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, col.filled()));
        }
        legend(&mut c, text)?;
        area.present()?;
        Ok(())
    }
}
