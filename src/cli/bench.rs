//! `ldctq bench`: benchmark denoisers by the no-reference score (and PSNR/SSIM where the set has
//! references); writes per_image.csv, summary.{md,csv,json} and plots to --out. `--shard I/N` runs one
//! part of the set (an array job's task); `ldctq bench merge OUT SHARD_DIRS...` joins the parts.
use super::Runtime;
use anyhow::Context;
use ldctq::bench::{self, BenchOptions, Event, Provenance, Summary};
use ldctq::criterion::QualityCriterion;
use ldctq::data::{Dataset, Shard};
use ldctq::denoise;
use ldctq::{Space, Window};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Join the output folders of `ldctq bench --shard I/N` (every I of one N, same options) into OUT:
    /// the per_image.csv of the unsharded run, and its statistics and plots recomputed on the whole.
    Merge {
        /// Output folder for the joined reports.
        out: PathBuf,
        /// The shards' --out folders, in any order.
        #[arg(required = true)]
        shards: Vec<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Model folder (ldctq.json, head.safetensors) or ensemble folder.
    #[arg(long, required = true)]
    model: Option<PathBuf>,
    /// Data set: an LDCTIQA2023-layout folder (image/, labels json, optional reference/ and meta.json),
    /// a CSV manifest (columns path, and optionally score, frame, reference), or a folder of images
    /// (e.g. a DICOM series); scores are not needed here.
    #[arg(long, required = true)]
    data: Option<PathBuf>,
    /// A denoiser (repeatable): a built-in (identity, gaussian, median, box, bilateral, tv) with an optional JSON config
    /// (`gaussian:{"sigma":1.5}`), a C plugin `path/lib.so[:JSON]`, or a TorchScript module `model.pt`;
    /// `LABEL=SPEC` names it in the reports.
    #[arg(long = "denoiser", value_name = "SPEC")]
    denoisers: Vec<String>,
    /// Output folder for the reports.
    #[arg(long, required = true)]
    out: Option<PathBuf>,
    /// Images per batch.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// HU window CENTER,WIDTH of PSNR and SSIM, or a name: abdomen (50,400), chest (-600,1500), neuro
    /// (40,80), ldctiqa (-300,1400; the default: the [0, 1] images as they are).
    #[arg(long, default_value = "ldctiqa", allow_hyphen_values = true)]
    window: Window,
    /// PSNR and SSIM of each image in its anatomy's window, as ldct-benchmark: the manifest's
    /// anatomy column or meta.json's "anatomy" (abdomen 50/400, chest -600/1500, neuro 40/80); images
    /// without one use --window.
    #[arg(long)]
    anatomy_windows: bool,
    /// Bootstrap replicates per interval.
    #[arg(long, default_value_t = 2000)]
    bootstrap: usize,
    /// Seed of the bootstraps and of libtorch's generator.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Only the first N images of the set.
    #[arg(long)]
    limit: Option<usize>,
    /// Only part I of N (0 <= I < N) of the images (after --limit): contiguous parts, cut at multiples of
    /// --batch, e.g. `--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`; join the outputs with
    /// `ldctq bench merge`.
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,
    /// What the values of npy / integer TIFF files are: unit or hu.
    #[arg(long)]
    input: Option<Space>,
    /// Also write every denoised image to OUT/images/<method>/.
    #[arg(long)]
    save_images: bool,
    /// Also draw quality maps (intrinsic and gradient) of every method: OUT/maps_METHOD.png (the first
    /// 4 images) and OUT/mean_map_METHOD.png (the mean map of each method).
    #[arg(long)]
    maps: bool,
    #[command(flatten)]
    prompt: super::PromptArgs,
    /// Exit with an error when a denoiser failed (the reports are written first).
    #[arg(long)]
    strict: bool,
    /// Run C plugins and TorchScript modules in this process (faster start; one that crashes takes ldctq
    /// down). By default each runs in its own worker process, where a crash is reported like any other
    /// failure.
    #[arg(long)]
    in_process_plugins: bool,
    /// Kill an isolated plugin or module that takes longer than this many seconds to load or to denoise
    /// one batch (it is then reported as failed and the others go on). Default: no limit.
    #[arg(long, value_name = "SECONDS")]
    plugin_timeout: Option<f64>,
    #[command(flatten)]
    runtime: Runtime,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Some(Command::Merge { out, shards }) => merge(&out, &shards),
        None => run_bench(args.run),
    }
}

