//! The ranking-loss trainer (paper, sections III-E and IV-B).
//!
//! k-fold cross-validation (seeded, stratified by score); per fold: AdamW with cosine annealing,
//! micro-batches with gradient accumulation, augmentation, a checkpoint of the best validation loss,
//! a resumable checkpoint after every epoch (weights, optimizer moments, counters). The final model
//! is the fold whose best checkpoint has the lowest validation MAE (as in the paper); `ensemble/` holds
//! the k-fold ensemble (mean of the folds' best checkpoints) as a model folder.
//!
//! Determinism: data order, augmentation and dropout are drawn from generators keyed by
//! (seed, fold, epoch), so a run resumed from an epoch checkpoint ends with the same weights as an
//! uninterrupted one (same device, dtype and thread count).
mod adamw;
mod augment;
mod loss;
mod order;

pub use adamw::AdamW;
pub use augment::Augment;
pub use loss::{alignment_directions, alignment_loss, gradient_cosine, ranking_loss};
pub use order::{OrderKind, OrderPairs, ADVERSARIAL_STEPS};

use crate::data::{load_frame, stratified_folds, Dataset};
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::metrics;
use crate::model::{PromptInit, QualityConfig, QualityModel, Widths, CONTEXT_KEY};
use crate::placement::Placement;
use crate::preprocess::resize_bicubic;
use crate::rng::Rng;
use crate::window::Space;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Stream of the order pairs' draws, apart from data order, augmentation and dropout.
const ORDER_STREAM: u64 = 0x006f_7264_6572;
/// Stream of the learned prompt's random initialisation.
const PROMPT_STREAM: u64 = 0x7072_6f6d_7074;

/// A learned prompt (CoOp-style context vectors, [`PromptInit`]) trained by the ranking loss through
/// the frozen text tower.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearnPrompt {
    /// N, the number of context vectors.
    pub tokens: usize,
    pub init: PromptInit,
    /// AdamW learning rate of the context (no weight decay; cosine like the rest).
    pub lr: f64,
    /// Only the context trains; FiLM, heads and vision tower stay as `from_model` has them (whose
    /// learned context, if it has N vectors, is tuned further rather than replaced).
    pub only: bool,
}

/// Which parameters of the vision tower train (FiLM and heads always do; the text tower never).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisionTraining {
    Frozen,
    Full,
    /// The last N encoder blocks and the post-LN.
    LastBlocks(usize),
}

impl std::str::FromStr for VisionTraining {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "frozen" => Ok(Self::Frozen),
            "full" => Ok(Self::Full),
            _ => s
                .strip_prefix("last:")
                .and_then(|n| n.parse().ok())
                .map(Self::LastBlocks)
                .ok_or_else(|| format!("{s:?}: expected frozen, full or last:N")),
        }
    }
}

/// Training settings; defaults are the paper's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    /// Images per micro-batch (the ranking loss sees the pairs within one micro-batch).
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub accumulation: usize,
    /// AdamW learning rate of the vision tower (and of the heads unless `head_lr` is set).
    pub lr: f64,
    /// Learning rate of FiLM and heads.
    pub head_lr: Option<f64>,
    pub weight_decay: f64,
    pub tau_rank: f64,
    pub lambda_mse: f64,
    pub folds: usize,
    /// Train only this fold (the others still define the split).
    pub only_fold: Option<usize>,
    pub seed: u64,
    pub vision: VisionTraining,
    pub augment: Option<Augment>,
    /// Weakly supervised order pairs against degraded copies ([`OrderPairs`]).
    #[serde(default)]
    pub order_pairs: Option<OrderPairs>,
    /// Weight of the input-gradient penalty `mean_i |d score_i / d x_i|^2` (0: off), which flattens
    /// the score around the training images against adversarial optimisation (double backward).
    #[serde(default)]
    pub grad_penalty: f64,
    /// Weight of the gradient-alignment term `mean_i (1 - cos(d score_i / d x_i, r_i - x_i))` over the
    /// images that differ from their references `r_i` (0: off): the score's ascent direction is taught
    /// to point towards the reference, so a denoiser optimising the score moves towards it (double
    /// backward; needs references).
    #[serde(default)]
    pub grad_align: f64,
    /// Align only the images labelled below this (`None`: all). Near the reference the way to it is
    /// "remove the remaining noise", which a blur does to first order; above such a label the order
    /// pairs alone are meant to decide between noise and sharpness (on the default recipe the model
    /// still learned to prefer blur: docs/default-model.md, rows R-X).
    #[serde(default)]
    pub grad_align_below: Option<f64>,
    /// Weight of the same alignment at the order pairs' degraded copies, towards their images'
    /// references (0: off): at a blurred copy of a clean image the way to the reference is to sharpen,
    /// so the score is taught to fall along the blur, not only to rise towards less noise (double
    /// backward on the copies; needs order pairs and references).
    #[serde(default)]
    pub grad_align_copies: f64,
    #[serde(default)]
    pub learn_prompt: Option<LearnPrompt>,
    /// Anatomy prompts: each image conditioned on the prompt plus its anatomy word (manifest column
    /// or `meta.json`); the model records the training set's anatomies.
    #[serde(default)]
    pub anatomy_prompts: bool,
    /// Start from this model folder's weights (heads, vision tower, prompt) instead of a fresh model
    /// on the backbone; the trainer's base config must then be this folder's.
    #[serde(default)]
    pub from_model: Option<PathBuf>,
}

