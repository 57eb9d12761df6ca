//! `ldctq init`: a fresh, untrained model folder on a SigLIP backbone.
use ldctq::heads::LocalMode;
use ldctq::model::{backbone_ref, QualityConfig, QualityModel};
use ldctq::{Space, Window};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// SigLIP backbone: model folder, HF cache folder, or a repo id in the local HF cache.
    #[arg(long)]
    backbone: String,
    /// Output model folder.
    #[arg(long)]
    out: PathBuf,
    /// Seed of the random head initialisation.
    #[arg(long, default_value_t = 0)]
    seed: i64,
    /// Input space of the images the model will score: unit ([0,1]) or hu.
    #[arg(long, default_value = "unit")]
    input: Space,
    /// HU window "CENTER,WIDTH" or a name (ldctiqa, abdomen, chest, neuro): applied to HU input, or
    /// recording how [0,1] images were made.
    #[arg(long, allow_hyphen_values = true)]
    window: Option<Window>,
    /// Prompt (default: the paper's clinical prompt).
    #[arg(long)]
    prompt: Option<String>,
    #[command(flatten)]
    widths: super::WidthArgs,
    /// Local pooling: sequence (the paper's) or grid (2x2 quadrants).
    #[arg(long, default_value = "sequence")]
    local_mode: LocalMode,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let pretrained = ldctq::siglip::Pretrained::open(&args.backbone)?;
    let mut config = QualityConfig::new(
        &backbone_ref(&args.backbone, &args.out)?,
        pretrained.config.vision_config.image_size,
    );
    drop(pretrained);
    config.input = args.input;
    if let Some(w) = args.window {
        (config.window_center, config.window_width) = (w.center, w.width);
    }
    if let Some(p) = args.prompt {
        config.prompt = p;
    }
    config.local_mode = args.local_mode;
    let widths = args.widths.widths();
    // The backbone reference is relative to the model folder: open it from there.
    let mut open_cfg = config.clone();
    open_cfg.backbone = ldctq::model::resolve_backbone(&config.backbone, Some(&args.out));
    let mut model = QualityModel::init(open_cfg, widths, args.seed, ldctq::Placement::default())?;
    model.config.backbone = config.backbone.clone();
    model.save(&args.out, false)?;
    eprintln!("wrote untrained model folder {} (backbone {})", args.out.display(), config.backbone);
    Ok(())
}