fn merge(out: &Path, dirs: &[PathBuf]) -> anyhow::Result<()> {
    let shards = dirs
        .iter()
        .map(|d| bench::read_run(d).with_context(|| format!("reading the shard {}", d.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (result, prov) = bench::merge(shards)?;
    let summary = bench::summarize(&result, &prov.options);
    let written = bench::write_reports(out, &result, &summary, &prov)?;
    if let Some(e) = written.plots_error {
        eprintln!("warning: plots not drawn: {e}");
    }
    eprintln!("{} shards, {} images; reports in {}", dirs.len(), result.images.len(), out.display());
    print_summary(&summary, out);
    Ok(())
}

fn run_bench(args: RunArgs) -> anyhow::Result<()> {
    // Required by clap unless `merge` is given (Options only so that `merge` parses without them).
    let (Some(model_dir), Some(data_path), Some(out)) = (&args.model, &args.data, &args.out) else {
        anyhow::bail!("ldctq bench needs --model, --data and --out");
    };
    let placement = args.runtime.placement()?;
    let data =
        Dataset::open(data_path).with_context(|| format!("opening data set {}", data_path.display()))?;
    let model = args.runtime.load(model_dir, &args.prompt)?;
    let opts = BenchOptions {
        batch: args.batch,
        window: args.window,
        anatomy_windows: args.anatomy_windows,
        // A model with anatomy prompts scores each image on its own, unless --anatomy names one for all.
        anatomy_prompts: args.prompt.anatomy.is_none(),
        bootstrap: args.bootstrap,
        seed: args.seed,
        limit: args.limit,
        shard: args.shard,
        raw_as: args.input,
        save_images: args.save_images.then(|| out.join("images")),
        maps: args.maps,
    };
    anyhow::ensure!(
        !(args.in_process_plugins && args.plugin_timeout.is_some()),
        "--plugin-timeout needs isolated plugins (drop --in-process-plugins)"
    );
    let host = if args.in_process_plugins {
        denoise::PluginHost::InProcess
    } else {
        let worker = std::env::current_exe().context("locating the ldctq binary for plugin workers")?;
        let timeout = match args.plugin_timeout {
            Some(s) if s.is_finite() && s > 0.0 => Some(std::time::Duration::from_secs_f64(s)),
            Some(s) => anyhow::bail!("--plugin-timeout {s}: expected a number of seconds > 0"),
            None => None,
        };
        denoise::PluginHost::Isolated { worker, timeout }
    };
    let candidates = denoise::load_all(&args.denoisers, placement.device, &host);
    let images = data.samples.len().min(args.limit.unwrap_or(usize::MAX));
    let images = args.shard.map_or(images, |s| s.range(images, args.batch).len());
    let bar = indicatif::ProgressBar::new(images as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} images {per_sec} eta {eta} {msg}")
            .expect("valid template"),
    );
    let mut on_event = |event: Event| match event {
        Event::Skipped { method, error } => {
            bar.suspend(|| eprintln!("denoiser {method} is skipped: {error}"))
        }
        Event::Method { method } => bar.set_message(method.to_string()),
        Event::Failed { method, first, end, error } => bar.suspend(|| {
            eprintln!("denoiser {method} failed on images {first}..{end}: {error}; it is dropped")
        }),
        Event::Progress { done, .. } => bar.set_position(done as u64),
    };
    let result = bench::run(&model, &data, candidates, &opts, placement.device, &mut on_event)?;
    bar.finish_and_clear();
    let summary = bench::summarize(&result, &opts);
    let prov = Provenance::new(model_dir, &model.info().name, &data, &args.denoisers, &opts, placement)?;
    let written = bench::write_reports(out, &result, &summary, &prov)?;
    if let Some(e) = written.plots_error {
        eprintln!("warning: plots not drawn: {e}");
    }
    let t = &result.timing;
    eprintln!(
        "{} images x {} methods in {:.1} s ({:.3} images/s, {:.1}% scoring); reports in {}",
        t.images,
        result.methods.len(),
        t.total_seconds,
        t.images_per_second,
        100.0 * t.score_share,
        out.display()
    );
    let failed = print_summary(&summary, out);
    anyhow::ensure!(!(args.strict && failed > 0), "{failed} denoiser(s) failed (--strict)");
    Ok(())
}

/// The table of methods on stdout and a warning for failed denoisers; returns how many failed.
fn print_summary(summary: &Summary, out: &Path) -> usize {
    println!("{:<16} {:>5} {:>8} {:>8} {:>9} {:>9}", "method", "n", "score", "gain", "improved", "p");
    for m in &summary.methods {
        match &m.error {
            Some(e) => println!("{:<16} FAILED: {e}", m.name),
            None => println!(
                "{:<16} {:>5} {:>8} {:>8} {:>9} {:>9}",
                m.name,
                m.n,
                m.score.as_ref().map_or("-".into(), |s| format!("{:.3}", s.mean)),
                m.gain.as_ref().map_or("-".into(), |s| format!("{:+.3}", s.mean)),
                m.improved.map_or("-".into(), |f| format!("{:.0}%", 100.0 * f)),
                m.vs_input.as_ref().map_or("-".into(), |t| format!("{:.2e}", t.p)),
            ),
        }
    }
    let failed = summary.methods.iter().filter(|m| m.error.is_some()).count();
    if failed > 0 {
        eprintln!("warning: {failed} denoiser(s) failed; see {}", out.join("summary.md").display());
    }
    failed
}
