//! The prompt-conditioned quality model (paper, section III) and its model folder.
//!
//! A model folder holds `ldctq.json` ([`QualityConfig`]), `head.safetensors` (FiLM generator and
//! heads: `film.fc1`, `film.fc2`, `head_global.fc1`, ..., `fusion.fc2`) and optionally
//! `vision.safetensors` (a fine-tuned vision tower with HF key names, overriding the backbone's).
//! The backbone is a SigLIP checkpoint folder, HF cache folder or cached repo id.
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::film::{modulate, Film, FilmConfig};
use crate::heads::{pool, Heads, HeadsConfig, LocalMode};
use crate::preprocess::{InputSpace, Preprocess};
use crate::rng::Rng;
use crate::siglip::{l2_normalize, Placement, Pretrained, SiglipVisionModel};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{nn, Kind, Tensor};

/// The paper's clinical prompt (section IV-B), verbatim with its line breaks joined by spaces.
pub const DEFAULT_PROMPT: &str =
    "Rate this low-dose CT (MOS 0-4): 0 Nondiagnostic--desired features not shown; \
1 Poor--diagnostic interpretation impossible; 2 Fair--limited interpretation; 3 Good--diagnostic; \
4 Excellent--anatomy highly visible. Return only one number 0-4.";

/// Version of the model-folder format written by this build.
pub const FORMAT_VERSION: u32 = 1;

fn default_prompt() -> String {
    DEFAULT_PROMPT.into()
}
fn default_film_strength() -> f64 {
    1.0
}
fn default_tau_out() -> f64 {
    2.0
}
fn default_dropout() -> f64 {
    0.1
}
fn default_window_center() -> f64 {
    InputSpace::LDCTIQA_WINDOW.0
}
fn default_window_width() -> f64 {
    InputSpace::LDCTIQA_WINDOW.1
}

/// Pixel values a model folder expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    /// [0, 1] images; `window_center`/`window_width` record the HU window they were made with.
    Unit,
    /// HU images, windowed with `window_center`/`window_width`.
    Hu,
}

impl std::str::FromStr for InputKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "unit" => Ok(Self::Unit),
            "hu" => Ok(Self::Hu),
            _ => Err(format!("{s:?}: expected unit or hu")),
        }
    }
}

/// `ldctq.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityConfig {
    pub format_version: u32,
    /// SigLIP backbone: a folder (relative to the model folder, or absolute), HF cache folder or repo id.
    pub backbone: String,
    #[serde(default = "default_prompt")]
    pub prompt: String,
    /// FiLM strength s (0 disables the prompt).
    #[serde(default = "default_film_strength")]
    pub film_strength: f64,
    /// Output temperature: score = 4 sigmoid(logit / tau_out).
    #[serde(default = "default_tau_out")]
    pub tau_out: f64,
    #[serde(default)]
    pub local_mode: LocalMode,
    pub input: InputKind,
    #[serde(default = "default_window_center")]
    pub window_center: f64,
    #[serde(default = "default_window_width")]
    pub window_width: f64,
    /// Model input size; images of any size are resized to it.
    pub image_size: i64,
    /// Dropout of the branch heads (training only).
    #[serde(default = "default_dropout")]
    pub dropout: f64,
}

impl QualityConfig {
    /// A config for `backbone` with the paper's defaults and LDCTIQA2023-style [0, 1] input.
    pub fn new(backbone: &str, image_size: i64) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            backbone: backbone.into(),
            prompt: default_prompt(),
            film_strength: 1.0,
            tau_out: 2.0,
            local_mode: LocalMode::Sequence,
            input: InputKind::Unit,
            window_center: default_window_center(),
            window_width: default_window_width(),
            image_size,
            dropout: default_dropout(),
        }
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let err = |msg: String| Error::Config { path: path.to_path_buf(), msg };
        if !path.is_file() {
            return Err(Error::NotFound(format!("{}: no such file (not a model folder?)", path.display())));
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: Self = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        cfg.validate().map_err(err)?;
        Ok(cfg)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.format_version != FORMAT_VERSION {
            return Err(format!(
                "format_version {} (this build reads {FORMAT_VERSION})",
                self.format_version
            ));
        }
        if !(self.tau_out > 0.0 && self.tau_out.is_finite()) {
            return Err(format!("tau_out must be positive, got {}", self.tau_out));
        }
        if !self.film_strength.is_finite() {
            return Err(format!("film_strength must be finite, got {}", self.film_strength));
        }
        if !(self.window_width > 0.0 && self.window_center.is_finite()) {
            return Err(format!(
                "invalid window center {} / width {}",
                self.window_center, self.window_width
            ));
        }
        if self.image_size <= 0 {
            return Err(format!("image_size must be positive, got {}", self.image_size));
        }
        Ok(())
    }

    /// The preprocessing this model expects.
    pub fn preprocess(&self) -> Preprocess {
        let input = match self.input {
            InputKind::Unit => InputSpace::Unit,
            InputKind::Hu => {
                InputSpace::Hu { window_center: self.window_center, window_width: self.window_width }
            }
        };
        Preprocess { input, image_size: self.image_size }
    }
}

