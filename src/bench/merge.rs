//! The outputs of a sharded benchmark (`ldctq bench --shard I/N`, one folder per shard) combined into
//! the run that one unsharded benchmark would have made: [`read_run`] reads a folder back, [`merge`]
//! joins the shards, and [`super::summarize`] and [`super::write_reports`] then recompute the
//! statistics and the plots on the whole.
use super::{BenchRun, ImageRecord, MethodRun, Provenance, Timing};
use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::Path;

/// What [`read_run`] needs of `summary.json`.
#[derive(Deserialize)]
struct SummaryFile {
    run: Provenance,
    timing: Timing,
    images: Vec<ImageRecord>,
    methods: Vec<MethodRun>,
    #[serde(default)]
    anatomy_prompts: Vec<String>,
}

/// The run and provenance recorded in `dir/summary.json` (as [`super::write_reports`] writes them).
pub fn read_run(dir: &Path) -> Result<(BenchRun, Provenance)> {
    let path = dir.join("summary.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let file: SummaryFile = serde_json::from_str(&text).map_err(|e| Error::Config {
        path: path.clone(),
        msg: format!("not a benchmark's summary.json: {e}"),
    })?;
    let run = BenchRun {
        images: file.images,
        methods: file.methods,
        timing: file.timing,
        window: file.run.options.window,
        anatomy_prompts: file.anatomy_prompts,
        maps: None,
    };
    if run.methods.iter().any(|m| m.scores.len() != run.images.len()) {
        return Err(Error::Config { path, msg: "methods and images differ in length".into() });
    }
    Ok((run, file.run))
}

/// Everything that must agree between shards of one benchmark, as JSON: the options without the shard,
/// the model's and the data's hashes, the denoisers, the precision and the version.
fn identity(p: &Provenance) -> serde_json::Value {
    let mut options = p.options.clone();
    options.shard = None;
    serde_json::json!({
        "options": options,
        "model_sha256": p.model_sha256,
        "data_sha256": p.data_sha256,
        "denoisers": p.denoisers,
        "dtype": p.dtype,
        "ldctq_version": p.ldctq_version,
    })
}

/// Joins the shards of one benchmark (given in any order, each as [`read_run`] returns it) into the
/// run and provenance of the unsharded benchmark: images and per-image results in the data set's
/// order, timings added up (`images_per_second` then counts every shard's time), a denoiser that
/// failed in a shard failed in the whole (at its image in the whole). The provenance is the first
/// shard's, without the shard, with this process's command line.
///
/// # Errors
/// Shards that are not the complete set `0/N .. N-1/N` of one benchmark: a missing or repeated shard,
/// a shard whose size is not its [`range`](crate::data::Shard::range), or shards that differ in
/// options, model, data, denoisers, precision, ldctq version or methods.
pub fn merge(mut shards: Vec<(BenchRun, Provenance)>) -> Result<(BenchRun, Provenance)> {
    let bad = |msg: String| Error::InvalidInput(format!("bench merge: {msg}"));
    let shard_of = |p: &Provenance| {
        p.options
            .shard
            .ok_or_else(|| bad(format!("the run of {} is not a shard (no --shard)", p.data.display())))
    };
    if shards.is_empty() {
        return Err(bad("no shard folders".into()));
    }
    let mut order = Vec::with_capacity(shards.len());
    for (_, p) in &shards {
        order.push(shard_of(p)?);
    }
    let count = order[0].count;
    let mut seen = vec![false; count];
    for s in &order {
        if s.count != count {
            return Err(bad(format!("shards of {count} and of {} parts", s.count)));
        }
        if std::mem::replace(&mut seen[s.index], true) {
            return Err(bad(format!("shard {s} is given twice")));
        }
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        return Err(bad(format!("shard {missing}/{count} is missing ({} of {count} given)", shards.len())));
    }
    shards.sort_by_key(|(_, p)| p.options.shard.map(|s| s.index));

    let (first_run, first) = &shards[0];
    let want = identity(first);
    let names = |r: &BenchRun| r.methods.iter().map(|m| (m.name.clone(), m.kind)).collect::<Vec<_>>();
    let total: usize = shards.iter().map(|(r, _)| r.images.len()).sum();
    for (run, p) in &shards {
        let shard = shard_of(p)?;
        if identity(p) != want {
            return Err(bad(format!(
                "shard {shard} differs from shard {} in options, model, data, denoisers, dtype or version:\n  {}\n  {}",
                shard_of(first)?,
                identity(p),
                want
            )));
        }
        if names(run) != names(first_run) {
            return Err(bad(format!("shard {shard} has other methods than shard 0")));
        }
        let expected = shard.range(total, p.options.batch).len();
        if run.images.len() != expected {
            return Err(bad(format!(
                "shard {shard} has {} images, but {expected} of the {total} images in batches of {} belong to it",
                run.images.len(),
                p.options.batch
            )));
        }
    }

    let mut images = Vec::with_capacity(total);
    let mut methods: Vec<MethodRun> =
        first_run.methods.iter().map(|m| MethodRun::new(&m.name, m.kind, 0)).collect();
    let mut timing = Timing::default();
    for (run, _) in shards.iter() {
        let offset = images.len();
        images.extend(run.images.iter().cloned());
        for (whole, part) in methods.iter_mut().zip(&run.methods) {
            whole.spec = whole.spec.take().or_else(|| part.spec.clone());
            whole.info = whole.info.take().or_else(|| part.info.clone());
            whole.scores.extend(&part.scores);
            whole.psnr.extend(&part.psnr);
            whole.ssim.extend(&part.ssim);
            whole.vif.extend(&part.vif);
            whole.denoise_seconds += part.denoise_seconds;
            if whole.error.is_none() {
                if let Some(e) = &part.error {
                    whole.error = Some(e.clone());
                    whole.failed_at = Some(offset + part.failed_at.unwrap_or(0));
                }
            }
        }
        let t = &run.timing;
        timing.total_seconds += t.total_seconds;
        timing.load_seconds += t.load_seconds;
        timing.score_seconds += t.score_seconds;
        timing.denoise_seconds += t.denoise_seconds;
        timing.metrics_seconds += t.metrics_seconds;
    }
    timing.images = total;
    timing.images_per_second = total as f64 / timing.total_seconds.max(1e-9);
    timing.score_share = timing.score_seconds / timing.total_seconds.max(1e-9);

    let mut provenance = first.clone();
    provenance.options.shard = None;
    provenance.command = std::env::args().collect();
    let run = BenchRun {
        images,
        methods,
        timing,
        window: first_run.window,
        anatomy_prompts: first_run.anatomy_prompts.clone(),
        maps: None,
    };
    Ok((run, provenance))
}
