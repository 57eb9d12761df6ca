//! The no-reference denoiser benchmark behind `ldctq bench`.
//!
//! For every image of a [`Dataset`](crate::data::Dataset): the quality score of the low-dose input, of
//! each denoiser's output and of the full-dose reference when the set has one (`reference/` beside
//! `image/`), plus PSNR and SSIM against the reference in an HU window and VIF on HU + 1024
//! (ldct-benchmark's three metrics, [`crate::metrics`]). [`run`] does the work ([`BenchRun`]),
//! [`summarize`] the statistics ([`Summary`]) and [`write_reports`] the files: `per_image.csv`,
//! `summary.md`, `summary.csv`, `summary.json` and, with the `plots` feature, plots (`scores.png`/`.svg`,
//! `score_vs_dose.png`/`.svg` when the set has a `meta.json` with doses, `score_vs_psnr.png`/`.svg` when
//! it has references). [`Provenance`] records versions, hashes and options. A benchmark split over an
//! array job ([`BenchOptions::shard`]) is joined again by [`read_run`] and [`merge`].
//!
//! Images are handled in the LDCTIQA2023 space, float32 in [0, 1] (HU through [`Window::LDCTIQA`]):
//! that is what denoisers see (see [`crate::denoise`]); a model that expects HU gets them back in HU.
//!
//! Statistics, per method: mean score with a percentile-bootstrap 95% interval, the gain over the input
//! (paired, with its own interval), the fraction of images improved, a two-sided Wilcoxon signed-rank
//! test against the input and between every pair of methods (with Holm-adjusted p-values), PSNR, SSIM
//! and VIF (mean and interval) and the Spearman correlation between the score and each of them. Every
//! random draw derives from [`BenchOptions::seed`], so the same inputs give the same numbers.
mod maps;
mod merge;
mod provenance;
mod report;
mod run;
mod stats;

pub use maps::{BenchMaps, ImageMap, MeanMap, PANEL_IMAGES};
pub use merge::{merge, read_run};
pub use provenance::{hash_dataset, hash_model, libtorch_version, Provenance};
pub use report::{per_image_csv, summary_csv, summary_markdown, write_reports, Written};
pub use run::run;
pub use stats::{
    summarize, AnatomyMeans, AnatomyRow, DoseRow, Estimate, MethodSummary, Pairwise, Summary, Test,
};

use crate::data::Shard;
use crate::denoise::{DenoiseError, DenoiserInfo};
use crate::window::{Space, Window};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How a benchmark runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchOptions {
    /// Images per batch (denoisers and the model see batches of this many images of one size).
    pub batch: usize,
    /// HU window of PSNR and SSIM; the default, [`Window::LDCTIQA`], means the [0, 1] images as they
    /// are (clipped to [0, 1]).
    pub window: Window,
    /// PSNR and SSIM of each image in the window of its anatomy (`meta.json`'s `anatomy`, see
    /// [`Window::for_anatomy`]), as ldct-benchmark; images without one use `window`.
    pub anatomy_windows: bool,
    /// Condition each image's scores on its anatomy (the manifest's column, else `meta.json`'s) when
    /// the criterion has anatomy prompts ([`CriterionInfo::anatomies`]); images without one get the
    /// prompt alone. Off: every image is scored with the criterion's own setting.
    ///
    /// [`CriterionInfo::anatomies`]: crate::criterion::CriterionInfo::anatomies
    #[serde(default = "yes")]
    pub anatomy_prompts: bool,
    /// Bootstrap replicates of each interval.
    pub bootstrap: usize,
    /// Seed of the bootstraps (and of libtorch's generator, for TorchScript denoisers).
    pub seed: u64,
    /// Benchmark only the first images of the set.
    pub limit: Option<usize>,
    /// Benchmark one part of the (limited) set ([`Shard::range`] with `batch`), for an array job whose
    /// outputs [`merge`] combines.
    #[serde(default)]
    pub shard: Option<Shard>,
    /// What the values of npy / integer TIFF files are; `None` refuses such files.
    #[serde(skip)]
    pub raw_as: Option<Space>,
    /// Write every denoised image as a TIFF to `DIR/<method>/<file>.tif`.
    #[serde(skip)]
    pub save_images: Option<PathBuf>,
    /// Collect quality maps ([`BenchRun::maps`]; drawn by [`write_reports`] as `maps_METHOD.png` and
    /// `mean_map_METHOD.png`).
    #[serde(skip)]
    pub maps: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            batch: 8,
            window: Window::LDCTIQA,
            anatomy_windows: false,
            anatomy_prompts: true,
            bootstrap: 2000,
            seed: 0,
            limit: None,
            shard: None,
            raw_as: None,
            save_images: None,
            maps: false,
        }
    }
}

fn yes() -> bool {
    true
}

/// What [`run`] reports while it works (the caller draws progress bars and prints).
#[derive(Debug)]
pub enum Event<'a> {
    /// A denoiser could not be loaded or created; it is skipped.
    Skipped { method: &'a str, error: &'a DenoiseError },
    /// A method starts on the current batch.
    Method { method: &'a str },
    /// A denoiser failed on images `first..end`; it is dropped, the others go on.
    Failed { method: &'a str, first: usize, end: usize, error: &'a DenoiseError },
    /// `done` of `total` images are finished.
    Progress { done: usize, total: usize },
}

/// One benchmarked image.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    pub window: Window,
    pub has_reference: bool,
}

/// What a method is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MethodKind {
    /// The low-dose image itself.
    Input,
    /// The full-dose reference.
    Reference,
    Denoiser,
}

/// Per-image results of one method, aligned with [`BenchRun::images`] (`None`: not available).
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timing {
    pub images: usize,
    pub total_seconds: f64,
    /// Reading images and references.
    pub load_seconds: f64,
    /// The quality model (inputs, outputs, references).
    pub score_seconds: f64,
    /// All denoisers.
    pub denoise_seconds: f64,
    /// PSNR, SSIM and VIF.
    pub metrics_seconds: f64,
    /// Images per second of the whole benchmark.
    pub images_per_second: f64,
    /// Fraction of the total spent scoring.
    pub score_share: f64,
}

/// The raw results of a benchmark.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchRun {
    pub images: Vec<ImageRecord>,
    /// `input`, then `reference` (when the set has references), then the denoisers.
    pub methods: Vec<MethodRun>,
    pub timing: Timing,
    pub window: Window,
    /// The anatomy prompts the scores were conditioned on image by image
    /// ([`BenchOptions::anatomy_prompts`]); empty when every image had the same prompt.
    #[serde(default)]
    pub anatomy_prompts: Vec<String>,
    /// Quality maps, when [`BenchOptions::maps`] asked for them (not saved in `summary.json`).
    #[serde(skip)]
    pub maps: Option<BenchMaps>,
}
