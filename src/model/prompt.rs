//! The prompt side of the model: the tokenizer and the frozen text tower, loaded on demand.
use crate::error::Result;
use crate::placement::Placement;
use crate::siglip::{l2_normalize, Pretrained};
use std::collections::HashMap;
use tch::Tensor;

/// The prompt side: tokenizer and a text tower loaded on demand, z_t cached per prompt.
pub(super) struct PromptEncoder {
    pub(super) backbone: Pretrained,
    cache: HashMap<String, Tensor>,
}

impl PromptEncoder {
    pub(super) fn new(backbone: Pretrained) -> Self {
        Self { backbone, cache: HashMap::new() }
    }

    /// L2-normalized text features of `prompt`, (d_t), f32 on CPU; the frozen text tower runs once
    /// per distinct prompt and is dropped afterwards.
    pub(super) fn z_t(&mut self, prompt: &str) -> Result<Tensor> {
        if let Some(z) = self.cache.get(prompt) {
            return Ok(z.shallow_clone());
        }
        let ids = self.backbone.tokenizer()?.encode_batch(&[prompt])?;
        let z = l2_normalize(&self.backbone.text_features(&ids, Placement::default())?)?.f_squeeze_dim(0)?;
        self.cache.insert(prompt.to_string(), z.shallow_clone());
        Ok(z)
    }
}
