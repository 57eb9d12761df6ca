//! # ldctq: a differentiable, no-reference quality criterion for low-dose CT
//!
//! A MedSigLIP-448 vision tower whose final patch tokens are modulated (FiLM) by the embedding of a
//! clinical prompt from the frozen text tower, pooled three ways (global, local, texture) into three
//! regression heads fused by a small MLP, giving a score `4 * sigmoid(logit / tau)` in [0, 4].
//! Paper: Demiroglu et al., "Prompt-Conditioned FiLM and Multi-Scale Fusion on MedSigLIP for Low-Dose CT
//! Quality Assessment" (arXiv 2511.12256).
//!
//! Modules: [`siglip`] (HF-exact SigLIP towers), [`checkpoint`] (HF folders and safetensors),
//! [`tokenizer`], [`preprocess`] (differentiable CT to `pixel_values`), [`io`] (DICOM, TIFF, npy, PNG),
//! [`metrics`] (PLCC, SROCC, KROCC).
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod criterion;
pub mod data;
pub mod denoise;
pub mod device;
pub mod ensemble;
pub mod error;
pub mod film;
pub mod fsutil;
pub mod heads;
pub mod io;
pub mod metrics;
pub mod model;
pub mod phantom;
pub mod preprocess;
pub mod rng;
pub mod runtime;
pub mod siglip;
pub mod simulate;
pub mod tokenizer;
pub mod train;

pub use error::{Error, Result};
