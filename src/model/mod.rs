//! The prompt-conditioned quality model (paper, section III) and its model folder.
//!
//! A model folder holds `ldctq.json` ([`QualityConfig`]), `head.safetensors` (FiLM generator and
//! heads: `film.fc1`, `film.fc2`, `head_global.fc1`, ..., `fusion.fc2`) and optionally
//! `vision.safetensors` (a fine-tuned vision tower with HF key names, overriding the backbone's) and,
//! for a learned prompt (`"prompt_mode": "learned"`), `prompt.safetensors` (`prompt.context`, the N
//! context vectors that enter the frozen text tower, [`PromptInit`]).
//! The backbone is a SigLIP checkpoint folder, HF cache folder or cached repo id.
//!
//! The forward pass ([`QualityModel::forward_stages`]): pixel values -> vision tower -> post-LN patch
//! tokens H -> FiLM from the prompt embedding z_t (H~ = H (1 + s tanh(gamma)) + s beta) -> global,
//! local and texture pooling -> three heads -> fusion MLP -> logit -> score 4 sigmoid(logit / tau).
mod checkpointing;
mod config;
mod init;
mod prompt;

pub(crate) use checkpointing::upstream_vector;
pub use config::{
    backbone_ref, resolve_backbone, PromptMode, QualityConfig, Widths, DEFAULT_PROMPT, FORMAT_VERSION,
};
pub use prompt::{PromptInit, CONTEXT_KEY};

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::film::{modulate, Film, FilmConfig};
use crate::heads::{pool, pool_per_patch, Heads, HeadsConfig};
use crate::placement::Placement;
use crate::preprocess::Preprocess;
use crate::rng::Rng;
use crate::siglip::{Pretrained, SiglipVisionModel};
use init::{init_linear_layers, widths_of};
use prompt::PromptEncoder;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use tch::{nn, Kind, Tensor};

/// Preprocessing, prompt embedding, FiLM, pooling, heads and scores are f32 (f64 for an f64 model),
/// also for a bf16 vision tower: the heads are small, and the texture pooling's max selects tokens, so
/// its gradient needs the tokens' values as exact as the tower gives them.
fn output_kind(weights: Kind) -> Kind {
    if weights == Kind::Double {
        Kind::Double
    } else {
        Kind::Float
    }
}

/// The block of patches [`QualityModel::occlusion_map`] replaces around each patch: 3 x 3 (48 pixels
/// of a 256-pixel slice for a 16 x 16 grid) found localised degradations best of 1, 3 and 5 in the
/// pointing game (docs/quality-maps.md).
pub const OCCLUSION_BLOCK: i64 = 3;

/// The intermediate tensors of one forward pass (paper notation).
#[derive(Debug)]
pub struct Stages {
    pub pixel_values: Tensor,
    pub gamma: Tensor,
    pub beta: Tensor,
    /// H: post-LN patch tokens, (B, P, d).
    pub tokens: Tensor,
    /// H~ = H (1 + s tanh(gamma)) + s beta.
    pub tokens_film: Tensor,
    pub h_g: Tensor,
    pub h_l: Tensor,
    pub h_tex: Tensor,
    /// [y_g, y_l, y_tex], (B, 3).
    pub y: Tensor,
    pub logit: Tensor,
    pub score: Tensor,
}

/// The quality model: vision tower, FiLM from the prompt, pooling, heads, fusion, bounded score.
pub struct QualityModel {
    pub config: QualityConfig,
    /// The vision tower's own store (trainable or frozen).
    pub(crate) vision: SiglipVisionModel,
    /// FiLM generator and heads (`film.*`, `head_*.*`, `fusion.*`).
    pub(crate) heads_vs: nn::VarStore,
    film: Film,
    heads: Heads,
    prompts: RefCell<PromptEncoder>,
    /// (gamma, beta) per conditioning text while FiLM and prompt are frozen.
    film_cache: RefCell<HashMap<String, (Tensor, Tensor)>>,
    /// The anatomy of the images scored (one of `config.anatomies`), if set.
    anatomy: Option<String>,
    placement: Placement,
    /// Encoder layers per activation-checkpointing segment in `score_and_grad` (0: off).
    checkpoint_every: usize,
}

impl std::fmt::Debug for QualityModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QualityModel")
            .field("config", &self.config)
            .field("placement", &self.placement)
            .finish()
    }
}