impl TrainConfig {
    /// Whether training needs the images' references (reference or adversarial pairs, alignment).
    pub fn needs_references(&self) -> bool {
        self.grad_align > 0.0
            || self.grad_align_copies > 0.0
            || self.order_pairs.as_ref().is_some_and(|o| o.kinds.iter().any(|k| k.needs_reference()))
    }

    /// Whether a step differentiates the input gradient (the penalty or the alignment).
    fn second_order(&self) -> bool {
        self.grad_penalty > 0.0 || self.grad_align > 0.0
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 22,
            batch_size: 4,
            accumulation: 2,
            lr: 1e-5,
            head_lr: None,
            weight_decay: 1e-4,
            tau_rank: 0.5,
            lambda_mse: 0.0,
            folds: 5,
            only_fold: None,
            seed: 0,
            vision: VisionTraining::Full,
            augment: Some(Augment::default()),
            order_pairs: None,
            grad_penalty: 0.0,
            grad_align: 0.0,
            grad_align_below: None,
            grad_align_copies: 0.0,
            learn_prompt: None,
            from_model: None,
            anatomy_prompts: false,
        }
    }
}

/// Cosine annealing from `base` to 0 over `total` optimizer steps (`CosineAnnealingLR`, eta_min 0).
pub fn cosine_lr(base: f64, step: usize, total: usize) -> f64 {
    if total == 0 {
        return base;
    }
    0.5 * base * (1.0 + (std::f64::consts::PI * step.min(total) as f64 / total as f64).cos())
}

/// Validation figures of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub fold: usize,
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_mae: f64,
    pub val_plcc: f64,
    pub val_srocc: f64,
    pub val_krocc: f64,
    pub lr: f64,
    pub seconds: f64,
}

/// What the trainer reports while it runs.
#[derive(Debug)]
pub enum Event<'a> {
    FoldStart { fold: usize, train: usize, val: usize, resumed_from: Option<usize> },
    Step { fold: usize, epoch: usize, micro_batch: usize, of: usize, loss: f64 },
    Epoch(&'a EpochLog),
}

/// Counters of an epoch checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    epochs_done: usize,
    opt_steps: i64,
    best_val_loss: f64,
    best_val_mae: f64,
    best_epoch: usize,
    seed: u64,
    fold: usize,
}

/// Result of a whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    pub chosen_fold: usize,
    /// (fold, best validation loss, its validation MAE).
    pub folds: Vec<(usize, f64, f64)>,
    pub config: TrainConfig,
}

/// Images of a dataset loaded once, resized to the model size, in the model's input space.
pub struct Cache {
    pub images: Tensor, // (N, 1, S, S)
    pub labels: Tensor, // (N)
    /// The images' references (`reference/` of simulated sets), like `images`, when loaded by
    /// [`Cache::with_references`] (for the `reference` order pairs).
    pub references: Option<Tensor>,
    /// Each image's anatomy, where the set says.
    pub anatomies: Vec<Option<String>>,
}

impl Cache {
    pub fn load(data: &Dataset, model: &QualityConfig) -> Result<Self> {
        let labels = Tensor::from_slice(&data.labels()?).to_kind(Kind::Float);
        let paths: Vec<(&Path, usize)> = data.samples.iter().map(|x| (x.path.as_path(), x.frame)).collect();
        let anatomies = data.samples.iter().map(|s| s.anatomy.clone()).collect();
        Ok(Self { images: load_frames(&paths, model)?, labels, references: None, anatomies })
    }