/// Hidden widths of a fresh model (`ldctq init`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Widths {
    pub film_hidden: i64,
    pub head_hidden: i64,
    pub fusion_hidden: i64,
}

impl Default for Widths {
    fn default() -> Self {
        Self { film_hidden: 256, head_hidden: 256, fusion_hidden: 16 }
    }
}

/// The prompt side: tokenizer and a text tower loaded on demand, z_t cached per prompt.
struct PromptEncoder {
    backbone: Pretrained,
    cache: HashMap<String, Tensor>,
}

impl PromptEncoder {
    /// L2-normalized text features of `prompt`, (d_t), f32 on CPU; the frozen text tower runs once
    /// per distinct prompt and is dropped afterwards.
    fn z_t(&mut self, prompt: &str) -> Result<Tensor> {
        if let Some(z) = self.cache.get(prompt) {
            return Ok(z.shallow_clone());
        }
        let ids = self.backbone.tokenizer()?.encode_batch(&[prompt])?;
        let z = l2_normalize(&self.backbone.text_features(&ids, Placement::default())?).squeeze_dim(0);
        self.cache.insert(prompt.to_string(), z.shallow_clone());
        Ok(z)
    }
}

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
    pub vision: SiglipVisionModel,
    /// FiLM generator and heads (`film.*`, `head_*.*`, `fusion.*`).
    pub heads_vs: nn::VarStore,
    film: Film,
    heads: Heads,
    prompts: RefCell<PromptEncoder>,
    /// (gamma, beta) of the current prompt while the heads are frozen.
    film_cache: RefCell<Option<(Tensor, Tensor)>>,
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

/// `backbone` as stored in ldctq.json of model folder `out`: relative when it lies inside the folder,
/// absolute when it is another folder, unchanged when it is a repo id.
pub fn backbone_ref(backbone: &str, out: &Path) -> Result<String> {
    let path = Path::new(backbone);
    if !path.exists() {
        return Ok(backbone.to_string());
    }
    let abs = path.canonicalize().map_err(|e| Error::io(path, e))?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let out = out.canonicalize().map_err(|e| Error::io(out, e))?;
    Ok(abs.strip_prefix(&out).map(|p| p.display().to_string()).unwrap_or_else(|_| abs.display().to_string()))
}

