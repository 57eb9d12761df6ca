//! `ldctq audit`: how a model behaves as an optimisation target (gradient ascent on its score from
//! low-dose inputs, its score against blur and noise of the references); writes summary.md,
//! audit.json and audit.png/.svg to --out.
use super::Runtime;
use anyhow::Context;
use ldctq::audit::{self, AuditOptions, Event};
use ldctq::data::Dataset;
use ldctq::{Space, Window};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model folder (ldctq.json, head.safetensors) or ensemble folder.
    #[arg(long)]
    model: PathBuf,
    /// Data set with full-dose references: an `ldctq simulate` folder (image/, reference/, meta.json)
    /// or a CSV manifest with a reference column.
    #[arg(long)]
    data: PathBuf,
    /// Output folder for the reports.
    #[arg(long)]
    out: PathBuf,
    /// L-infinity budget of the gradient ascent, in [0, 1] display units (LDCTIQA window -300/1400:
    /// 0.02 is 28 HU).
    #[arg(long, default_value_t = AuditOptions::default().epsilon)]
    epsilon: f64,
    /// Gradient ascent steps.
    #[arg(long, default_value_t = AuditOptions::default().steps)]
    steps: usize,
    /// Step size of the ascent (default 2.5 * epsilon / steps).
    #[arg(long)]
    step_size: Option<f64>,
    /// Gaussian sigmas (pixels) of the blur curve, increasing.
    #[arg(long, value_delimiter = ',', default_value = "0,0.5,1,1.5,2,3,4")]
    sigmas: Vec<f64>,
    /// White-noise levels of the noise curve, increasing, in units of each low-dose image's noise rms.
    #[arg(long, value_delimiter = ',', default_value = "0,0.25,0.5,1,2")]
    noise_levels: Vec<f64>,
    /// Images per batch.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Only the first N images of the set.
    #[arg(long)]
    limit: Option<usize>,
    /// HU window CENTER,WIDTH of PSNR and SSIM, or a name: abdomen (50,400), chest (-600,1500), neuro
    /// (40,80), ldctiqa (-300,1400; the default: the [0, 1] images as they are).
    #[arg(long, default_value = "ldctiqa", allow_hyphen_values = true)]
    window: Window,
    /// Seed of the noise curve's noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// What the values of npy / integer TIFF files are: unit or hu.
    #[arg(long)]
    input: Option<Space>,
    #[command(flatten)]
    prompt: super::PromptArgs,
    /// Exit with an error when the ascent lowers PSNR on average (the reports are written first).
    #[arg(long)]
    strict: bool,
    #[command(flatten)]
    runtime: Runtime,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let placement = args.runtime.placement()?;
    let data =
        Dataset::open(&args.data).with_context(|| format!("opening data set {}", args.data.display()))?;
    let model = args.runtime.load(&args.model, &args.prompt)?;
    let opts = AuditOptions {
        epsilon: args.epsilon,
        steps: args.steps,
        step_size: args.step_size,
        sigmas: args.sigmas,
        noise_levels: args.noise_levels,
        batch: args.batch,
        window: args.window,
        seed: args.seed,
        limit: args.limit,
        raw_as: args.input,
    };
    opts.validate()?;
    let total = data.samples.len().min(args.limit.unwrap_or(usize::MAX));
    let bar = indicatif::ProgressBar::new(total as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} images eta {eta} {msg}")
            .expect("valid template"),
    );
    let mut on_event = |event: Event| match event {
        Event::Step { step, steps } => bar.set_message(format!("ascent step {step}/{steps}")),
        Event::Progress { done, .. } => bar.set_position(done as u64),
    };
    let result = audit::run(&model, &data, &opts, placement.device, &mut on_event)?;
    bar.finish_and_clear();
    let summary = audit::summarize(&result);
    let (model_name, data_name) = (args.model.display().to_string(), args.data.display().to_string());
    let written = audit::write_reports(&args.out, &result, &summary, &model_name, &data_name)?;
    if let Some(e) = written.plots_error {
        eprintln!("warning: plot not drawn: {e}");
    }
    eprintln!("{} images in {:.1} s; reports in {}", summary.images, result.seconds, args.out.display());
    let est = |e: &ldctq::bench::Estimate, d: usize| match e.ci {
        Some((lo, hi)) => format!("{:+.d$} [{lo:+.d$}, {hi:+.d$}]", e.mean),
        None => format!("{:+.d$}", e.mean),
    };
    println!("score: input {:.3}, reference {:.3}", summary.score_input, summary.score_reference);
    println!(
        "ascent (epsilon {}, {} steps of {:.4}): score {}, PSNR {} dB (ceiling {:+.3}), SSIM {}{}; PSNR fell \
         on {:.0}% of images",
        opts.epsilon,
        opts.steps,
        result.step_size,
        est(&summary.score_gain, 3),
        est(&summary.psnr_change, 3),
        summary.psnr_ceiling_change,
        est(&summary.ssim_change, 4),
        summary.vif_change.as_ref().map_or(String::new(), |v| format!(", VIF {}", est(v, 4))),
        100.0 * summary.psnr_lowered
    );
    let curve = |c: &[audit::CurvePoint]| {
        c.iter().map(|p| format!("{}: {:.3}", p.x, p.mean)).collect::<Vec<_>>().join(", ")
    };
    println!("score vs blur sigma: {}", curve(&summary.blur));
    println!("score vs noise level: {}", curve(&summary.noise));
    if summary.ascent_lowers_psnr() {
        anyhow::ensure!(
            !args.strict,
            "the ascent lowers PSNR on average ({:+.3} dB; --strict)",
            summary.psnr_change.mean
        );
    }
    Ok(())
}
