//! How a model behaves as an optimisation target (`ldctq audit`): what happens to an image when its
//! score is pushed up, and what the score says of blur and of noise.
//!
//! On a set of low-dose images with full-dose references (the `ldctq simulate` layout), per image:
//!
//! * **Ascent** ([`ascend`]): projected gradient ascent on the score from the low-dose input within
//!   an L-infinity ball of radius [`AuditOptions::epsilon`] (in [0, 1] display units, LDCTIQA window)
//!   intersected with [0, 1]: `x <- clip(x + step * sign(grad score(x)))`, [`AuditOptions::steps`]
//!   times, keeping each image's best-scoring iterate. The score gained, and the change in PSNR, SSIM
//!   (in [`AuditOptions::window`]) and VIF (HU + 1024) against the reference, as
//!   [`crate::metrics::full_reference`] computes them. A criterion whose gradient points towards the
//!   reference raises PSNR; one that rewards something else (smoothness, a texture) lowers it.
//! * **Blur curve** ([`blur_curve`]): the score of the reference blurred by a Gaussian of each
//!   sigma in [`AuditOptions::sigmas`] ([`crate::filters::gaussian`]). It should fall as sigma grows.
//! * **Noise curve** ([`noise_curve`]): the score of the reference with white noise of each level of
//!   [`AuditOptions::noise_levels`] times the rms of the low-dose image's own noise
//!   ([`crate::degrade::Degradation::WhiteNoise`]). It should fall as the level grows.
//!
//! [`run`] does the work ([`AuditRun`]), reporting progress through [`Event`]s; [`summarize`] the
//! means ([`Summary`]) and [`write_reports`] the files (`summary.md`, `audit.json` and, with the
//! `plots` feature, `audit.png`/`.svg`). Images are handled as the benchmark handles them: float32 in
//! [0, 1] through [`Window::LDCTIQA`], converted to the model's input space for scoring.
mod ascent;
mod curves;
mod report;
mod run;

pub use ascent::{ascend, Ascent, AscentOutcome, OnStep};
pub use curves::{blur_curve, noise_curve, NoiseCurve};
pub use report::{
    summarize, summary_markdown, write_reports, CurvePoint, DoseRow, StepRow, Summary, Written,
};
pub use run::run;

use crate::error::Error;
use crate::window::{Space, Window};
use serde::Serialize;
use std::path::PathBuf;

/// A bad audit argument or data set.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("epsilon must be a finite number > 0 (an L-infinity budget in [0, 1] units), got {0}")]
    Epsilon(f64),
    #[error("steps must be at least 1")]
    Steps,
    #[error("step size must be a finite number > 0, got {0}")]
    StepSize(f64),
    #[error("blur sigmas: {0}")]
    Sigmas(String),
    #[error("noise levels: {0}")]
    NoiseLevels(String),
    #[error("batch must be at least 1")]
    Batch,
    #[error("{0}: no images")]
    NoImages(PathBuf),
    /// An image without a full-dose reference: the audit measures everything against one.
    #[error(
        "{file}: no full-dose reference ({missing} image(s) lack one; an audit needs reference/ beside \
         image/, as `ldctq simulate` writes, or a manifest's reference column)"
    )]
    MissingReference { file: String, missing: usize },
    /// Reading an image, scoring or measuring failed.
    #[error(transparent)]
    Run(#[from] Error),
}

impl From<tch::TchError> for AuditError {
    fn from(e: tch::TchError) -> Self {
        Self::Run(e.into())
    }
}

impl From<crate::window::InvalidWindow> for AuditError {
    fn from(e: crate::window::InvalidWindow) -> Self {
        Self::Run(e.into())
    }
}

/// `Result` with [`AuditError`].
pub type Result<T, E = AuditError> = std::result::Result<T, E>;

/// How an audit runs.
#[derive(Debug, Clone, Serialize)]
pub struct AuditOptions {
    /// L-infinity budget of the ascent, in [0, 1] display units (1 = 1400 HU in the LDCTIQA window).
    pub epsilon: f64,
    /// Ascent steps.
    pub steps: usize,
    /// Step size of the ascent; `None`: `2.5 * epsilon / steps` (Madry et al.'s choice).
    pub step_size: Option<f64>,
    /// Gaussian sigmas (pixels) of the blur curve: increasing, each in [0, 50].
    pub sigmas: Vec<f64>,
    /// White-noise levels of the noise curve, in units of the rms of each low-dose image's noise:
    /// increasing, each finite and >= 0.
    pub noise_levels: Vec<f64>,
    /// Images per batch.
    pub batch: usize,
    /// HU window of PSNR and SSIM; the default, [`Window::LDCTIQA`], means the [0, 1] images as they are.
    pub window: Window,
    /// Seed of the noise curve's noise.
    pub seed: u64,
    /// Audit only the first images of the set.
    pub limit: Option<usize>,
    /// What the values of npy / integer TIFF files are; `None` refuses such files.
    #[serde(skip)]
    pub raw_as: Option<Space>,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            epsilon: 0.02,
            steps: 10,
            step_size: None,
            sigmas: vec![0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0],
            noise_levels: vec![0.0, 0.25, 0.5, 1.0, 2.0],
            batch: 8,
            window: Window::LDCTIQA,
            seed: 0,
            limit: None,
            raw_as: None,
        }
    }
}