/// A backbone reference of ldctq.json, resolved against the model folder `dir` when it names a path inside it.
pub fn resolve_backbone(backbone: &str, dir: Option<&Path>) -> String {
    match dir.map(|d| d.join(backbone)) {
        Some(p) if Path::new(backbone).is_relative() && p.exists() => p.display().to_string(),
        _ => backbone.to_string(),
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
        let prompts = RefCell::new(PromptEncoder { backbone, cache: HashMap::new() });
        Ok(Self {
            config,
            vision,
            heads_vs,
            film,
            heads,
            prompts,
            film_cache: RefCell::new(None),
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
        crate::fsutil::write_atomic(&dir.join("ldctq.json"), json.as_bytes())?;
        crate::fsutil::save_store_atomic(&self.heads_vs, &dir.join("head.safetensors"))?;
        if with_vision {
            crate::fsutil::save_store_atomic(&self.vision.vs, &dir.join("vision.safetensors"))?;
        }
        Ok(())
    }

    /// Freezes every parameter (criterion use: no weight gradients).
    pub fn freeze(&mut self) {
        self.vision.vs.freeze();
        self.heads_vs.freeze();
    }

    /// Device and dtype of the weights.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// Sets the prompt (the text tower runs once for a new prompt).
    pub fn set_prompt(&mut self, prompt: &str) -> Result<()> {
        let _z_t = self.prompts.borrow_mut().z_t(prompt)?;
        self.config.prompt = prompt.to_string();
        self.film_cache.replace(None);
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

    /// z_t: the L2-normalized text features of the current prompt, (d_t), f32 on CPU.
    pub fn prompt_embedding(&self) -> Result<Tensor> {
        self.prompts.borrow_mut().z_t(&self.config.prompt)
    }

    /// (gamma, beta) of the current prompt; cached while the FiLM generator is frozen.
    fn film_params(&self) -> Result<(Tensor, Tensor)> {
        let frozen = self.heads_vs.trainable_variables().iter().all(|v| !v.requires_grad());
        if frozen {
            if let Some((g, b)) = self.film_cache.borrow().as_ref() {
                return Ok((g.shallow_clone(), b.shallow_clone()));
            }
        }
        let z_t = self.prompts.borrow_mut().z_t(&self.config.prompt)?;
        let z_t = z_t.to_device(self.placement.device).to_kind(self.output_kind());
        let (g, b) = if frozen { tch::no_grad(|| self.film.params(&z_t)) } else { self.film.params(&z_t) };
        if frozen {
            self.film_cache.replace(Some((g.shallow_clone(), b.shallow_clone())));
        }
        Ok((g, b))
    }

    /// Preprocessing, FiLM, pooling, heads and scores are f32 (f64 for an f64 model), also for a bf16
    /// vision tower: the heads are small, and the texture pooling's max selects tokens, so its
    /// gradient needs the tokens' values as exact as the tower gives them.
    fn output_kind(&self) -> Kind {
        if self.placement.kind == Kind::Double {
            Kind::Double
        } else {
            Kind::Float
        }
    }

    /// Every stage of the forward pass, from `pixel_values` to the score (for tests and inspection).
    /// `dropout`: the generator of the heads' dropout masks when training, `None` in evaluation.
    pub fn forward_stages(&self, pixel_values: &Tensor, dropout: Option<&mut Rng>) -> Result<Stages> {
        // f32 pixels also for a bf16 tower: its patch embedding runs in f32 (see `VisionEmbeddings`).
        let pixel_values = pixel_values.to_device(self.placement.device).to_kind(self.output_kind());
        // A frozen tower on an input without gradient needs no graph (training the heads alone).
        let vision_frozen = self.vision.vs.variables().values().all(|v| !v.requires_grad());
        let run_vision = || self.vision.vision_model.forward(&pixel_values, false, false);
        let out = if vision_frozen && !pixel_values.requires_grad() {
            tch::no_grad(run_vision)
        } else {
            run_vision()
        };
        let tokens = out?.last_hidden_state; // (B, P, d)
        self.stages_from_tokens(pixel_values, tokens, dropout)
    }

    /// The stages after the vision tower: FiLM, pooling, heads, fusion, score.
    fn stages_from_tokens(
        &self,
        pixel_values: Tensor,
        tokens: Tensor,
        dropout: Option<&mut Rng>,
    ) -> Result<Stages> {
        let tokens = tokens.to_kind(self.output_kind());
        let (gamma, beta) = self.film_params()?; // (d), (d)
        let tokens_film = modulate(&tokens, &gamma, &beta, self.config.film_strength); // (B, P, d)
        let (h_g, h_l, h_tex) = pool(&tokens_film, self.config.local_mode)?; // (B, d), (B, 4d), (B, 2d)
        let y = self.heads.sub_scores(&h_g, &h_l, &h_tex, dropout); // (B, 3)
        let logit = self.heads.fuse(&y); // (B)
        let score = (&logit / self.config.tau_out).sigmoid() * 4.0; // (B) in [0, 4]
        Ok(Stages { pixel_values, gamma, beta, tokens, tokens_film, h_g, h_l, h_tex, y, logit, score })
    }

    /// Activation checkpointing for `score_and_grad` (criterion use, frozen weights): the encoder runs
    /// without a graph, keeping the input of every `layers_per_segment`-th layer, and each segment is
    /// recomputed during the backward pass. Peak memory then holds one segment's activations instead
    /// of all layers' (docs/performance.md), for about one extra forward pass. 0 turns it off.
    pub fn set_activation_checkpointing(&mut self, layers_per_segment: usize) {
        self.checkpoint_every = layers_per_segment;
    }

    /// Encoder layers per checkpointing segment (0: off).
    pub fn activation_checkpointing(&self) -> usize {
        self.checkpoint_every
    }

    /// `score_and_grad` with activation checkpointing every `every` layers (see
    /// [`Self::set_activation_checkpointing`]). Gradient mode must be on.
    pub(crate) fn score_and_grad_checkpointed(
        &self,
        images: &Tensor,
        upstream: Option<&Tensor>,
        every: usize,
    ) -> Result<(Tensor, Tensor)> {
        Preprocess::check(images)?;
        let vjp = |out: &Tensor, g: &Tensor, input: &Tensor| -> Result<Tensor> {
            let total = (out * g).sum(Kind::Float); // d total / d out = g
            Ok(Tensor::f_run_backward(&[total], &[input], false, false)?.remove(0))
        };
        let vm = &self.vision.vision_model;
        let x = images.detach().set_requires_grad(true);
        let pixel_values = self.config.preprocess().pixel_values(&x.to_kind(self.output_kind()))?;
        let pixel_values = pixel_values.to_device(self.placement.device);
        let h0 = vm.embed(&pixel_values)?; // (B, N, D), graph back to x kept (small)

        // Forward without a graph, keeping each segment's input.
        let starts: Vec<usize> = (0..vm.num_layers()).step_by(every).collect();
        let end = |start: usize| (start + every).min(vm.num_layers());
        let mut inputs = Vec::with_capacity(starts.len());
        let h_last = tch::no_grad(|| {
            starts.iter().fold(h0.detach(), |h, &start| {
                let out = vm.layers(&h, start..end(start));
                inputs.push(h);
                out
            })
        });
        // Heads with a graph from the last hidden state.
        let h_last = h_last.set_requires_grad(true);
        let tokens = vm.post_layernorm(&h_last);
        let scores = self.stages_from_tokens(pixel_values.shallow_clone(), tokens, None)?.score;
        let u = crate::criterion::upstream_vector(&scores, upstream)?;
        let mut g = vjp(&scores, &u, &h_last)?;
        // Segments in reverse: recompute with a graph, pull the gradient through, drop the graph.
        for (&start, input) in starts.iter().zip(inputs).rev() {
            let input = input.set_requires_grad(true);
            g = vjp(&vm.layers(&input, start..end(start)), &g, &input)?;
        }
        Ok((scores.detach(), vjp(&h0, &g, &x)?))
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
        // Preprocess in f32 (f64 for an f64 model); the vision tower casts to its own dtype.
        Preprocess::check(images)?;
        let pixel_values = self.config.preprocess().pixel_values(&images.to_kind(self.output_kind()))?;
        self.forward_t(&pixel_values, None)
    }
}

/// PyTorch's default `Linear` initialisation (uniform in +-1/sqrt(fan_in) for weight and bias), drawn from
/// a seeded [`Rng`] rather than libtorch's global generator, so a seed gives the same heads everywhere.
fn init_linear_layers(vs: &nn::VarStore, seed: u64) -> Result<()> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let fan_in: HashMap<String, i64> = vars
        .iter()
        .filter_map(|(n, t)| Some((n.strip_suffix(".weight")?.to_string(), *t.size().last()?)))
        .collect();
    let mut rng = Rng::new(seed);
    tch::no_grad(|| -> Result<()> {
        for (name, mut t) in vars {
            let layer = name.rsplit_once('.').map(|(l, _)| l).unwrap_or(&name);
            let bound = 1.0 / (fan_in.get(layer).copied().unwrap_or(1) as f64).sqrt();
            let values: Vec<f32> =
                (0..t.numel()).map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32).collect();
            t.f_copy_(&Tensor::from_slice(&values).view(t.size().as_slice()))?;
        }
        Ok(())
    })
}

/// Reads the hidden widths from the shapes in `head.safetensors`.
fn widths_of(ckpt: &Checkpoint) -> Result<Widths> {
    let rows = |name: &str| -> Result<i64> {
        ckpt.shape(name).filter(|s| s.len() == 2).map(|s| s[0]).ok_or_else(|| Error::Checkpoint {
            path: PathBuf::from("head.safetensors"),
            problems: vec![format!("missing tensor {name} (2-D)")],
        })
    };
    Ok(Widths {
        film_hidden: rows("film.fc1.weight")?,
        head_hidden: rows("head_global.fc1.weight")?,
        fusion_hidden: rows("fusion.fc1.weight")?,
    })
}

impl QualityConfig {
    /// The frames of an image file as a (frames, H, W) f32 tensor in this model's input space.
    ///
    /// HU files are windowed to [0, 1] with the model's recorded window for a `"unit"` model; [0, 1]
    /// files are mapped back to HU through that window for a `"hu"` model. Files whose values have no
    /// known meaning (npy, integer TIFF) need `raw_as` (`Space::Unit` or `Space::Hu`).
    pub fn images_from(
        &self,
        slices: &crate::io::Slices,
        raw_as: Option<crate::io::Space>,
    ) -> Result<Tensor> {
        use crate::io::Space;
        let space = match raw_as.filter(|s| *s != Space::Raw) {
            Some(s) => s,
            None if slices.space == Space::Raw => {
                return Err(Error::InvalidInput(format!(
                    "{}: the meaning of its values is unknown; say whether they are HU or in [0, 1]",
                    slices.source.display()
                )))
            }
            None => slices.space,
        };
        let shape: Vec<i64> = slices.pixels.shape().iter().map(|&d| d as i64).collect();
        let data: Vec<f32> = slices.pixels.iter().copied().collect();
        let xs = Tensor::from_slice(&data).view(shape.as_slice());
        let (lo, w) = (self.window_center - self.window_width / 2.0, self.window_width);
        Ok(match (space, self.input) {
            (Space::Hu, InputKind::Unit) => ((xs - lo) / w).clamp(0.0, 1.0),
            (Space::Unit, InputKind::Hu) => xs * w + lo,
            _ => xs,
        })
    }
}