impl QualityModel {
    fn build(config: QualityConfig, backbone: Pretrained, widths: Widths, at: Placement) -> Result<Self> {
        config.validate().map_err(Error::InvalidInput)?;
        let mut vcfg = backbone.config.vision_config.clone();
        vcfg.vision_use_head = false; // the MAP head is not used by the quality model
        let vision = SiglipVisionModel::new(&vcfg, at)?;
        let heads_vs = nn::VarStore::new(at.device);
        let d = vcfg.hidden_size;
        let film_cfg = FilmConfig {
            text_dim: backbone.config.text_config.projection_size(),
            hidden: widths.film_hidden,
            vision_dim: d,
        };
        let film = Film::new(heads_vs.root() / "film", &film_cfg)?;
        let heads_cfg = HeadsConfig {
            dim: d,
            hidden: widths.head_hidden,
            fusion_hidden: widths.fusion_hidden,
            dropout: config.dropout,
        };
        let heads = Heads::new(heads_vs.root(), &heads_cfg)?;
        let prompts = RefCell::new(PromptEncoder::new(backbone, output_kind(at.kind)));
        Ok(Self {
            config,
            vision,
            heads_vs,
            film,
            heads,
            prompts,
            film_cache: RefCell::new(HashMap::new()),
            anatomy: None,
            placement: at,
            checkpoint_every: 0,
        })
    }

    /// A fresh, untrained model on `backbone` (heads randomly initialised from `seed`).
    pub fn init(config: QualityConfig, widths: Widths, seed: i64, at: Placement) -> Result<Self> {
        let backbone = Pretrained::open(&config.backbone)?;
        let mut model = Self::build(config, backbone, widths, at)?;
        init_linear_layers(&model.heads_vs, seed as u64)?;
        model.load_backbone_vision()?;
        model.heads_vs.set_kind(model.output_kind());
        model.freeze();
        Ok(model)
    }

    /// Loads a model folder, checking every tensor against `ldctq.json` and the backbone.
    pub fn load(dir: &Path, at: Placement) -> Result<Self> {
        let config = QualityConfig::from_file(&dir.join("ldctq.json"))?;
        let backbone = Pretrained::open(&resolve_backbone(&config.backbone, Some(dir)))?;
        let heads_path = dir.join("head.safetensors");
        if !heads_path.is_file() {
            return Err(Error::NotFound(format!("{}: missing head.safetensors", dir.display())));
        }
        let head_ckpt = Checkpoint::open_file(&heads_path)?;
        let widths = widths_of(&head_ckpt)?;
        let mut model = Self::build(config, backbone, widths, at)?;
        head_ckpt.load_into(&[&model.heads_vs], &[])?;
        if model.config.prompt_mode == PromptMode::Learned {
            model.load_prompt(&dir.join("prompt.safetensors"))?;
        }
        let vision_path = dir.join("vision.safetensors");
        if vision_path.is_file() {
            Checkpoint::open_file(&vision_path)?.load_into(&[&model.vision.vs], &["vision_model.head."])?;
        } else {
            model.load_backbone_vision()?;
        }
        model.heads_vs.set_kind(model.output_kind());
        model.freeze();
        Ok(model)
    }

    /// The learned context of `prompt.safetensors` (`prompt.context`, (N, D_text)).
    fn load_prompt(&mut self, path: &Path) -> Result<()> {
        if !path.is_file() {
            return Err(Error::NotFound(format!(
                "{}: missing (ldctq.json says the prompt is learned)",
                path.display()
            )));
        }
        let ckpt = Checkpoint::open_file(path)?;
        let n = match ckpt.shape(CONTEXT_KEY) {
            Some(&[n, _]) => n,
            other => {
                return Err(Error::Checkpoint {
                    path: path.to_path_buf(),
                    problems: vec![format!("{CONTEXT_KEY}: expected an (N, D) tensor, found {other:?}")],
                })
            }
        };
        let mut prompts = self.prompts.borrow_mut();
        prompts.new_context(n)?;
        ckpt.load_into(&[prompts.learned.as_ref().expect("just created")], &[])
    }

    fn load_backbone_vision(&self) -> Result<()> {
        let prompts = self.prompts.borrow();
        prompts
            .backbone
            .checkpoint
            .load_into(&[&self.vision.vs], &["text_model.", "logit_", "vision_model.head."])
    }