impl AuditOptions {
    /// Checks every option.
    pub fn validate(&self) -> Result<()> {
        self.ascent()?;
        check_sigmas(&self.sigmas)?;
        check_noise_levels(&self.noise_levels)?;
        if self.batch == 0 {
            return Err(AuditError::Batch);
        }
        Ok(())
    }

    /// The ascent's settings, checked.
    pub fn ascent(&self) -> Result<Ascent> {
        let step_size = self.step_size.unwrap_or(2.5 * self.epsilon / self.steps.max(1) as f64);
        let a = Ascent { epsilon: self.epsilon, steps: self.steps, step_size };
        a.validate()?;
        Ok(a)
    }
}

/// Increasing (strictly), non-empty, each in [0, 50] (what [`crate::filters::gaussian`] takes).
pub(crate) fn check_sigmas(sigmas: &[f64]) -> Result<()> {
    check_increasing(sigmas, 50.0, "[0, 50]").map_err(AuditError::Sigmas)
}

/// Increasing (strictly), non-empty, each finite and >= 0.
pub(crate) fn check_noise_levels(levels: &[f64]) -> Result<()> {
    check_increasing(levels, f64::MAX, "finite and >= 0").map_err(AuditError::NoiseLevels)
}

fn check_increasing(xs: &[f64], max: f64, range: &str) -> Result<(), String> {
    if xs.is_empty() {
        return Err("expected at least one value".into());
    }
    if let Some(x) = xs.iter().find(|x| !(0.0..=max).contains(*x)) {
        return Err(format!("{x}: each value must be {range}"));
    }
    if let Some(w) = xs.windows(2).find(|w| w[1] <= w[0]) {
        return Err(format!("expected increasing values, got {} then {}", w[0], w[1]));
    }
    Ok(())
}

/// What [`run`] reports while it works (the caller draws progress bars and prints).
#[derive(Debug, Clone, Copy)]
pub enum Event {
    /// The ascent of the current batch finished step `step` of `steps`.
    Step { step: usize, steps: usize },
    /// `done` of `total` images are finished.
    Progress { done: usize, total: usize },
}

/// The audit of one image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageAudit {
    /// Path relative to the data set's root.
    pub file: String,
    pub frame: usize,
    /// Dose fraction from the set's `meta.json`, when present.
    pub dose: Option<f64>,
    pub score_input: f64,
    pub score_reference: f64,
    /// Score of the ascent's result (its best iterate).
    pub score_ascent: f64,
    pub psnr_input: f64,
    pub psnr_ascent: f64,
    /// PSNR of the point of the budget's box nearest the reference (`clamp(reference, x0 - epsilon,
    /// x0 + epsilon)`): the most any ascent within the budget can reach.
    pub psnr_ceiling: f64,
    pub ssim_input: f64,
    pub ssim_ascent: f64,
    /// VIF on HU + 1024, for images of at least 41 x 41.
    pub vif_input: Option<f64>,
    pub vif_ascent: Option<f64>,
    /// Largest change of a pixel made by the ascent (<= epsilon).
    pub linf: f64,
    /// Cosine between the score's gradient at the input and `reference - input`: > 0 when the
    /// ascent's first direction points towards the reference.
    pub gradient_cosine: f64,
    /// Score of the iterate at each step, `0..=steps` (step 0: the input).
    pub score_by_step: Vec<f64>,
    /// PSNR of the iterate at each step.
    pub psnr_by_step: Vec<f64>,
    /// Score of the reference blurred by each sigma of [`AuditOptions::sigmas`].
    pub blur_scores: Vec<f64>,
    /// Score of the reference with white noise at each level of [`AuditOptions::noise_levels`].
    pub noise_scores: Vec<f64>,
    /// rms (HU, over the body) of the low-dose image's noise: the unit of the noise levels.
    pub noise_hu: f64,
}

/// The raw results of an audit.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRun {
    pub images: Vec<ImageAudit>,
    pub options: AuditOptions,
    /// The step size the ascent used.
    pub step_size: f64,
    /// The criterion's name.
    pub criterion: String,
    pub seconds: f64,
}