    /// This cache with every image's reference loaded (an error naming the first image without one).
    pub fn with_references(mut self, data: &Dataset, model: &QualityConfig) -> Result<Self> {
        let mut paths = Vec::with_capacity(data.samples.len());
        for x in &data.samples {
            let Some(reference) = &x.reference else {
                return Err(Error::InvalidInput(format!(
                    "{}: no reference image (reference pairs need a set with `reference/` beside `image/`, \
                     or a manifest's `reference` column)",
                    x.path.display()
                )));
            };
            paths.push((reference.as_path(), x.frame));
        }
        self.references = Some(load_frames(&paths, model)?);
        Ok(self)
    }

    /// The distinct anatomies, sorted.
    pub fn anatomy_names(&self) -> Vec<String> {
        let set: std::collections::BTreeSet<&String> = self.anatomies.iter().flatten().collect();
        set.into_iter().cloned().collect()
    }

    /// The anatomies of images `idx`.
    fn anatomies_of(&self, idx: &[i64]) -> Vec<Option<String>> {
        idx.iter().map(|&i| self.anatomies[i as usize].clone()).collect()
    }
}

/// Frames `(path, frame)` in the model's input space, resized to its size: (N, 1, S, S).
fn load_frames(paths: &[(&Path, usize)], model: &QualityConfig) -> Result<Tensor> {
    let s = model.image_size;
    let mut frames = Vec::with_capacity(paths.len());
    for &(path, frame) in paths {
        let x = load_frame(path, frame, None, model.input, model.window())?;
        let x = x.unsqueeze(0).unsqueeze(0); // (1, 1, H, W)
        let (h, w) = (x.size()[2], x.size()[3]);
        frames.push(if (h, w) == (s, s) { x } else { resize_bicubic(&x, s, s)? });
    }
    Ok(Tensor::cat(&frames, 0))
}

/// The trainer: a dataset cache, settings and an output folder.
pub struct Trainer<'a> {
    pub base: QualityConfig,
    pub widths: Widths,
    pub config: TrainConfig,
    pub at: Placement,
    pub out: PathBuf,
    pub cache: &'a Cache,
}

/// Which parameters train: the vision tower as `vision` says, FiLM and heads when `heads`, the learned
/// context when `prompt` (a learned context that does not train stays cached: no text-tower pass
/// per step).
fn set_trainable(model: &mut QualityModel, vision: VisionTraining, heads: bool, prompt: bool) {
    model.freeze();
    if heads {
        model.heads_vs.unfreeze();
    }
    model.set_prompt_trainable(prompt);
    let layers = model.vision.vision_model.config().num_hidden_layers as usize;
    for (name, v) in model.vision.vs.variables() {
        let block = name
            .strip_prefix("vision_model.encoder.layers.")
            .and_then(|r| r.split('.').next()?.parse::<usize>().ok());
        let train = match vision {
            VisionTraining::Frozen => false,
            VisionTraining::Full => true,
            VisionTraining::LastBlocks(n) => {
                block.map_or(name.contains("post_layernorm"), |i| i + n >= layers)
            }
        };
        let _ = v.set_requires_grad(train);
    }
}

fn trainable(vs: &tch::nn::VarStore) -> Vec<(String, Tensor)> {
    vs.variables().into_iter().filter(|(_, v)| v.requires_grad()).collect()
}

