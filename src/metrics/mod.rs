//! Evaluation metrics: those of the LDCTIQA2023 challenge, the statistics a denoiser benchmark needs,
//! and the full-reference metrics of ldct-benchmark (PSNR, SSIM, VIF; [`full_reference`]).
//!
//! The challenge score is `|PLCC| + |SROCC| + |KROCC|` between predicted and radiologist quality scores
//! ([`evaluate`] returns it as [`Report::overall`], with MAE and RMSE). All correlations follow scipy:
//! [`plcc`] is `scipy.stats.pearsonr`, [`srocc`] is `spearmanr` (average ranks for ties) and [`krocc`] is
//! `kendalltau` (tau-b). Inputs are validated up front, so no function here returns NaN: a length mismatch,
//! too few items, a non-finite value or a constant vector is a [`MetricError`].
mod correlation;
pub mod full_reference;

pub use correlation::*;
pub use full_reference::{hu_plus_1024, psnr, ssim, vif, VIF_MIN_SIZE, VIF_NOISE_VARIANCE};
