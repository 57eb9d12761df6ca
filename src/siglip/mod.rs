//! SigLIP / MedSigLIP towers in tch, matching Hugging Face `transformers` `SiglipModel`.
//!
//! Reference: transformers `models/siglip/modeling_siglip.py` (v4.46 to v5.x; the math is unchanged)
//! and `../shared/reference/siglip-spec.md`. Module paths equal the checkpoint keys
//! (`vision_model.encoder.layers.0.self_attn.q_proj.weight`, ...). Each tower lives in its own
//! `VarStore`: the vision tower may be fine-tuned, the text tower is always frozen.
mod encoder;
mod text;
mod vision;

pub use text::{TextOutput, TextTransformer};
pub use vision::{VisionOutput, VisionTransformer};

use crate::checkpoint::{resolve_model_dir, Checkpoint};
use crate::config::{SiglipConfig, SiglipTextConfig, SiglipVisionConfig};
use crate::error::Result;
use crate::placement::Placement;
use crate::tokenizer::SiglipTokenizer;
use std::path::{Path, PathBuf};
use tch::{nn, Tensor};

/// The vision tower in its own store (`vision_model.*`).
#[derive(Debug)]
pub struct SiglipVisionModel {
    pub vs: nn::VarStore,
    pub vision_model: VisionTransformer,
}

impl SiglipVisionModel {
    /// A zero-initialised tower (to be loaded or trained).
    pub fn new(cfg: &SiglipVisionConfig, at: Placement) -> Result<Self> {
        let mut vs = nn::VarStore::new(at.device);
        let mut vision_model = VisionTransformer::new(vs.root() / "vision_model", cfg)?;
        vs.set_kind(at.kind);
        vision_model.fuse_qkv()?;
        crate::runtime::tune_allocator();
        Ok(Self { vs, vision_model })
    }

    /// Loads the vision tower of a checkpoint, ignoring the text tower's tensors.
    pub fn load(ckpt: &Checkpoint, cfg: &SiglipVisionConfig, at: Placement) -> Result<Self> {
        let mut model = Self::new(cfg, at)?;
        ckpt.load_into(&[&model.vs], &["text_model.", "logit_scale", "logit_bias"])?;
        model.vs.freeze();
        Ok(model)
    }

    /// `get_image_features`: the MAP-head output, unnormalized, (B, D).
    pub fn image_features(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let out = self.vision_model.forward(pixel_values, false, true)?;
        out.pooler_output.ok_or_else(|| crate::Error::Unsupported("this vision tower has no head".into()))
    }
}

/// The frozen text tower in its own store (`text_model.*`, `logit_scale`, `logit_bias`).
#[derive(Debug)]
pub struct SiglipTextModel {
    pub vs: nn::VarStore,
    pub text_model: TextTransformer,
    pub logit_scale: Tensor,
    pub logit_bias: Tensor,
}

impl SiglipTextModel {
    pub fn new(cfg: &SiglipTextConfig, at: Placement) -> Result<Self> {
        let mut vs = nn::VarStore::new(at.device);
        let mut text_model = TextTransformer::new(vs.root() / "text_model", cfg)?;
        let logit_scale = vs.root().zeros("logit_scale", &[1]);
        let logit_bias = vs.root().zeros("logit_bias", &[1]);
        vs.set_kind(at.kind);
        text_model.fuse_qkv()?;
        Ok(Self { vs, text_model, logit_scale, logit_bias })
    }

    /// Loads the text tower of a checkpoint (frozen), ignoring the vision tower's tensors.
    pub fn load(ckpt: &Checkpoint, cfg: &SiglipTextConfig, at: Placement) -> Result<Self> {
        let mut model = Self::new(cfg, at)?;
        ckpt.load_into(&[&model.vs], &["vision_model."])?;
        model.vs.freeze();
        Ok(model)
    }

    /// Loads the text tower with only the token-embedding rows that `input_ids` use; returns the
    /// tower and the ids renumbered into those rows. Saves the 256k x D table (1.2 GB in f32 for
    /// MedSigLIP) when encoding a prompt.
    pub fn load_for_ids(
        ckpt: &Checkpoint,
        cfg: &SiglipTextConfig,
        at: Placement,
        input_ids: &Tensor,
    ) -> Result<(Self, Tensor)> {
        const TABLE: &str = "text_model.embeddings.token_embedding.weight";
        let (rows, renumbered, _) = input_ids.f_flatten(0, -1)?.f_internal_unique2(true, true, false)?;
        let rows = Vec::<i64>::try_from(&rows)?;
        let mut small = cfg.clone();
        small.vocab_size = rows.len() as i64;
        let mut model = Self::new(&small, at)?;
        ckpt.load_into(&[&model.vs], &["vision_model.", TABLE])?;
        let table = ckpt.rows(TABLE, &rows)?;
        let mut var = model.vs.variables()[TABLE].shallow_clone();
        if table.size() != var.size() || ckpt.shape(TABLE) != Some(&[cfg.vocab_size, cfg.hidden_size][..]) {
            return Err(crate::Error::Checkpoint {
                path: ckpt.path().to_path_buf(),
                problems: vec![format!(
                    "tensor {TABLE}: expected shape {:?}, found {:?}",
                    [cfg.vocab_size, cfg.hidden_size],
                    ckpt.shape(TABLE)
                )],
            });
        }
        tch::no_grad(|| var.f_copy_(&table))?;
        model.vs.freeze();
        Ok((model, renumbered.f_view(input_ids.size().as_slice())?))
    }

