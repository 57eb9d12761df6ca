//! Hugging Face `config.json` of `SiglipModel`, as serde data with HF field names.
//!
//! Reference: transformers `models/siglip/configuration_siglip.py`; the MedSigLIP-448 values are in
//! `google/medsiglip-448/config.json`. Unknown keys are tolerated; the sizes that define the tensor
//! shapes are required (a missing one is reported with the file's path).
use crate::error::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize};
use std::path::Path;

fn default_num_channels() -> i64 {
    3
}
fn default_hidden_act() -> String {
    "gelu_pytorch_tanh".into()
}
fn default_layer_norm_eps() -> f64 {
    1e-6
}
fn default_vision_use_head() -> bool {
    true
}
fn default_max_position_embeddings() -> i64 {
    64
}

/// `image_size` is an int in transformers 4.x configs and may be `[h, w]` in 5.x; both mean a square here.
fn int_or_square_pair<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IntOrPair {
        Int(i64),
        Pair([i64; 2]),
    }
    match IntOrPair::deserialize(d)? {
        IntOrPair::Int(v) => Ok(v),
        IntOrPair::Pair([h, w]) if h == w => Ok(h),
        IntOrPair::Pair([h, w]) => Err(serde::de::Error::custom(format!("non-square image_size [{h}, {w}]"))),
    }
}

/// `vision_config` of `SiglipConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiglipVisionConfig {
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    #[serde(default = "default_num_channels")]
    pub num_channels: i64,
    #[serde(deserialize_with = "int_or_square_pair")]
    pub image_size: i64,
    #[serde(deserialize_with = "int_or_square_pair")]
    pub patch_size: i64,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_vision_use_head")]
    pub vision_use_head: bool,
}

/// `text_config` of `SiglipConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiglipTextConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    #[serde(default = "default_max_position_embeddings")]
    pub max_position_embeddings: i64,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Width of the text head; transformers defaults it to `hidden_size`.
    #[serde(default)]
    pub projection_size: Option<i64>,
}

/// `SiglipConfig` (`config.json` of a `SiglipModel` checkpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiglipConfig {
    pub text_config: SiglipTextConfig,
    pub vision_config: SiglipVisionConfig,
}

/// The shapes an encoder needs, shared by both towers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct EncoderConfig {
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub layer_norm_eps: f64,
    /// true: GELU with the tanh approximation (`gelu_pytorch_tanh`); false: exact GELU (`gelu`).
    pub gelu_tanh: bool,
}

fn gelu_tanh(act: &str) -> std::result::Result<bool, String> {
    match act {
        "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Ok(true),
        "gelu" => Ok(false),
        other => Err(format!("unsupported hidden_act {other:?} (expected gelu_pytorch_tanh or gelu)")),
    }
}

fn check_heads(what: &str, hidden: i64, heads: i64) -> std::result::Result<(), String> {
    if hidden <= 0 || heads <= 0 || hidden % heads != 0 {
        return Err(format!(
            "{what}: hidden_size {hidden} is not a positive multiple of num_attention_heads {heads}"
        ));
    }
    Ok(())
}

/// The [`EncoderConfig`] of a tower config (both have the same HF field names), validated.
macro_rules! encoder_config {
    ($what:expr, $c:expr) => {{
        check_heads($what, $c.hidden_size, $c.num_attention_heads)?;
        Ok(EncoderConfig {
            hidden_size: $c.hidden_size,
            intermediate_size: $c.intermediate_size,
            num_hidden_layers: $c.num_hidden_layers,
            num_attention_heads: $c.num_attention_heads,
            layer_norm_eps: $c.layer_norm_eps,
            gelu_tanh: gelu_tanh(&$c.hidden_act)?,
        })
    }};
}

impl SiglipVisionConfig {
    /// MedSigLIP-448 (`google/medsiglip-448/config.json`, vision_config).
    pub fn medsiglip_448() -> Self {
        Self {
            hidden_size: 1152,
            intermediate_size: 4304,
            num_hidden_layers: 27,
            num_attention_heads: 16,
            num_channels: 3,
            image_size: 448,
            patch_size: 14,
            hidden_act: default_hidden_act(),
            layer_norm_eps: 1e-6,
            vision_use_head: true,
        }
    }

    /// Patches per side at the configured image size.
    pub fn grid(&self) -> i64 {
        self.image_size / self.patch_size
    }

    pub(crate) fn encoder(&self) -> std::result::Result<EncoderConfig, String> {
        if self.patch_size <= 0 || self.image_size % self.patch_size != 0 {
            return Err(format!(
                "vision_config: image_size {} is not a multiple of patch_size {}",
                self.image_size, self.patch_size
            ));
        }
        encoder_config!("vision_config", self)
    }
}

impl SiglipTextConfig {
    /// Width of the text features (`head` output).
    pub fn projection_size(&self) -> i64 {
        self.projection_size.unwrap_or(self.hidden_size)
    }

    pub(crate) fn encoder(&self) -> std::result::Result<EncoderConfig, String> {
        encoder_config!("text_config", self)
    }
}

impl SiglipConfig {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let err = |msg: String| Error::Config { path: path.to_path_buf(), msg };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let cfg: Self = serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
        cfg.vision_config.encoder().map_err(err)?;
        cfg.text_config.encoder().map_err(err)?;
        Ok(cfg)
    }
}
