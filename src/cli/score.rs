//! `ldctq score`: quality scores of CT images, one line per image (path, frame, score), and a summary.
use super::{image_files, Runtime};
use ldctq::criterion::QualityCriterion;
use ldctq::data::Shard;
use ldctq::ensemble::Scorer;
use ldctq::io;
use ldctq::Space;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;
use tch::Tensor;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model folder (ldctq.json, head.safetensors).
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    prompt: super::PromptArgs,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// What the values of npy / integer TIFF files are: unit or hu.
    #[arg(long)]
    input: Option<Space>,
    /// Only part I of N (0 <= I < N) of the files found (contiguous parts, cut at multiples of --batch),
    /// e.g. `--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`; the parts' CSV rows, in shard order,
    /// are together the unsharded run's rows.
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,
    #[command(flatten)]
    runtime: Runtime,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Image files or folders (DICOM series, TIFF, npy, PNG).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

#[derive(Serialize, Debug, Clone)]
pub struct Row {
    pub path: String,
    pub frame: usize,
    pub score: f64,
}

#[derive(Serialize, Debug, Default)]
pub struct Summary {
    pub images: usize,
    pub failed_files: usize,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    pub seconds: f64,
    pub images_per_second: f64,
}

impl Summary {
    pub fn of(scores: &[f64], failed_files: usize, seconds: f64) -> Self {
        let n = scores.len();
        if n == 0 {
            return Self { failed_files, seconds, ..Default::default() };
        }
        let mean = scores.iter().sum::<f64>() / n as f64;
        let var = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64;
        Self {
            images: n,
            failed_files,
            mean,
            std: if n > 1 { var.sqrt() } else { 0.0 },
            min: scores.iter().copied().fold(f64::INFINITY, f64::min),
            max: scores.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            seconds,
            images_per_second: n as f64 / seconds.max(1e-9),
        }
    }
}

/// Frames waiting to be scored together (same size).
struct Batch {
    items: Vec<(String, usize, Tensor)>,
}

impl Batch {
    fn flush(&mut self, model: &Scorer, rows: &mut Vec<Row>) -> anyhow::Result<()> {
        if self.items.is_empty() {
            return Ok(());
        }
        let frames: Vec<&Tensor> = self.items.iter().map(|(_, _, t)| t).collect();
        let scores = model.score(&Tensor::stack(&frames, 0))?;
        let scores = Vec::<f64>::try_from(scores.to_kind(tch::Kind::Double).to_device(tch::Device::Cpu))?;
        for ((path, frame, _), score) in self.items.drain(..).zip(scores) {
            rows.push(Row { path, frame, score });
        }
        Ok(())
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.batch > 0, "--batch must be at least 1");
    let raw_as = args.input;
    let mut files = image_files(&args.paths)?;
    if let Some(shard) = args.shard {
        files = files[shard.range(files.len(), args.batch)].to_vec();
    }
    let model = args.runtime.load(&args.model, &args.prompt)?;
    let start = Instant::now();
    let bar = indicatif::ProgressBar::new(files.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} files {per_sec} eta {eta}")
            .expect("valid template"),
    );
    let (mut rows, mut failed) = (Vec::new(), 0);
    let mut batch = Batch { items: Vec::new() };
    let _guard = tch::no_grad_guard();
    for file in &files {
        bar.inc(1);
        let frames = io::read_image(file)
            .map_err(ldctq::Error::from)
            .and_then(|s| ldctq::data::frames(&s, raw_as, model.config().input, model.config().window()));
        let frames = match frames {
            Ok(f) => f,
            Err(e) => {
                let hint = if raw_as.is_none() && matches!(e, ldctq::Error::InvalidInput(_)) {
                    " (pass --input unit or --input hu)"
                } else {
                    ""
                };
                bar.suspend(|| eprintln!("skipping {}: {e}{hint}", file.display()));
                failed += 1;
                continue;
            }
        };
        for (i, frame) in frames.unbind(0).into_iter().enumerate() {
            let same_size = batch.items.first().is_none_or(|(_, _, t)| t.size() == frame.size());
            if !same_size || batch.items.len() == args.batch {
                batch.flush(&model, &mut rows)?;
            }
            batch.items.push((file.display().to_string(), i, frame));
        }
    }
    batch.flush(&model, &mut rows)?;
    bar.finish_and_clear();
    let scores: Vec<f64> = rows.iter().map(|r| r.score).collect();
    let summary = Summary::of(&scores, failed, start.elapsed().as_secs_f64());
    print_rows(&rows, &summary, &model, args.format)?;
    anyhow::ensure!(failed == 0, "{failed} file(s) could not be scored");
    Ok(())
}

fn print_rows(rows: &[Row], summary: &Summary, model: &Scorer, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Csv => {
            println!("path,frame,score");
            for r in rows {
                println!("{},{},{:.6}", csv_field(&r.path), r.frame, r.score);
            }
        }
        Format::Json => {
            let out = serde_json::json!({
                "model": model.config(),
                "scores": rows,
                "summary": summary,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Format::Table => {
            let width = rows.iter().map(|r| r.path.len()).max().unwrap_or(4).max(4);
            println!("{:<width$}  {:>5}  {:>6}", "path", "frame", "score");
            for r in rows {
                println!("{:<width$}  {:>5}  {:>6.3}", r.path, r.frame, r.score);
            }
            println!(
                "\n{} images: mean {:.3}, std {:.3}, min {:.3}, max {:.3} ({:.2} s, {:.1} images/s){}",
                summary.images,
                summary.mean,
                summary.std,
                summary.min,
                summary.max,
                summary.seconds,
                summary.images_per_second,
                if summary.failed_files > 0 {
                    format!("; {} file(s) failed", summary.failed_files)
                } else {
                    String::new()
                }
            );
        }
    }
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