/// Replaces folder `dst` by `tmp` (complete) so that `dst` is never half-written.
fn swap_dir(tmp: &Path, dst: &Path) -> Result<()> {
    let old = dst.with_extension("old");
    let _ = std::fs::remove_dir_all(&old);
    if dst.exists() {
        std::fs::rename(dst, &old).map_err(|e| Error::io(dst, e))?;
    }
    std::fs::rename(tmp, dst).map_err(|e| Error::io(dst, e))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Scores of `x` (images of the model's input space), each image conditioned on its anatomy when
/// the model has anatomy prompts.
fn forward(
    model: &QualityModel,
    x: &Tensor,
    anatomies: &[Option<String>],
    dropout: Option<&mut Rng>,
) -> Result<Tensor> {
    let px = model.config.preprocess().pixel_values(x)?;
    if model.config.anatomies.is_empty() {
        model.forward_t(&px, dropout)
    } else {
        model.forward_anatomies(&px, anatomies, dropout)
    }
}

impl Trainer<'_> {
    /// Scores of cached images `idx` (no graph).
    fn predict(&self, model: &QualityModel, idx: &[i64]) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let mut out = Vec::new();
        for chunk in idx.chunks(16) {
            let x = self.cache.images.index_select(0, &Tensor::from_slice(chunk));
            let scores = forward(model, &x, &self.cache.anatomies_of(chunk), None)?;
            out.push(scores.to_kind(Kind::Float).to_device(tch::Device::Cpu));
        }
        Ok(Tensor::cat(&out, 0))
    }

    /// Trains every fold (or `only_fold`) and writes the chosen model to `out`. `on_event` sees the
    /// progress; returning `Break` after an epoch stops the run with [`Error::Interrupted`] once that
    /// epoch's checkpoint is written.
    pub fn run(
        &self,
        resume: bool,
        on_event: &mut dyn FnMut(Event) -> ControlFlow<()>,
    ) -> Result<TrainSummary> {
        let c = &self.config;
        if c.anatomy_prompts && self.cache.anatomy_names().is_empty() {
            return Err(Error::InvalidInput(
                "anatomy prompts need images with an anatomy (manifest column `anatomy` or meta.json)".into(),
            ));
        }
        if c.folds < 2 || c.batch_size < 2 || c.accumulation == 0 || c.epochs == 0 {
            return Err(Error::InvalidInput(
                "need folds >= 2, batch_size >= 2, accumulation >= 1, epochs >= 1".into(),
            ));
        }
        if let Some(order) = &c.order_pairs {
            order.validate()?;
        }
        if c.grad_align_copies != 0.0 && c.order_pairs.is_none() {
            return Err(Error::InvalidInput("grad_align_copies needs order pairs (their copies)".into()));
        }
        if c.needs_references() && self.cache.references.is_none() {
            return Err(Error::InvalidInput(
                "reference, detail and adversarial pairs and gradient alignment need the images' references \
                 (Cache::with_references)"
                    .into(),
            ));
        }
        if let Some(lp) = &c.learn_prompt {
            if !(lp.lr > 0.0 && lp.lr.is_finite()) {
                return Err(Error::InvalidInput(format!("prompt lr must be positive, got {}", lp.lr)));
            }
            if lp.only && c.from_model.is_none() {
                return Err(Error::InvalidInput(
                    "prompt-only training needs a trained model to start from (from_model)".into(),
                ));
            }
        }
        for (name, w) in [
            ("grad_penalty", c.grad_penalty),
            ("grad_align", c.grad_align),
            ("grad_align_copies", c.grad_align_copies),
        ] {
            if !(w >= 0.0 && w.is_finite()) {
                return Err(Error::InvalidInput(format!("{name} must be finite and >= 0, got {w}")));
            }
        }
        if let Some(below) = c.grad_align_below.filter(|b| !b.is_finite()) {
            return Err(Error::InvalidInput(format!("grad_align_below must be finite, got {below}")));
        }
        let labels = Vec::<f64>::try_from(self.cache.labels.to_kind(Kind::Double))?;
        if labels.len() < 2 * c.folds {
            return Err(Error::InvalidInput(format!(
                "{} images are too few for {} folds",
                labels.len(),
                c.folds
            )));
        }
        let assign = stratified_folds(&labels, c.folds, c.seed);
        std::fs::create_dir_all(&self.out).map_err(|e| Error::io(&self.out, e))?;
        let folds: Vec<usize> = match c.only_fold {
            Some(f) if f < c.folds => vec![f],
            Some(f) => return Err(Error::InvalidInput(format!("fold {f} of {}", c.folds))),
            None => (0..c.folds).collect(),
        };
        let mut results = Vec::new();
        for &fold in &folds {
            let (best_loss, best_mae) = self.run_fold(fold, &assign, resume, on_event)?;
            results.push((fold, best_loss, best_mae));
        }
        let chosen =
            results.iter().min_by(|a, b| a.2.total_cmp(&b.2)).map(|r| r.0).expect("at least one fold");
        let best = self.fold_dir(chosen).join("best");
        for f in ["ldctq.json", "head.safetensors", "vision.safetensors", "prompt.safetensors"] {
            if best.join(f).is_file() {
                let bytes = std::fs::read(best.join(f)).map_err(|e| Error::io(best.join(f), e))?;
                write_atomic(&self.out.join(f), &bytes)?;
            }
        }
        if results.len() > 1 {
            let members: Vec<PathBuf> =
                results.iter().map(|r| PathBuf::from(format!("../folds/fold-{}/best", r.0))).collect();
            crate::ensemble::Ensemble::write(&self.out.join("ensemble"), &members)?;
        }
        #[cfg(feature = "plots")]
        draw_curves(&self.out)?;
        let summary = TrainSummary { chosen_fold: chosen, folds: results, config: self.config.clone() };
        write_atomic(
            &self.out.join("train_summary.json"),
            serde_json::to_string_pretty(&summary).expect("serializes").as_bytes(),
        )?;
        Ok(summary)
    }

    fn fold_dir(&self, fold: usize) -> PathBuf {
        self.out.join("folds").join(format!("fold-{fold}"))
    }

    fn run_fold(
        &self,
        fold: usize,
        assign: &[usize],
        resume: bool,
        on_event: &mut dyn FnMut(Event) -> ControlFlow<()>,
    ) -> Result<(f64, f64)> {
        let c = &self.config;
        let dir = self.fold_dir(fold);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let train_idx: Vec<i64> =
            (0..assign.len()).filter(|&i| assign[i] != fold).map(|i| i as i64).collect();
        let val_idx: Vec<i64> = (0..assign.len()).filter(|&i| assign[i] == fold).map(|i| i as i64).collect();

        let mut model = match &c.from_model {
            Some(dir) => QualityModel::load(dir, self.at)?,
            None => QualityModel::init(self.base.clone(), self.widths, c.seed as i64 + fold as i64, self.at)?,
        };
        let prompt_only = c.learn_prompt.as_ref().is_some_and(|lp| lp.only);
        if c.anatomy_prompts {
            model.config.anatomies = self.cache.anatomy_names();
        }
        if let Some(lp) = &c.learn_prompt {
            // A learned context of this size in `from_model` is tuned further, not started afresh.
            let kept = model.prompt_context().is_some_and(|ctx| ctx.size()[0] == lp.tokens as i64);
            if !kept {
                let seed = crate::rng::derive_seed(c.seed.wrapping_add(fold as u64), PROMPT_STREAM);
                model.learn_prompt(lp.tokens as i64, lp.init, seed)?;
            }
        }
        let vision = if prompt_only { VisionTraining::Frozen } else { c.vision };
        set_trainable(&mut model, vision, !prompt_only, c.learn_prompt.is_some());
        let train_vision = !trainable(&model.vision.vs).is_empty();
        // A tower that trains, or one fine-tuned by the model training starts from, is saved.
        let save_vision =
            train_vision || c.from_model.as_ref().is_some_and(|d| d.join("vision.safetensors").is_file());
        let mut opt_vision = AdamW::new(trainable(&model.vision.vs), c.weight_decay);
        let mut opt_heads = AdamW::new(trainable(&model.heads_vs), c.weight_decay);
        let context = model.prompt_context().filter(|ctx| ctx.requires_grad());
        let mut opt_prompt =
            AdamW::new(context.map(|t| (CONTEXT_KEY.to_string(), t)).into_iter().collect(), 0.0);
        let (lr_v, lr_h) = (c.lr, c.head_lr.unwrap_or(c.lr));
        let lr_p = c.learn_prompt.as_ref().map_or(0.0, |lp| lp.lr);

        let ckpt = dir.join("last");
        let mut state = State {
            epochs_done: 0,
            opt_steps: 0,
            best_val_loss: f64::INFINITY,
            best_val_mae: f64::INFINITY,
            best_epoch: 0,
            seed: c.seed,
            fold,
        };
        let resumed = resume && ckpt.join("state.json").is_file();
        if resumed {
            state = self.restore(&ckpt, &mut model, [&mut opt_vision, &mut opt_heads, &mut opt_prompt])?;
        }
        let _ = on_event(Event::FoldStart {
            fold,
            train: train_idx.len(),
            val: val_idx.len(),
            resumed_from: resumed.then_some(state.epochs_done),
        });

        let micro_per_epoch = train_idx.len().div_ceil(c.batch_size);
        let total_steps = micro_per_epoch.div_ceil(c.accumulation) * c.epochs;
        let value_range = if model.config.input == Space::Hu { model.config.window_width } else { 1.0 };
        for epoch in state.epochs_done..c.epochs {
            let start = std::time::Instant::now();
            let mut rng = Rng::derive(&[c.seed, fold as u64, epoch as u64]);
            let mut order_rng = Rng::derive(&[c.seed, fold as u64, epoch as u64, ORDER_STREAM]);
            let mut order = train_idx.clone();
            rng.shuffle(&mut order);
            let (mut loss_sum, mut lr_now) = (0.0, lr_h);
            for (mb, chunk) in order.chunks(c.batch_size).enumerate() {
                let idx = Tensor::from_slice(chunk);
                let mut x = self.cache.images.index_select(0, &idx).to_device(self.at.device);
                let mut refs =
                    self.cache.references.as_ref().map(|r| r.index_select(0, &idx).to_device(self.at.device));
                if let Some(aug) = &c.augment {
                    // Images and references as two channels: one draw moves both alike.
                    let both = match &refs {
                        Some(r) => aug.apply(&Tensor::cat(&[&x, r], 1), value_range, &mut rng),
                        None => aug.apply(&x, value_range, &mut rng),
                    };
                    x = both.narrow(1, 0, 1);
                    refs = refs.is_some().then(|| both.narrow(1, 1, 1));
                }
                let y = self.cache.labels.index_select(0, &idx);
                if c.second_order() {
                    x = x.detach().set_requires_grad(true);
                }
                let anatomies = self.cache.anatomies_of(chunk);
                let pred = if c.second_order() {
                    crate::runtime::with_second_order(|| forward(&model, &x, &anatomies, Some(&mut rng)))?
                } else {
                    forward(&model, &x, &anatomies, Some(&mut rng))?
                };
                let mut loss = ranking_loss(&pred, &y, c.tau_rank, c.lambda_mse);
                if let Some(order) = &c.order_pairs {
                    // d score / d images, for the adversarial pairs (no parameter gradients).
                    let mut grad = |images: &Tensor, at: &[i64]| -> Result<Tensor> {
                        let of: Vec<i64> = at.iter().map(|&k| chunk[k as usize]).collect();
                        let images = images.f_detach()?.set_requires_grad(true);
                        let s = forward(&model, &images, &self.cache.anatomies_of(&of), None)?;
                        Ok(Tensor::f_run_backward(&[s.f_sum(Kind::Float)?], &[&images], false, false)?
                            .remove(0))
                    };
                    if let Some((worse, which)) =
                        order.degrade(&x, refs.as_ref(), &y, value_range, &mut order_rng, Some(&mut grad))?
                    {
                        let of: Vec<i64> = Vec::<i64>::try_from(which.f_to_device(tch::Device::Cpu)?)?
                            .iter()
                            .map(|&k| chunk[k as usize])
                            .collect();
                        let copy_anatomies = self.cache.anatomies_of(&of);
                        let pred_worse = match refs.as_ref().filter(|_| c.grad_align_copies > 0.0) {
                            Some(refs) => {
                                // g = d score / d copy, kept in the graph, turned towards the copy's
                                // reference (its image's).
                                let worse = worse.f_detach()?.set_requires_grad(true);
                                let pred = crate::runtime::with_second_order(|| {
                                    forward(&model, &worse, &copy_anatomies, Some(&mut rng))
                                })?;
                                let total = pred.f_sum(Kind::Float)?;
                                let g = Tensor::f_run_backward(&[&total], &[&worse], true, true)?.remove(0);
                                let towards = refs.f_index_select(0, &which)?.f_sub(&worse.f_detach()?)?;
                                loss += alignment_loss(&g, &towards) * c.grad_align_copies;
                                pred
                            }
                            None => forward(&model, &worse, &copy_anatomies, Some(&mut rng))?,
                        };
                        // softplus(-(s_x - s_worse) / tau): RankNet on "x is better".
                        let margin = pred.f_index_select(0, &which)?.f_sub(&pred_worse)?;
                        let term =
                            margin.f_neg()?.f_div_scalar(c.tau_rank)?.f_softplus()?.f_mean(Kind::Float)?;
                        loss += term * order.weight;
                    }
                }
                if c.second_order() {
                    // g = d score / d x, kept in the graph: (N, 1, H, W).
                    let total = pred.f_sum(Kind::Float)?;
                    let g = Tensor::f_run_backward(&[&total], &[&x], true, true)?.remove(0);
                    if c.grad_penalty > 0.0 {
                        let penalty =
                            g.f_square()?.f_sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Float)?;
                        loss += penalty.f_mean(Kind::Float)? * c.grad_penalty;
                    }
                    if let (true, Some(refs)) = (c.grad_align > 0.0, &refs) {
                        // References are loaded whenever grad_align > 0 (checked above).
                        let towards = alignment_directions(&x.f_detach()?, refs, &y, c.grad_align_below)?;
                        loss += alignment_loss(&g, &towards) * c.grad_align;
                    }
                }
                (&loss / c.accumulation as f64).backward();
                let l = loss.double_value(&[]);
                loss_sum += l;
                let _ =
                    on_event(Event::Step { fold, epoch, micro_batch: mb + 1, of: micro_per_epoch, loss: l });
                if (mb + 1) % c.accumulation == 0 || mb + 1 == micro_per_epoch {
                    let step = state.opt_steps as usize;
                    lr_now = cosine_lr(lr_h, step, total_steps);
                    if train_vision {
                        opt_vision.step(cosine_lr(lr_v, step, total_steps));
                    }
                    if !prompt_only {
                        opt_heads.step(lr_now);
                    }
                    opt_prompt.step(cosine_lr(lr_p, step, total_steps));
                    opt_vision.zero_grad();
                    opt_heads.zero_grad();
                    opt_prompt.zero_grad();
                    state.opt_steps += 1;
                }
            }
            // Validation: ranking loss over all untied pairs, MAE and the challenge metrics.
            let pred = self.predict(&model, &val_idx)?;
            let y = self.cache.labels.index_select(0, &Tensor::from_slice(&val_idx));
            let val_loss = ranking_loss(&pred, &y, c.tau_rank, c.lambda_mse).double_value(&[]);
            let (p, t) = (
                Vec::<f64>::try_from(pred.to_kind(Kind::Double))?,
                Vec::<f64>::try_from(y.to_kind(Kind::Double))?,
            );
            let mae = metrics::mae(&p, &t)?;
            let corr = |f: fn(&[f64], &[f64]) -> std::result::Result<f64, metrics::MetricError>| {
                f(&p, &t).unwrap_or(f64::NAN)
            };
            let log = EpochLog {
                fold,
                epoch: epoch + 1,
                train_loss: loss_sum / micro_per_epoch as f64,
                val_loss,
                val_mae: mae,
                val_plcc: corr(metrics::plcc),
                val_srocc: corr(metrics::srocc),
                val_krocc: corr(metrics::krocc),
                lr: lr_now,
                seconds: start.elapsed().as_secs_f64(),
            };
            state.epochs_done = epoch + 1;
            if val_loss < state.best_val_loss {
                (state.best_val_loss, state.best_val_mae, state.best_epoch) = (val_loss, mae, epoch + 1);
                let tmp = dir.join("best.tmp");
                let _ = std::fs::remove_dir_all(&tmp);
                model.save(&tmp, save_vision)?;
                swap_dir(&tmp, &dir.join("best"))?;
            }
            self.checkpoint(&ckpt, &model, save_vision, [&opt_vision, &opt_heads, &opt_prompt], &state)?;
            let line = serde_json::to_string(&log).expect("serializes") + "\n";
            append_line(&self.out.join("train_log.jsonl"), &line)?;
            if on_event(Event::Epoch(&log)).is_break() && epoch + 1 < c.epochs {
                return Err(Error::Interrupted(format!(
                    "fold {fold} stopped after epoch {}; its checkpoint is in {}",
                    epoch + 1,
                    ckpt.display()
                )));
            }
        }
        Ok((state.best_val_loss, state.best_val_mae))
    }

    fn checkpoint(
        &self,
        ckpt: &Path,
        model: &QualityModel,
        with_vision: bool,
        optimizers: [&AdamW; 3],
        state: &State,
    ) -> Result<()> {
        let tmp = ckpt.with_extension("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        model.save(&tmp, with_vision)?;
        let mut opt: Vec<(String, Tensor)> = Vec::new();
        let mut json = serde_json::json!({ "state": state });
        for (part, o) in OPTIMIZERS.iter().zip(optimizers) {
            opt.extend(o.state().into_iter().map(|(k, v)| (format!("{part}/{k}"), v)));
            json[format!("steps_{part}")] = o.step.into();
        }
        if !opt.is_empty() {
            Tensor::write_safetensors(&opt, tmp.join("optimizer.safetensors"))?;
        }
        write_atomic(&tmp.join("state.json"), json.to_string().as_bytes())?;
        swap_dir(&tmp, ckpt)
    }

    fn restore(&self, ckpt: &Path, model: &mut QualityModel, optimizers: [&mut AdamW; 3]) -> Result<State> {
        let text = std::fs::read_to_string(ckpt.join("state.json"))
            .map_err(|e| Error::io(ckpt.join("state.json"), e))?;
        let bad = |m: String| Error::Config { path: ckpt.join("state.json"), msg: m };
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let state: State = serde_json::from_value(json["state"].clone()).map_err(|e| bad(e.to_string()))?;
        if state.seed != self.config.seed || state.fold >= self.config.folds {
            return Err(bad(format!(
                "checkpoint of seed {} fold {} does not match this run",
                state.seed, state.fold
            )));
        }
        let loaded = QualityModel::load(ckpt, self.at)?;
        tch::no_grad(|| -> Result<()> {
            for (dst, src) in [(&model.heads_vs, &loaded.heads_vs), (&model.vision.vs, &loaded.vision.vs)] {
                let src = src.variables();
                for (name, mut v) in dst.variables() {
                    v.f_copy_(&src[&name])?;
                }
            }
            if let (Some(mut dst), Some(src)) = (model.prompt_context(), loaded.prompt_context()) {
                dst.f_copy_(&src)?;
            }
            Ok(())
        })?;
        let opt: HashMap<String, Tensor> = if ckpt.join("optimizer.safetensors").is_file() {
            Tensor::read_safetensors(ckpt.join("optimizer.safetensors"))?.into_iter().collect()
        } else {
            HashMap::new()
        };
        let part = |prefix: &str| -> HashMap<String, Tensor> {
            opt.iter()
                .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v.shallow_clone())))
                .collect()
        };
        for (name, o) in OPTIMIZERS.iter().zip(optimizers) {
            o.load_state(&part(&format!("{name}/")), json[format!("steps_{name}")].as_i64().unwrap_or(0))?;
        }
        Ok(state)
    }
}

