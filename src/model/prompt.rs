//! The prompt side of the model: the tokenizer, the frozen text tower (loaded on demand) and, for a
//! learned prompt, the context vectors in their own store.
//!
//! A text prompt is tokenized as SigLIP was trained (64 ids, EOS-padded). A learned prompt (CoOp)
//! puts N context vectors in place of the first N token embeddings: the tower sees
//! `[ctx_1 .. ctx_N, tokens(text)[.. 64 - N]]`, where `text` is what follows the context (empty, or
//! an anatomy word). Initialised from the hand prompt, the context holds that prompt's first N token
//! embeddings, so z_t starts equal to the hand prompt's when N covers it.
use crate::error::{Error, Result};
use crate::placement::Placement;
use crate::rng::Rng;
use crate::siglip::{l2_normalize, Pretrained, SiglipTextModel};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tch::{nn, Device, Kind, Tensor};

/// Key of the learned context vectors in `prompt.safetensors`, (N, D_text).
pub const CONTEXT_KEY: &str = "prompt.context";
const TOKEN_TABLE: &str = "text_model.embeddings.token_embedding.weight";

/// How learned context vectors start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptInit {
    /// The hand prompt's first N token embeddings.
    Hand,
    /// N(0, 0.02), as CoOp.
    Random,
}

impl std::str::FromStr for PromptInit {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "hand" => Ok(Self::Hand),
            "random" => Ok(Self::Random),
            _ => Err(format!("{s:?}: expected hand or random")),
        }
    }
}

/// The prompt side: tokenizer, a text tower loaded on demand, z_t cached per text while nothing trains.
pub(super) struct PromptEncoder {
    pub(super) backbone: Pretrained,
    /// The text tower's dtype: f32, or f64 for an f64 model (whose z_t must not carry f32 rounding).
    kind: Kind,
    /// The learned context (`prompt.context`, (N, D_text)) in its own store; `None` for a text prompt.
    pub(super) learned: Option<nn::VarStore>,
    cache: HashMap<String, Tensor>,
    /// While the context trains: the tower with the token rows of these texts and their renumbered
    /// ids, kept between steps (no tokenizing or loading per step).
    tower: Option<(Vec<String>, SiglipTextModel, Tensor)>,
}

impl PromptEncoder {
    pub(super) fn new(backbone: Pretrained, kind: Kind) -> Self {
        Self { backbone, kind, learned: None, cache: HashMap::new(), tower: None }
    }

    fn at(&self) -> Placement {
        Placement { device: Device::Cpu, kind: self.kind }
    }

    fn max_len(&self) -> i64 {
        self.backbone.config.text_config.max_position_embeddings
    }

    /// The learned context (N, D_text), if any.
    pub(super) fn context(&self) -> Option<Tensor> {
        self.learned.as_ref().map(|vs| vs.variables()[CONTEXT_KEY].shallow_clone())
    }

    fn training(&self) -> bool {
        self.context().is_some_and(|c| c.requires_grad())
    }

    /// An empty store for `n` context vectors (to be initialised or loaded).
    pub(super) fn new_context(&mut self, n: i64) -> Result<()> {
        let max = self.max_len();
        if !(1..max).contains(&n) {
            return Err(Error::InvalidInput(format!(
                "a learned prompt needs 1 to {} context vectors (the text tower reads {max} positions), got {n}",
                max - 1
            )));
        }
        let mut vs = nn::VarStore::new(Device::Cpu);
        let d = self.backbone.config.text_config.hidden_size;
        let _ = (vs.root() / "prompt").var("context", &[n, d], nn::Init::Const(0.)); // CONTEXT_KEY
        vs.set_kind(self.kind);
        vs.freeze();
        self.learned = Some(vs);
        self.clear();
        Ok(())
    }

    /// Initialises the context: the first N token embeddings of `hand`, or N(0, 0.02) from `seed`.
    pub(super) fn init_context(&mut self, n: i64, init: PromptInit, hand: &str, seed: u64) -> Result<()> {
        self.new_context(n)?;
        let d = self.backbone.config.text_config.hidden_size;
        let values = match init {
            PromptInit::Hand => {
                let ids = self.backbone.tokenizer()?.encode(hand)?;
                self.backbone.checkpoint.rows(TOKEN_TABLE, &ids[..n as usize])?
            }
            PromptInit::Random => {
                let mut rng = Rng::new(seed);
                let v: Vec<f64> = (0..n * d).map(|_| 0.02 * rng.normal()).collect();
                Tensor::f_from_slice(&v)?.f_view([n, d])?
            }
        };
        let mut ctx = self.context().expect("just created");
        tch::no_grad(|| ctx.f_copy_(&values.f_to_kind(self.kind)?))?;
        Ok(())
    }

    /// Forgets the cached z_t and the kept tower (after the context or its training state changed).
    pub(super) fn clear(&mut self) {
        self.cache.clear();
        self.tower = None;
    }

    /// L2-normalized text features of `texts` (with the learned context before each, if any),
    /// (T, d_t), on CPU in the encoder's dtype. One tower pass for all `texts` unless all are cached;
    /// the tower is dropped afterwards unless the context trains (then z_t carries its graph and
    /// nothing is cached).
    pub(super) fn z_t(&mut self, texts: &[&str]) -> Result<Tensor> {
        let training = self.training();
        if !training && texts.iter().all(|t| self.cache.contains_key(*t)) {
            let rows: Vec<Tensor> = texts.iter().map(|t| self.cache[*t].shallow_clone()).collect();
            return Ok(Tensor::f_stack(&rows, 0)?);
        }
        let z = match self.context() {
            None => {
                let ids = self.backbone.tokenizer()?.encode_batch(texts)?; // (T, L)
                self.backbone.text_features(&ids, self.at())?
            }
            Some(ctx) => {
                if self.tower.as_ref().is_none_or(|(k, _, _)| k.iter().ne(texts.iter())) {
                    let ids = self.backbone.tokenizer()?.encode_batch(texts)?; // (T, L)
                    let cfg = &self.backbone.config.text_config;
                    let (tower, ids) =
                        SiglipTextModel::load_for_ids(&self.backbone.checkpoint, cfg, self.at(), &ids)?;
                    self.tower = Some((texts.iter().map(|t| t.to_string()).collect(), tower, ids));
                }
                let (_, tower, ids) = self.tower.as_ref().expect("just loaded");
                let (t, l) = ids.size2()?;
                let (n, d) = ctx.size2()?;
                let tokens = tower.text_model.token_embeddings(&ids.f_narrow(1, 0, l - n)?)?; // (T, L-N, D)
                let ctx = ctx.f_unsqueeze(0)?.f_expand([t, n, d], false)?; // (T, N, D)
                let embeds = Tensor::f_cat(&[ctx, tokens], 1)?; // (T, L, D)
                let z = tower.text_model.forward_embeds(&embeds, false)?.pooler_output; // (T, d_t)
                if !training {
                    self.tower = None;
                }
                z
            }
        };
        let z = l2_normalize(&z)?;
        if !training {
            for (i, t) in texts.iter().enumerate() {
                self.cache.insert(t.to_string(), z.f_get(i as i64)?);
            }
        }
        Ok(z)
    }
}
