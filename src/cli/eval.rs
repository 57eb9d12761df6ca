//! `ldctq eval`: every metric of a model on a labelled set.
use super::Runtime;
use ldctq::criterion::QualityCriterion;
use ldctq::data::Dataset;
use ldctq::ensemble::Scorer;
use ldctq::train::Cache;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long)]
    model: PathBuf,
    /// LDCTIQA2023 folder or CSV manifest.
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// table or json.
    #[arg(long, default_value = "table")]
    format: String,
    #[command(flatten)]
    runtime: Runtime,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.batch > 0, "--batch must be at least 1");
    let model = Scorer::load(&args.model, args.runtime.placement()?)?;
    let data = Dataset::open(&args.data)?;
    let cache = Cache::load(&data, model.config())?;
    let _guard = tch::no_grad_guard();
    let mut pred = Vec::new();
    for chunk in cache.images.split(args.batch as i64, 0) {
        pred.extend(Vec::<f64>::try_from(
            model.score(&chunk)?.to_kind(tch::Kind::Double).to_device(tch::Device::Cpu),
        )?);
    }
    let report = ldctq::metrics::evaluate(&pred, &data.labels())?;
    match args.format.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&report)?),
        "table" => {
            println!("images  {}", report.n);
            for (k, v) in [
                ("PLCC", report.plcc),
                ("SROCC", report.srocc),
                ("KROCC", report.krocc),
                ("Overall", report.overall),
                ("MAE", report.mae),
                ("RMSE", report.rmse),
            ] {
                println!("{k:<7} {v:.4}");
            }
        }
        other => anyhow::bail!("--format {other:?}: expected table or json"),
    }
    Ok(())
}