    /// Writes `ldctq.json` and `head.safetensors` (and `vision.safetensors` when `with_vision`) to `dir`.
    pub fn save(&self, dir: &Path, with_vision: bool) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let json = serde_json::to_string_pretty(&self.config).expect("config serializes");
        crate::io::write_atomic(&dir.join("ldctq.json"), json.as_bytes())?;
        crate::checkpoint::save_store_atomic(&self.heads_vs, &dir.join("head.safetensors"))?;
        if with_vision {
            crate::checkpoint::save_store_atomic(&self.vision.vs, &dir.join("vision.safetensors"))?;
        }
        if let Some(vs) = &self.prompts.borrow().learned {
            crate::checkpoint::save_store_atomic(vs, &dir.join("prompt.safetensors"))?;
        }
        Ok(())
    }

    /// The vision tower's store (`vision_model.*`; frozen unless a trainer unfreezes it).
    pub fn vision_store(&self) -> &nn::VarStore {
        &self.vision.vs
    }

    /// The vision tower's store, to change its dtype or values (call [`Self::freeze`] afterwards for
    /// criterion use).
    pub fn vision_store_mut(&mut self) -> &mut nn::VarStore {
        &mut self.vision.vs
    }

    /// The store of the FiLM generator and heads (`film.*`, `head_*.*`, `fusion.*`).
    pub fn heads_store(&self) -> &nn::VarStore {
        &self.heads_vs
    }

    /// Freezes every parameter (criterion use: no weight gradients).
    pub fn freeze(&mut self) {
        self.vision.vs.freeze();
        self.heads_vs.freeze();
        self.set_prompt_trainable(false);
    }

    /// Replaces the prompt by `n` learned context vectors (initialised from the current prompt's
    /// first `n` token embeddings, or N(0, 0.02) from `seed`) followed by no text; frozen until
    /// [`Self::set_prompt_trainable`].
    pub fn learn_prompt(&mut self, n: i64, init: PromptInit, seed: u64) -> Result<()> {
        self.prompts.borrow_mut().init_context(n, init, &self.config.prompt, seed)?;
        self.config.prompt_mode = PromptMode::Learned;
        self.config.prompt = String::new();
        self.film_cache.borrow_mut().clear();
        Ok(())
    }

    /// The learned context vectors (N, D_text), on CPU (shares storage: an optimizer may update
    /// them in place); `None` for a text prompt.
    pub fn prompt_context(&self) -> Option<Tensor> {
        self.prompts.borrow().context()
    }

    /// Lets the learned context train (the text tower then runs on every forward pass) or freezes it.
    pub fn set_prompt_trainable(&mut self, trainable: bool) {
        let mut prompts = self.prompts.borrow_mut();
        if let Some(vs) = prompts.learned.as_mut() {
            if trainable {
                vs.unfreeze()
            } else {
                vs.freeze()
            }
        }
        prompts.clear();
        self.film_cache.borrow_mut().clear();
    }

    /// Device and dtype of the weights.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// Sets a text prompt (the text tower runs once for a new prompt). On a model with a learned
    /// prompt this replaces the learned context (reload the model folder to get it back).
    pub fn set_prompt(&mut self, prompt: &str) -> Result<()> {
        let mut prompts = self.prompts.borrow_mut();
        let learned = prompts.learned.take();
        if learned.is_some() {
            prompts.clear(); // z_t cached with the context
        }
        if let Err(e) = prompts.z_t(&[prompt]) {
            prompts.learned = learned;
            return Err(e);
        }
        self.config.prompt = prompt.to_string();
        self.config.prompt_mode = PromptMode::Text;
        self.film_cache.borrow_mut().clear();
        Ok(())
    }

    /// Sets the FiLM strength s.
    pub fn set_film_strength(&mut self, s: f64) -> Result<()> {
        if !s.is_finite() {
            return Err(Error::InvalidInput(format!("film strength must be finite, got {s}")));
        }
        self.config.film_strength = s;
        Ok(())
    }

    /// z_t: the L2-normalized text features of the current prompt (and anatomy), (d_t), on CPU, f32
    /// (f64 for an f64 model).
    pub fn prompt_embedding(&self) -> Result<Tensor> {
        let text = self.config.prompt_text(self.anatomy.as_deref());
        Ok(self.prompts.borrow_mut().z_t(&[&text])?.f_squeeze_dim(0)?)
    }

    /// Sets the anatomy of the images scored from now on (one of `config.anatomies`), or none (the
    /// prompt alone).
    pub fn set_anatomy(&mut self, anatomy: Option<&str>) -> Result<()> {
        let anatomy = anatomy.map(|a| a.trim().to_ascii_lowercase());
        if let Some(a) = &anatomy {
            self.config.check_anatomy(a).map_err(Error::InvalidInput)?;
        }
        self.anatomy = anatomy;
        Ok(())
    }

    /// The anatomy set by [`Self::set_anatomy`].
    pub fn anatomy(&self) -> Option<&str> {
        self.anatomy.as_deref()
    }

    /// (gamma, beta): (d) each for the current anatomy, or (B, d) for `anatomies` of B images;
    /// cached per text while FiLM and prompt are frozen.
    fn film_params(&self, anatomies: Option<&[Option<String>]>) -> Result<(Tensor, Tensor)> {
        let each: Vec<Option<&str>> = match anatomies {
            Some(a) => a.iter().map(Option::as_deref).collect(),
            None => vec![self.anatomy.as_deref()],
        };
        let (mut texts, mut index) = (Vec::<String>::new(), Vec::<i64>::new());
        for a in &each {
            if let Some(a) = a {
                self.config.check_anatomy(a).map_err(Error::InvalidInput)?;
            }
            let text = self.config.prompt_text(*a);
            let i = texts.iter().position(|t| *t == text).unwrap_or_else(|| {
                texts.push(text);
                texts.len() - 1
            });
            index.push(i as i64);
        }
        let frozen = self.heads_vs.trainable_variables().iter().all(|v| !v.requires_grad())
            && self.prompt_context().is_none_or(|c| !c.requires_grad());
        let cached = frozen && texts.iter().all(|t| self.film_cache.borrow().contains_key(t));
        let (g, b) = if cached {
            let cache = self.film_cache.borrow();
            let (g, b): (Vec<Tensor>, Vec<Tensor>) =
                texts.iter().map(|t| (cache[t].0.shallow_clone(), cache[t].1.shallow_clone())).unzip();
            (Tensor::f_stack(&g, 0)?, Tensor::f_stack(&b, 0)?)
        } else {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let z_t = self.prompts.borrow_mut().z_t(&refs)?; // (T, d_t)
            let z_t = z_t.f_to_device(self.placement.device)?.f_to_kind(self.output_kind())?;
            let (g, b) =
                if frozen { tch::no_grad(|| self.film.params(&z_t))? } else { self.film.params(&z_t)? }; // (T, d)
            if frozen {
                let mut cache = self.film_cache.borrow_mut();
                for (i, t) in texts.iter().enumerate() {
                    cache.insert(t.clone(), (g.f_get(i as i64)?, b.f_get(i as i64)?));
                }
            }
            (g, b)
        };
        match anatomies {
            None => Ok((g.f_get(0)?, b.f_get(0)?)), // (d)
            Some(_) => {
                let index = Tensor::from_slice(&index).f_to_device(g.device())?;
                Ok((g.f_index_select(0, &index)?, b.f_index_select(0, &index)?))
                // (B, d)
            }
        }
    }

    /// The dtype of preprocessing, prompt, FiLM, pooling, heads and scores (see [`output_kind`]).
    fn output_kind(&self) -> Kind {
        output_kind(self.placement.kind)
    }

    /// Every stage of the forward pass, from `pixel_values` to the score (for tests and inspection).
    /// `dropout`: the generator of the heads' dropout masks when training, `None` in evaluation.
    pub fn forward_stages(&self, pixel_values: &Tensor, dropout: Option<&mut Rng>) -> Result<Stages> {
        self.forward_stages_for(pixel_values, None, dropout)
    }

    /// Scores of B images each conditioned on its own anatomy (anatomy prompts; `None`: the
    /// prompt alone), as the trainer and evaluation on mixed sets need them.
    ///
    /// # Shapes
    /// `pixel_values`: (B, 3, S, S), `anatomies`: B entries -> scores (B).
    pub fn forward_anatomies(
        &self,
        pixel_values: &Tensor,
        anatomies: &[Option<String>],
        dropout: Option<&mut Rng>,
    ) -> Result<Tensor> {
        if anatomies.len() as i64 != pixel_values.size()[0] {
            return Err(Error::InvalidInput(format!(
                "{} anatomies for {} images",
                anatomies.len(),
                pixel_values.size()[0]
            )));
        }
        Ok(self.forward_stages_for(pixel_values, Some(anatomies), dropout)?.score)
    }

    fn forward_stages_for(
        &self,
        pixel_values: &Tensor,
        anatomies: Option<&[Option<String>]>,
        dropout: Option<&mut Rng>,
    ) -> Result<Stages> {
        // f32 pixels also for a bf16 tower: its patch embedding runs in f32 (see `VisionEmbeddings`).
        let pixel_values = pixel_values.f_to_device(self.placement.device)?.f_to_kind(self.output_kind())?;
        // A frozen tower on an input without gradient needs no graph (training the heads alone).
        let vision_frozen = self.vision.vs.variables().values().all(|v| !v.requires_grad());
        let run_vision = || self.vision.vision_model.forward(&pixel_values, false, false);
        let out = if vision_frozen && !pixel_values.requires_grad() {
            tch::no_grad(run_vision)
        } else {
            run_vision()
        };
        let tokens = out?.last_hidden_state; // (B, P, d)
        self.stages_for(pixel_values, tokens, anatomies, dropout)
    }

    /// The stages after the vision tower: FiLM, pooling, heads, fusion, score (`tokens`: H, (B, P, d);
    /// `pixel_values` is only kept in the result).
    pub fn stages_from_tokens(
        &self,
        pixel_values: Tensor,
        tokens: Tensor,
        dropout: Option<&mut Rng>,
    ) -> Result<Stages> {
        self.stages_for(pixel_values, tokens, None, dropout)
    }

    fn stages_for(
        &self,
        pixel_values: Tensor,
        tokens: Tensor,
        anatomies: Option<&[Option<String>]>,
        dropout: Option<&mut Rng>,
    ) -> Result<Stages> {
        let tokens = tokens.f_to_kind(self.output_kind())?;
        let (gamma, beta) = self.film_params(anatomies)?; // (d) each, or (B, d) with anatomies
        let tokens_film = modulate(&tokens, &gamma, &beta, self.config.film_strength)?; // (B, P, d)
        let (h_g, h_l, h_tex) = pool(&tokens_film, self.config.local_mode)?; // (B, d), (B, 4d), (B, 2d)
        let y = self.heads.sub_scores(&h_g, &h_l, &h_tex, dropout)?; // (B, 3)
        let logit = self.heads.fuse(&y)?; // (B)
        let score = self.bounded(&logit)?; // (B) in [0, 4]
        Ok(Stages { pixel_values, gamma, beta, tokens, tokens_film, h_g, h_l, h_tex, y, logit, score })
    }

    /// The sub-scores of each patch, [y_g, y_l(p), y_tex(p)]: the slice's global sub-score, the local
    /// head on the slice's regions with p's region(s) replaced by p's FiLM-modulated token, and the
    /// texture head on p's token in both bins ([`crate::heads::pool_per_patch`]).
    ///
    /// # Shapes
    /// `stages` of B images with P patches -> (B, P, 3), patches row-major over the patch grid.
    pub fn patch_sub_scores(&self, stages: &Stages) -> Result<Tensor> {
        let (b, p, d) = stages.tokens_film.size3()?;
        let (h_l, h_tex) = pool_per_patch(&stages.tokens_film, self.config.local_mode)?; // (B, P, 4d), (B, P, 2d)
        let h_g = stages.h_g.f_unsqueeze(1)?.f_expand([b, p, d], false)?; // the slice's, (B, P, d)
        let flat = |t: &Tensor| t.f_reshape([b * p, -1]);
        let y = self.heads.sub_scores(&flat(&h_g)?, &flat(&h_l)?, &flat(&h_tex)?, None)?; // (BP, 3)
        Ok(y.f_reshape([b, p, 3])?)
    }

    /// The model-intrinsic patch scores: [`Self::patch_sub_scores`] fused and bounded as the slice's,
    /// `4 sigmoid(phi(y_g, y_l(p), y_tex(p)) / tau)`: the slice score the model would give if p's
    /// region looked like p and p were its most textured token. When all patch tokens are equal each
    /// patch score is the slice score exactly.
    ///
    /// # Shapes
    /// `stages` of B images with P patches -> (B, P).
    pub fn patch_scores(&self, stages: &Stages) -> Result<Tensor> {
        let y = self.patch_sub_scores(stages)?; // (B, P, 3)
        let (b, p, _) = y.size3()?;
        let logit = self.heads.fuse(&y.f_reshape([b * p, 3])?)?.f_reshape([b, p])?; // (B, P)
        self.bounded(&logit)
    }

    /// The score of a logit: 4 sigmoid(logit / tau_out), in [0, 4].
    fn bounded(&self, logit: &Tensor) -> Result<Tensor> {
        Ok(logit.f_div_scalar(self.config.tau_out)?.f_sigmoid()?.f_mul_scalar(4.0)?)
    }

    /// Occlusion ("repair") gains: for each patch p, the slice score with the `block` x `block`
    /// patches centred on p (odd `block`; cut at the grid's edge) replaced, in FiLM-modulated token
    /// space, by the mean of the ring of patches around that block, minus the slice score. Positive
    /// where the block costs score: what the score would gain if it looked like its surroundings. All
    /// P replacements go through pooling, heads and fusion (not the vision tower), in chunks of about
    /// 256 MB.
    ///
    /// # Shapes
    /// `stages` of B images with P patches (a square grid) -> (B, P).
    pub fn occlusion_gains(&self, stages: &Stages, block: i64) -> Result<Tensor> {
        if block < 1 || block % 2 == 0 {
            return Err(Error::InvalidInput(format!(
                "occlusion block must be odd and positive, got {block}"
            )));
        }
        let tokens = &stages.tokens_film;
        let (b, p, d) = tokens.size3()?;
        let (side, h) = ((p as f64).sqrt().round() as i64, block / 2); // preprocessing makes the grid square
        let opts = (tokens.kind(), tokens.device());
        // The ring around a block: ones on a (block + 2) square, zeros on the block.
        let ring = Tensor::f_ones([1, 1, block + 2, block + 2], opts)?;
        let _ = ring.f_narrow(2, 1, block)?.f_narrow(3, 1, block)?.f_fill_(0.0)?;
        let conv = |x: &Tensor| x.f_conv2d(&ring, None::<Tensor>, [1, 1], [h + 1, h + 1], [1, 1], 1);
        let grid = tokens.f_transpose(1, 2)?.f_reshape([b * d, 1, side, side])?;
        let counts = conv(&Tensor::f_ones([1, 1, side, side], opts)?)?; // (1, 1, side, side)
        let ring_mean = conv(&grid)?.f_div(&counts)?.f_reshape([b, d, p])?.f_transpose(1, 2)?; // (B, P, d)
                                                                                               // in_block[q, i]: patch i lies in the block centred on patch q.
        let idx = Tensor::f_arange(p, (tch::Kind::Int64, tokens.device()))?;
        let near = |c: &Tensor| -> Result<Tensor> {
            Ok(c.f_unsqueeze(1)?.f_sub(&c.f_unsqueeze(0)?)?.f_abs()?.f_le(h)?) // (P, P)
        };
        let in_block = near(&idx.f_div_scalar_mode(side, "floor")?)?
            .f_logical_and(&near(&idx.f_remainder(side)?)?)?
            .f_reshape([1, p, p, 1])?;
        let chunk = ((256 << 20) / (b * p * d * opts.0.elt_size_in_bytes() as i64).max(1)).max(1);
        let mut gains = Vec::new();
        for q0 in (0..p).step_by(chunk as usize) {
            let q = chunk.min(p - q0);
            // Row (b, i) of copy j: patch i replaced by the ring mean if it lies in block q0 + j.
            let replaced = ring_mean.f_narrow(1, q0, q)?.f_unsqueeze(2)?; // (B, q, 1, d)
            let copies = replaced.f_where_self(&in_block.f_narrow(1, q0, q)?, &tokens.f_unsqueeze(1)?)?; // (B, q, P, d)
            let (h_g, h_l, h_tex) = pool(&copies.f_reshape([b * q, p, d])?, self.config.local_mode)?;
            let logit = self.heads.fuse(&self.heads.sub_scores(&h_g, &h_l, &h_tex, None)?)?; // (Bq)
            gains.push(self.bounded(&logit)?.f_reshape([b, q])?.f_sub(&stages.score.f_unsqueeze(1)?)?);
        }
        Ok(Tensor::f_cat(&gains, 1)?)
    }

    /// The model-intrinsic quality map: `4 - patch score` ([`Self::patch_scores`]) on the patch grid,
    /// upsampled bilinearly (half-pixel centres) to the images' size; in [0, 4], high where quality is
    /// lost. Computed without a graph. With `anatomies` (N entries), each image is conditioned on its
    /// own anatomy (as [`Self::forward_anatomies`]); without, on [`Self::anatomy`].
    ///
    /// # Shapes
    /// `images` as [`Self::score_images`] takes them, (N, H, W) or (N, 1, H, W) -> (N, H, W), f32 (f64
    /// for an f64 model).
    pub fn intrinsic_map(&self, images: &Tensor, anatomies: Option<&[Option<String>]>) -> Result<Tensor> {
        self.grid_map(images, anatomies, |stages| {
            Ok(self.patch_scores(stages)?.f_neg()?.f_add_scalar(4.0)?)
        })
    }

    /// The occlusion map: [`Self::occlusion_gains`] with blocks of [`OCCLUSION_BLOCK`] on the patch
    /// grid, upsampled bilinearly to the images' size; in score units, high where quality is lost.
    /// Computed without a graph.
    ///
    /// # Shapes
    /// As [`Self::intrinsic_map`].
    pub fn occlusion_map(&self, images: &Tensor, anatomies: Option<&[Option<String>]>) -> Result<Tensor> {
        self.grid_map(images, anatomies, |stages| self.occlusion_gains(stages, OCCLUSION_BLOCK))
    }

    /// `per_patch` (N, P) of the images' forward pass, upsampled from the patch grid to (N, H, W).
    fn grid_map(
        &self,
        images: &Tensor,
        anatomies: Option<&[Option<String>]>,
        per_patch: impl Fn(&Stages) -> Result<Tensor>,
    ) -> Result<Tensor> {
        Preprocess::check(images)?;
        let size = images.size();
        let (n, h, w) = (size[0], size[size.len() - 2], size[size.len() - 1]);
        if let Some(each) = anatomies.filter(|each| each.len() as i64 != n) {
            return Err(Error::InvalidInput(format!("{} anatomies for {n} images", each.len())));
        }
        tch::no_grad(|| {
            let images = images.f_detach()?.f_to_kind(self.output_kind())?;
            let pixel_values = self.config.preprocess().pixel_values(&images)?;
            let values = per_patch(&self.forward_stages_for(&pixel_values, anatomies, None)?)?; // (N, P)
            let side = (values.size()[1] as f64).sqrt().round() as i64; // preprocessing makes it square
            let grid = values.f_reshape([n, 1, side, side])?;
            let map = grid.f_upsample_bilinear2d([h, w], false, None, None)?; // (N, 1, H, W)
            Ok(map.f_reshape([n, h, w])?)
        })
    }

    /// Scores from `pixel_values`.
    ///
    /// # Shapes
    /// `pixel_values`: (B, 3, S, S) -> scores (B) in [0, 4], f32 (f64 for an f64 model).
    pub fn forward_t(&self, pixel_values: &Tensor, dropout: Option<&mut Rng>) -> Result<Tensor> {
        Ok(self.forward_stages(pixel_values, dropout)?.score)
    }

    /// Scores of images in the model's input space, any size: (N, H, W) or (N, 1, H, W) -> (N).
    /// Differentiable with respect to `images` when they require grad.
    pub fn score_images(&self, images: &Tensor) -> Result<Tensor> {
        self.score_images_for(images, None)
    }

    /// [`Self::score_images`], each image conditioned on its anatomy when `anatomies` are given (see
    /// [`Self::forward_anatomies`]).
    pub(crate) fn score_images_for(
        &self,
        images: &Tensor,
        anatomies: Option<&[Option<String>]>,
    ) -> Result<Tensor> {
        // Preprocess in f32 (f64 for an f64 model); the vision tower casts to its own dtype.
        Preprocess::check(images)?;
        let pixel_values = self.config.preprocess().pixel_values(&images.f_to_kind(self.output_kind())?)?;
        match anatomies {
            Some(each) => self.forward_anatomies(&pixel_values, each, None),
            None => self.forward_t(&pixel_values, None),
        }
    }
}
