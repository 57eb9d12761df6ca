//! The prompt side of the model: the tokenizer and the frozen text tower, loaded on demand.
use crate::error::Result;
use crate::placement::Placement;
use crate::siglip::{l2_normalize, Pretrained};
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

/// The prompt side: tokenizer and a text tower loaded on demand, z_t cached per prompt.
pub(super) struct PromptEncoder {
    pub(super) backbone: Pretrained,
    /// The text tower's dtype: f32, or f64 for an f64 model (whose z_t must not carry f32 rounding).
    kind: Kind,
    cache: HashMap<String, Tensor>,
}

impl PromptEncoder {
    pub(super) fn new(backbone: Pretrained, kind: Kind) -> Self {
        Self { backbone, kind, cache: HashMap::new() }
    }

    /// L2-normalized text features of `prompt`, (d_t), on CPU in the encoder's dtype; the frozen text
    /// tower runs once per distinct prompt and is dropped afterwards.
    pub(super) fn z_t(&mut self, prompt: &str) -> Result<Tensor> {
        if let Some(z) = self.cache.get(prompt) {
            return Ok(z.shallow_clone());
        }
        let ids = self.backbone.tokenizer()?.encode_batch(&[prompt])?;
        let at = Placement { device: Device::Cpu, kind: self.kind };
        let z = l2_normalize(&self.backbone.text_features(&ids, at)?)?.f_squeeze_dim(0)?;
        self.cache.insert(prompt.to_string(), z.shallow_clone());
        Ok(z)
    }
}