/// The optimizers of a fold, in the order `checkpoint` and `restore` take them, by their prefix in
/// `optimizer.safetensors`.
const OPTIMIZERS: [&str; 3] = ["vision", "heads", "prompt"];

fn append_line(path: &Path, line: &str) -> Result<()> {
    use std::io::Write;
    let mut f =
        std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::io(path, e))?;
    f.write_all(line.as_bytes()).map_err(|e| Error::io(path, e))
}

/// `curves.png` / `.svg` from `train_log.jsonl` in `dir`: losses (left) and validation correlations
/// (right) per epoch, one colour per fold and series.
#[cfg(feature = "plots")]
fn draw_curves(dir: &Path) -> Result<()> {
    use crate::plots::{line_panels, LinePanel, Series};
    type Line = (&'static str, fn(&EpochLog) -> f64);
    let log_path = dir.join("train_log.jsonl");
    let log_text = std::fs::read_to_string(&log_path).map_err(|e| Error::io(&log_path, e))?;
    let logs: Vec<EpochLog> = log_text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let logs = &logs;
    let mut folds: Vec<usize> = logs.iter().map(|l| l.fold).collect();
    folds.dedup();
    let panel = |title: &str, y_max: f64, lines: [Line; 2]| LinePanel {
        title: title.into(),
        y_max,
        lines: folds
            .iter()
            .flat_map(|&fold| {
                lines.iter().map(move |(name, value)| Series {
                    name: format!("fold {fold} {name}"),
                    points: logs
                        .iter()
                        .filter(|l| l.fold == fold)
                        .map(|l| (l.epoch as f64, value(l).max(0.0)))
                        .collect(),
                })
            })
            .collect(),
    };
    let max_loss = logs.iter().map(|l| l.train_loss.max(l.val_loss)).fold(0.0, f64::max).max(1e-3);
    let panels = [
        panel("ranking loss", max_loss * 1.05, [("train", |l| l.train_loss), ("val", |l| l.val_loss)]),
        panel("validation correlation", 1.0, [("SROCC", |l| l.val_srocc), ("PLCC", |l| l.val_plcc)]),
    ];
    line_panels(dir, "curves", "epoch", &panels)
        .map(|_| ())
        .map_err(|e| Error::io(dir.join("curves.png"), std::io::Error::other(e.to_string())))
}
