//! `ldctq eval`: every metric of a model on a labelled set.
use super::Runtime;
use anyhow::Context;
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
    /// Also print a table grouped by this field of the set's meta.json (e.g. dose or views).
    #[arg(long)]
    by: Option<String>,
    #[command(flatten)]
    runtime: Runtime,
}

/// (group value, n, mean label, mean score, MAE)
type GroupRow = (String, usize, f64, f64, f64);

/// Rows grouped by `field` of `meta.json` entries.
fn grouped(data: &Dataset, labels: &[f64], pred: &[f64], field: &str) -> anyhow::Result<Vec<GroupRow>> {
    let meta_path = data.root.join("meta.json");
    let text =
        std::fs::read_to_string(&meta_path).with_context(|| format!("--by needs {}", meta_path.display()))?;
    let entries: Vec<serde_json::Value> = serde_json::from_str(&text)?;
    let key_of: std::collections::HashMap<String, String> = entries
        .iter()
        .filter_map(|e| Some((e["file"].as_str()?.to_string(), e.get(field)?.to_string())))
        .collect();
    let mut groups: std::collections::BTreeMap<String, Vec<(f64, f64)>> = Default::default();
    for ((sample, &label), &p) in data.samples.iter().zip(labels).zip(pred) {
        let name = sample.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let key =
            key_of.get(&name).with_context(|| format!("{name}: no {field:?} in {}", meta_path.display()))?;
        groups.entry(key.clone()).or_default().push((label, p));
    }
    let mut rows: Vec<_> = groups
        .into_iter()
        .map(|(k, v)| {
            let n = v.len() as f64;
            let mean = |f: fn(&(f64, f64)) -> f64| v.iter().map(f).sum::<f64>() / n;
            (k, v.len(), mean(|x| x.0), mean(|x| x.1), mean(|x| (x.0 - x.1).abs()))
        })
        .collect();
    rows.sort_by(|a, b| b.0.parse::<f64>().unwrap_or(0.0).total_cmp(&a.0.parse::<f64>().unwrap_or(0.0)));
    Ok(rows)
}

/// The metrics of one anatomy's images.
#[derive(serde::Serialize)]
struct AnatomyMetrics {
    anatomy: String,
    #[serde(flatten)]
    report: ldctq::metrics::Report,
}

/// Metrics per anatomy of the set (`unknown` for images without one), when it names any (the table
/// shows them when there are two or more); groups too small or too uniform for correlations are left
/// out.
fn by_anatomy(anatomies: &[Option<String>], pred: &[f64], labels: &[f64]) -> Vec<AnatomyMetrics> {
    if anatomies.iter().all(Option::is_none) {
        return Vec::new();
    }
    let mut groups: std::collections::BTreeMap<&str, (Vec<f64>, Vec<f64>)> = Default::default();
    for ((a, &p), &l) in anatomies.iter().zip(pred).zip(labels) {
        let g = groups.entry(a.as_deref().unwrap_or("unknown")).or_default();
        g.0.push(p);
        g.1.push(l);
    }
    groups
        .into_iter()
        .filter_map(|(a, (p, l))| {
            let report = ldctq::metrics::evaluate(&p, &l).ok()?;
            Some(AnatomyMetrics { anatomy: a.to_string(), report })
        })
        .collect()
}

pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.batch > 0, "--batch must be at least 1");
    let mut model = Scorer::load(&args.model, args.runtime.placement()?)?;
    let data = Dataset::open(&args.data)?;
    let labels = data.labels()?;
    let cache = Cache::load(&data, model.config())?;
    let _guard = tch::no_grad_guard();
    // Images of each anatomy together, conditioned on it when the model has anatomy prompts.
    let known = model.config().anatomies.clone();
    let mut pred = vec![f64::NAN; labels.len()];
    let mut anatomies: Vec<Option<&String>> = cache.anatomies.iter().map(Option::as_ref).collect();
    anatomies.sort();
    anatomies.dedup();
    for anatomy in anatomies {
        let idx: Vec<i64> =
            (0..labels.len()).filter(|&i| cache.anatomies[i].as_ref() == anatomy).map(|i| i as i64).collect();
        model.set_anatomy(anatomy.filter(|a| known.contains(a)).map(String::as_str))?;
        for chunk in idx.chunks(args.batch) {
            let x = cache.images.index_select(0, &tch::Tensor::from_slice(chunk));
            let scores = model.score(&x)?.to_kind(tch::Kind::Double).to_device(tch::Device::Cpu);
            for (&i, s) in chunk.iter().zip(Vec::<f64>::try_from(scores)?) {
                pred[i as usize] = s;
            }
        }
    }
    let report = ldctq::metrics::evaluate(&pred, &labels)?;
    let by_anatomy = by_anatomy(&cache.anatomies, &pred, &labels);
    let groups = args.by.as_deref().map(|f| grouped(&data, &labels, &pred, f)).transpose()?;
    match args.format.as_str() {
        "json" => {
            let groups = groups.map(|g| {
                g.into_iter()
                    .map(|(k, n, l, p, mae)| serde_json::json!({"value": k, "n": n, "mean_label": l, "mean_score": p, "mae": mae}))
                    .collect::<Vec<_>>()
            });
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"metrics": report, "groups": groups, "by_anatomy": by_anatomy})
                )?
            )
        }
        "table" => {
            if let (Some(field), Some(rows)) = (&args.by, &groups) {
                println!(
                    "{field:>8}  {:>6}  {:>10}  {:>10}  {:>6}",
                    "images", "mean label", "mean score", "MAE"
                );
                for (k, n, l, p, mae) in rows {
                    println!("{k:>8}  {n:>6}  {l:>10.3}  {p:>10.3}  {mae:>6.3}");
                }
                println!();
            }
            if by_anatomy.len() > 1 {
                println!(
                    "{:>8}  {:>6}  {:>6}  {:>6}  {:>6}  {:>6}",
                    "anatomy", "images", "PLCC", "SROCC", "KROCC", "MAE"
                );
                for r in &by_anatomy {
                    println!(
                        "{:>8}  {:>6}  {:>6.3}  {:>6.3}  {:>6.3}  {:>6.3}",
                        r.anatomy, r.report.n, r.report.plcc, r.report.srocc, r.report.krocc, r.report.mae
                    );
                }
                println!();
            }
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
