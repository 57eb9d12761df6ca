//! `ldctq train`: k-fold ranking-loss training of a model folder; `ldctq eval`: the challenge metrics.
use super::Runtime;
use indicatif::{ProgressBar, ProgressStyle};
use ldctq::data::Dataset;
use ldctq::model::{backbone_ref, resolve_backbone, PromptInit, QualityConfig};
use ldctq::train::{
    Augment, Cache, Event, LearnPrompt, OrderKind, OrderPairs, TrainConfig, Trainer, VisionTraining,
};
use ldctq::{Space, Window};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Training set: LDCTIQA2023 folder (image/ + labels json) or CSV manifest.
    #[arg(long)]
    data: PathBuf,
    /// SigLIP backbone (folder, HF cache folder, or cached repo id); not with --init-from.
    #[arg(long, required_unless_present = "init_from", conflicts_with = "init_from")]
    backbone: Option<String>,
    /// Start from a trained model folder (its backbone, preprocessing, heads, vision tower) instead
    /// of a fresh model.
    #[arg(long)]
    init_from: Option<PathBuf>,
    /// Output model folder (also holds folds/, train_log.jsonl, train_summary.json).
    #[arg(long)]
    out: PathBuf,
    /// Continue from the last epoch checkpoints in --out.
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value_t = 22)]
    epochs: usize,
    #[arg(long, default_value_t = 4)]
    batch: usize,
    #[arg(long, default_value_t = 2)]
    accumulation: usize,
    #[arg(long, default_value_t = 1e-5)]
    lr: f64,
    /// Learning rate of FiLM and heads (default: --lr).
    #[arg(long)]
    head_lr: Option<f64>,
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f64,
    #[arg(long, default_value_t = 0.0)]
    lambda_mse: f64,
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Train only this fold.
    #[arg(long)]
    fold: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Vision tower: full, frozen or last:N.
    #[arg(long, default_value = "full")]
    vision: VisionTraining,
    /// Disable augmentation.
    #[arg(long)]
    no_augment: bool,
    /// Input space of the images: unit or hu.
    #[arg(long, default_value = "unit", conflicts_with = "init_from")]
    input: Space,
    /// HU window "CENTER,WIDTH" or a name (ldctiqa, abdomen, chest, neuro): recorded for unit input,
    /// applied to hu input.
    #[arg(long, allow_hyphen_values = true, conflicts_with = "init_from")]
    window: Option<Window>,
    /// Weakly supervised order pairs, each image against a degraded copy of itself: any of blur,
    /// oversmooth, noise, texture, offset, sharpen, reference, detail, adversarial (comma-separated;
    /// see `ldctq::train::OrderKind`; `reference`, `detail` and `adversarial` need a set with
    /// references, as `ldctq simulate` writes).
    #[arg(long, value_delimiter = ',')]
    order_pairs: Vec<OrderKind>,
    /// Weight of the order-pair term.
    #[arg(long, default_value_t = 1.0)]
    order_weight: f64,
    /// Blur, oversmooth and sharpen pairs only for images labelled at least this.
    #[arg(long, default_value_t = 3.0)]
    order_min_label: f64,
    /// Weight of the input-gradient-norm penalty (0: off; double backward, about 3x slower).
    #[arg(long, default_value_t = 0.0)]
    grad_penalty: f64,
    /// Weight of the gradient-alignment term: teaches the score's gradient to point from each image
    /// towards its reference (needs a set with references; double backward, about 3x slower).
    #[arg(long, default_value_t = 0.0)]
    grad_align: f64,
    /// Align only the images labelled below this (default: all that differ from their references).
    #[arg(long, requires = "grad_align")]
    grad_align_below: Option<f64>,
    /// Weight of the same alignment at the order pairs' degraded copies, towards their images'
    /// references (teaches the score to fall along blur; needs --order-pairs and references).
    #[arg(long, default_value_t = 0.0, requires = "order_pairs")]
    grad_align_copies: f64,
    /// Model input size (default: the backbone's).
    #[arg(long, conflicts_with = "init_from")]
    image_size: Option<i64>,
    /// The hand prompt (default: the paper's); with --learn-prompt hand, the context's start.
    #[arg(long, conflicts_with = "init_from")]
    prompt: Option<String>,
    /// FiLM strength s of the new model (0: no prompt).
    #[arg(long, allow_hyphen_values = true, conflicts_with = "init_from")]
    film_strength: Option<f64>,
    /// Learn N prompt context vectors through the frozen text tower (CoOp); N defaults to 16.
    #[arg(long, num_args = 0..=1, default_missing_value = "16", value_name = "N")]
    learn_prompt: Option<usize>,
    /// Start of the learned context: hand (the prompt's first N token embeddings) or random (N(0, 0.02)).
    #[arg(long, default_value = "hand", requires = "learn_prompt")]
    prompt_init: PromptInit,
    /// Learning rate of the learned context.
    #[arg(long, default_value_t = 2e-3, requires = "learn_prompt")]
    prompt_lr: f64,
    /// Anatomy prompts: condition each image on the prompt plus its anatomy word (manifest column
    /// `anatomy` or meta.json).
    #[arg(long)]
    anatomy_prompts: bool,
    /// Train only the learned context (FiLM, heads and vision tower of --init-from stay fixed).
    #[arg(long, requires = "learn_prompt")]
    prompt_only: bool,
    #[command(flatten)]
    widths: super::WidthArgs,
    #[command(flatten)]
    runtime: Runtime,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let data = Dataset::open(&args.data)?;
    anyhow::ensure!(
        !args.prompt_only || args.init_from.is_some(),
        "--prompt-only needs --init-from MODEL (the trained model whose prompt it tunes)"
    );
    let mut base = match (&args.init_from, &args.backbone) {
        (Some(dir), _) => {
            let mut cfg = QualityConfig::from_file(&dir.join("ldctq.json"))?;
            cfg.backbone = backbone_ref(&resolve_backbone(&cfg.backbone, Some(dir)), &args.out)?;
            cfg
        }
        (None, Some(backbone)) => {
            let pretrained = ldctq::siglip::Pretrained::open(backbone)?;
            let size = args.image_size.unwrap_or(pretrained.config.vision_config.image_size);
            let mut cfg = QualityConfig::new(&backbone_ref(backbone, &args.out)?, size);
            cfg.input = args.input;
            if let Some(w) = args.window {
                (cfg.window_center, cfg.window_width) = (w.center, w.width);
            }
            if let Some(p) = &args.prompt {
                cfg.prompt = p.clone();
            }
            if let Some(s) = args.film_strength {
                cfg.film_strength = s;
            }
            cfg
        }
        (None, None) => unreachable!("clap requires --backbone or --init-from"),
    };
    let config = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch,
        accumulation: args.accumulation,
        lr: args.lr,
        head_lr: args.head_lr,
        weight_decay: args.weight_decay,
        lambda_mse: args.lambda_mse,
        folds: args.folds,
        only_fold: args.fold,
        seed: args.seed,
        vision: args.vision,
        augment: (!args.no_augment).then(Augment::default),
        order_pairs: (!args.order_pairs.is_empty()).then(|| OrderPairs {
            kinds: args.order_pairs.clone(),
            weight: args.order_weight,
            min_label: args.order_min_label,
        }),
        grad_penalty: args.grad_penalty,
        grad_align: args.grad_align,
        grad_align_below: args.grad_align_below,
        grad_align_copies: args.grad_align_copies,
        learn_prompt: args.learn_prompt.map(|tokens| LearnPrompt {
            tokens,
            init: args.prompt_init,
            lr: args.prompt_lr,
            only: args.prompt_only,
        }),
        from_model: args.init_from.clone(),
        anatomy_prompts: args.anatomy_prompts,
        ..TrainConfig::default()
    };
    let mut cache = Cache::load(&data, &base)?;
    if config.needs_references() {
        cache = cache.with_references(&data, &base)?;
    }
    eprintln!("{} images from {}", data.samples.len(), args.data.display());
    // The model folder stores the backbone relative to itself; the trainer opens it from here.
    let stored_backbone = base.backbone.clone();
    base.backbone = resolve_backbone(&base.backbone, Some(&args.out));
    let widths = args.widths.widths();
    let trainer =
        Trainer { base, widths, config, at: args.runtime.placement()?, out: args.out.clone(), cache: &cache };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("fold {prefix} epoch {msg} {bar:30} {pos}/{len} batches eta {eta}")
            .expect("valid template"),
    );
    let summary = trainer.run(args.resume, &mut |event| {
        match event {
        Event::FoldStart { fold, train, val, resumed_from } => {
            bar.suspend(|| match resumed_from {
                Some(e) => eprintln!("fold {fold}: {train} train / {val} val images, resuming after epoch {e}"),
                None => eprintln!("fold {fold}: {train} train / {val} val images"),
            });
            bar.set_prefix(fold.to_string());
        }
        Event::Step { epoch, micro_batch, of, .. } => {
            bar.set_length(of as u64);
            bar.set_position(micro_batch as u64);
            bar.set_message((epoch + 1).to_string());
        }
        Event::Epoch(log) => bar.suspend(|| {
            eprintln!(
                "fold {} epoch {:>2}: train loss {:.4}, val loss {:.4}, val MAE {:.3}, PLCC {:.3}, SROCC {:.3}, KROCC {:.3} ({:.1} s)",
                log.fold, log.epoch, log.train_loss, log.val_loss, log.val_mae, log.val_plcc, log.val_srocc, log.val_krocc, log.seconds
            )
        }),
        }
        std::ops::ControlFlow::Continue(())
    })?;
    bar.finish_and_clear();
    // Record the backbone as given relative to the model folder.
    let cfg_path = args.out.join("ldctq.json");
    let mut cfg = QualityConfig::from_file(&cfg_path)?;
    cfg.backbone = stored_backbone;
    ldctq::io::write_atomic(&cfg_path, serde_json::to_string_pretty(&cfg)?.as_bytes())?;
    eprintln!(
        "model folder {} (fold {} chosen by validation MAE; curves.png)",
        args.out.display(),
        summary.chosen_fold
    );
    Ok(())
}
