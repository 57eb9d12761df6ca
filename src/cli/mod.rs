//! Subcommands of the `ldctq` tool.
mod audit;
mod bench;
mod embed;
mod eval;
mod init;
mod map;
mod score;
mod simulate;
mod train;

use clap::{Parser, Subcommand};
use ldctq::model::Widths;

/// A differentiable, no-reference quality criterion for low-dose CT (MedSigLIP + prompt FiLM).
#[derive(Parser, Debug)]
#[command(name = "ldctq", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Image features, patch tokens or text features of a SigLIP checkpoint, as .npy.
    Embed(embed::Args),
    /// Write a fresh, untrained model folder on a SigLIP backbone.
    Init(init::Args),
    /// Score CT images (files or folders: DICOM, TIFF, npy, PNG).
    Score(score::Args),
    /// Quality maps of CT images (where quality is lost): NAME.METHOD.npy and PNG overlays.
    Map(map::Args),
    /// Simulate a low-dose CT quality data set (LDCTIQA2023 layout) from phantoms or real slices.
    Simulate(simulate::Args),
    /// Train a model folder with the pairwise ranking loss (k-fold cross-validation).
    Train(train::Args),
    /// PLCC, SROCC, KROCC, Overall, MAE and RMSE of a model on a labelled set.
    Eval(eval::Args),
    /// Benchmark denoisers (C plugins, TorchScript, built-ins) by the no-reference score on a data set.
    Bench(bench::Args),
    /// How a model behaves as an optimisation target: gradient ascent on its score from low-dose
    /// inputs (PSNR/SSIM/VIF against the references), and its score against blur and noise.
    Audit(audit::Args),
    /// Serve one denoiser (a --denoiser spec) over stdin/stdout for an isolated `bench` (started by
    /// ldctq itself).
    #[command(name = "denoiser-worker", hide = true)]
    DenoiserWorker {
        #[arg(long, default_value = "cpu")]
        device: String,
        spec: String,
    },
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Embed(args) => embed::run(args),
        Command::Init(args) => init::run(args),
        Command::Score(args) => score::run(args),
        Command::Map(args) => map::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Audit(args) => audit::run(args),
        Command::DenoiserWorker { device, spec } => {
            Ok(ldctq::denoise::isolated::serve_stdio(&spec, ldctq::placement::parse_device(&device)?)?)
        }
    }
}

/// Options shared by the commands that run a model.
#[derive(clap::Args, Debug, Clone)]
pub struct Runtime {
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

impl Runtime {
    pub fn placement(&self) -> anyhow::Result<ldctq::Placement> {
        Ok(ldctq::Placement::parse(&self.device, &self.dtype)?)
    }

    /// The model or ensemble folder `dir` on this placement, with the prompt options applied.
    pub fn load(
        &self,
        dir: &std::path::Path,
        prompt: &PromptArgs,
    ) -> anyhow::Result<ldctq::ensemble::Scorer> {
        use anyhow::Context;
        let mut model = ldctq::ensemble::Scorer::load(dir, self.placement()?)
            .with_context(|| format!("loading model {}", dir.display()))?;
        if let Some(p) = &prompt.prompt {
            model.set_prompt(p)?;
        }
        if let Some(s) = prompt.film_strength {
            model.set_film_strength(s)?;
        }
        if prompt.anatomy.is_some() {
            model.set_anatomy(prompt.anatomy.as_deref())?;
        }
        Ok(model)
    }
}

/// What conditions the model, for the commands that run one.
#[derive(clap::Args, Debug, Clone)]
pub struct PromptArgs {
    /// Replace the model's prompt by this text (also a learned prompt).
    #[arg(long)]
    pub prompt: Option<String>,
    /// Override the FiLM strength (0 disables the prompt).
    #[arg(long, allow_hyphen_values = true)]
    pub film_strength: Option<f64>,
    /// The images' anatomy, for a model with anatomy prompts (one of its `anatomies`). `ldctq bench`
    /// otherwise conditions each image on its own anatomy (manifest column or meta.json).
    #[arg(long)]
    pub anatomy: Option<String>,
}

/// The image files of `paths` (files, or folders that must hold at least one), in order.
pub fn image_files(paths: &[std::path::PathBuf]) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        let found = ldctq::io::list_images(p)?;
        anyhow::ensure!(!found.is_empty(), "{}: no supported image files", p.display());
        files.extend(found);
    }
    Ok(files)
}

/// Hidden widths of a new model's FiLM generator, branch heads and fusion MLP (`init`, `train`).
#[derive(clap::Args, Debug, Clone)]
pub struct WidthArgs {
    /// Hidden width of the FiLM generator.
    #[arg(long, default_value_t = Widths::default().film_hidden)]
    film_hidden: i64,
    /// Hidden width of each branch head.
    #[arg(long, default_value_t = Widths::default().head_hidden)]
    head_hidden: i64,
    /// Hidden width of the fusion MLP.
    #[arg(long, default_value_t = Widths::default().fusion_hidden)]
    fusion_hidden: i64,
}

impl WidthArgs {
    pub fn widths(&self) -> Widths {
        Widths {
            film_hidden: self.film_hidden,
            head_hidden: self.head_hidden,
            fusion_hidden: self.fusion_hidden,
        }
    }
}