    /// `get_text_features`: the head output at the last position, unnormalized, (B, P).
    pub fn text_features(&self, input_ids: &Tensor) -> Result<Tensor> {
        tch::no_grad(|| Ok(self.text_model.forward(input_ids, false)?.pooler_output))
    }
}

/// An opened pretrained folder: config and memory-mapped weights, from which either tower loads.
pub struct Pretrained {
    pub dir: PathBuf,
    pub config: SiglipConfig,
    pub checkpoint: Checkpoint,
}

impl Pretrained {
    /// Opens a model folder, HF cache folder or cached repo id (see [`resolve_model_dir`]).
    pub fn open(spec: &str) -> Result<Self> {
        let dir = resolve_model_dir(spec)?;
        let config = SiglipConfig::from_file(&dir.join("config.json"))?;
        let checkpoint = Checkpoint::open_dir(&dir)?;
        Ok(Self { dir, config, checkpoint })
    }

    pub fn vision(&self, at: Placement) -> Result<SiglipVisionModel> {
        SiglipVisionModel::load(&self.checkpoint, &self.config.vision_config, at)
    }

    pub fn text(&self, at: Placement) -> Result<SiglipTextModel> {
        SiglipTextModel::load(&self.checkpoint, &self.config.text_config, at)
    }

    /// `get_text_features` of tokenized texts (B, L), loading only the embedding rows they use.
    pub fn text_features(&self, input_ids: &Tensor, at: Placement) -> Result<Tensor> {
        let (text, ids) =
            SiglipTextModel::load_for_ids(&self.checkpoint, &self.config.text_config, at, input_ids)?;
        text.text_features(&ids)
    }

    pub fn tokenizer(&self) -> Result<SiglipTokenizer> {
        SiglipTokenizer::from_dir(&self.dir, self.config.text_config.max_position_embeddings)
    }
}

/// A whole `SiglipModel`: both towers and the tokenizer.
#[derive(Debug)]
pub struct SiglipModel {
    pub dir: PathBuf,
    pub config: SiglipConfig,
    pub vision: SiglipVisionModel,
    pub text: SiglipTextModel,
    pub tokenizer: SiglipTokenizer,
}

impl SiglipModel {
    /// Loads both towers; every tensor of the checkpoint must be used.
    pub fn load(spec: &str, at: Placement) -> Result<Self> {
        let p = Pretrained::open(spec)?;
        let mut vision = SiglipVisionModel::new(&p.config.vision_config, at)?;
        let mut text = SiglipTextModel::new(&p.config.text_config, at)?;
        p.checkpoint.load_into(&[&vision.vs, &text.vs], &[])?;
        vision.vs.freeze();
        text.vs.freeze();
        let tokenizer = p.tokenizer()?;
        Ok(Self { dir: p.dir, config: p.config, vision, text, tokenizer })
    }

    /// Folder the model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Tokenizes and encodes texts: `get_text_features`, (B, P).
    pub fn text_features(&self, texts: &[&str]) -> Result<Tensor> {
        let ids = self.tokenizer.encode_batch(texts)?;
        self.text.text_features(&ids)
    }

    /// `logits_per_image` (B_img, B_txt) = cos(image, text) * exp(logit_scale) + logit_bias.
    pub fn logits_per_image(&self, pixel_values: &Tensor, input_ids: &Tensor) -> Result<Tensor> {
        let img = l2_normalize(&self.vision.image_features(pixel_values)?)?;
        let txt = l2_normalize(&self.text.text_features(input_ids)?)?;
        let cos = img.f_matmul(&txt.f_tr()?)?;
        Ok(cos.f_mul(&self.text.logit_scale.f_exp()?)?.f_add(&self.text.logit_bias)?)
    }
}

/// `x / ||x||_2` over the last dimension (no epsilon, as transformers).
pub fn l2_normalize(xs: &Tensor) -> Result<Tensor> {
    Ok(xs.f_div(&xs.f_norm_scalaropt_dim(2, [-1], true)?)?)
}
