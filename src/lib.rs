//! # ldctq: a differentiable, no-reference quality criterion for low-dose CT
//!
//! A MedSigLIP-448 vision tower whose final patch tokens are modulated (FiLM) by the embedding of a
//! clinical prompt from the frozen text tower, pooled three ways (global, local, texture) into three
//! regression heads fused by a small MLP, giving a score `4 * sigmoid(logit / tau)` in [0, 4].
//! Paper: Demiroglu et al., "Prompt-Conditioned FiLM and Multi-Scale Fusion on MedSigLIP for Low-Dose CT
//! Quality Assessment" (arXiv 2511.12256).
//!
//! The score as a loss, in a few lines:
//! ```no_run
//! use ldctq::{Placement, QualityCriterion, Reduction, Scorer};
//! # fn main() -> ldctq::Result<()> {
//! let criterion = Scorer::load("models/default".as_ref(), Placement::default())?;
//! let images = tch::Tensor::rand([2, 1, 256, 256], (tch::Kind::Float, tch::Device::Cpu));
//! let images = images.set_requires_grad(true); // e.g. a denoiser's output
//! let loss = criterion.loss(&images, Reduction::Mean)?; // 4 - score, differentiable
//! loss.backward();
//! # Ok(()) }
//! ```
//!
//! The layers, each using only those above it:
//! - [`siglip`]: HF-exact SigLIP towers ([`config`], [`checkpoint`], [`tokenizer`]);
//! - [`film`] and [`heads`]: prompt FiLM, pooling, regression heads and fusion;
//! - [`model`]: the quality model and its folder; [`ensemble`]: k-fold ensembles and [`Scorer`];
//! - [`criterion`]: the differentiable criterion trait ([`QualityCriterion`]);
//! - [`train`] (ranking-loss trainer), [`bench`](mod@bench) (denoiser benchmark, [`denoise`] plugins),
//!   [`audit`] (the criterion as an optimisation target: gradient ascent, blur and noise curves), the C
//!   ABI (crate `ldctq-ffi`) and the `ldctq` tool.
//!
//! Shared below them: [`window`] (HU windows and what pixel values mean), [`preprocess`], [`io`]
//! (DICOM, TIFF, npy, PNG), [`data`] (image sets), [`metrics`], [`simulate`], [`degrade`] and [`phantom`]
//! (low-dose simulation, ordered degradations), [`filters`], [`rng`], [`placement`], and, with the `plots` feature, `plots`.
pub mod audit;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod criterion;
pub mod data;
pub mod degrade;
pub mod denoise;
pub mod ensemble;
pub mod error;
pub mod film;
pub mod filters;
pub mod heads;
pub mod io;
mod layers;
pub mod metrics;
pub mod model;
pub mod phantom;
pub mod placement;
#[cfg(feature = "plots")]
pub mod plots;
pub mod preprocess;
pub mod rng;
pub mod runtime;
pub mod siglip;
pub mod simulate;
pub mod tokenizer;
pub mod train;
pub mod window;

pub use criterion::{CriterionInfo, MapMethod, QualityCriterion, Reduction};
pub use ensemble::{Ensemble, Scorer};
pub use error::{Error, Result};
pub use model::{QualityConfig, QualityModel};
pub use placement::Placement;
pub use window::{Space, Window};
