//! Provenance of a run: versions, hashes of the model and the data, seeds and options.
use super::BenchOptions;
use crate::data::Dataset;
use crate::denoise::{hex, sha256_file};
use crate::error::{Error, Result};
use crate::placement::{device_name, kind_name, Placement};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Versions, hashes, seeds and options of a run: what `summary.json` records under `"run"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Provenance {
    pub ldctq_version: String,
    pub tch_version: String,
    pub libtorch_version: String,
    pub device: String,
    pub dtype: String,
    pub model: PathBuf,
    /// sha256 over the model folder's files (see [`hash_model`]).
    pub model_sha256: String,
    pub model_files: Vec<(String, String)>,
    pub model_name: String,
    pub data: PathBuf,
    /// sha256 over the benchmarked images, references, labels and `meta.json` (see [`hash_dataset`]).
    pub data_sha256: String,
    pub denoisers: Vec<String>,
    pub options: BenchOptions,
    pub command: Vec<String>,
}

impl Provenance {
    /// The provenance of a run of `denoisers` (their specs) with `opts` on `data`, scored by the model
    /// folder `model` (named `model_name`) at `placement`: hashes the model folder and the benchmarked
    /// part of the data set, and records this process's command line.
    pub fn new(
        model: &Path,
        model_name: &str,
        data: &Dataset,
        denoisers: &[String],
        opts: &BenchOptions,
        placement: Placement,
    ) -> Result<Self> {
        let (model_sha256, model_files) = hash_model(model)?;
        Ok(Self {
            ldctq_version: env!("CARGO_PKG_VERSION").into(),
            tch_version: "0.24.0".into(),
            libtorch_version: libtorch_version(),
            device: device_name(placement.device),
            dtype: kind_name(placement.kind).into(),
            model: model.to_path_buf(),
            model_sha256,
            model_files,
            model_name: model_name.into(),
            data: data.root.clone(),
            data_sha256: hash_dataset(data, opts.limit)?,
            denoisers: denoisers.to_vec(),
            options: opts.clone(),
            command: std::env::args().collect(),
        })
    }
}

/// The libtorch this binary runs on: `version.py` of the pip wheel (or `build-version` of a libtorch
/// archive) next to the library folder it was linked against.
pub fn libtorch_version() -> String {
    let lib = Path::new(env!("LDCTQ_LIBTORCH_LIB"));
    let root = lib.parent().unwrap_or(lib);
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("__version__ = ") {
                return v.trim().trim_matches(|c| c == '\'' || c == '"').to_string();
            }
        }
    }
    std::fs::read_to_string(root.join("build-version"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn hash_files(files: &mut Vec<(String, String)>, dir: &Path, prefix: &str) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    entries.sort();
    for p in entries {
        let name = format!("{prefix}{}", p.file_name().unwrap_or_default().to_string_lossy());
        files.push((name, sha256_file(&p).map_err(|e| Error::io(&p, e))?));
    }
    Ok(())
}

/// sha256 of a model folder: over `name\0sha256\n` of its files (not subfolders, not hidden files) in
/// name order, plus the member folders of an `ensemble.json`. The backbone is recorded by name only.
pub fn hash_model(dir: &Path) -> Result<(String, Vec<(String, String)>)> {
    use sha2::{Digest, Sha256};
    let mut files = Vec::new();
    hash_files(&mut files, dir, "")?;
    let ensemble = dir.join("ensemble.json");
    if ensemble.is_file() {
        let text = std::fs::read_to_string(&ensemble).map_err(|e| Error::io(&ensemble, e))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Config { path: ensemble.clone(), msg: e.to_string() })?;
        for (i, m) in v.get("members").and_then(|m| m.as_array()).into_iter().flatten().enumerate() {
            if let Some(p) = m.as_str() {
                hash_files(&mut files, &dir.join(p), &format!("member{i}/"))?;
            }
        }
    }
    let mut h = Sha256::new();
    for (name, sum) in &files {
        h.update(format!("{name}\0{sum}\n").as_bytes());
    }
    Ok((hex(&h.finalize()), files))
}

/// sha256 of the benchmarked part of a data set: over `file\0frame\0label\0sha256(image)\0sha256(reference)\n`
/// per image, then `meta.json`'s sha256 when present.
pub fn hash_dataset(data: &Dataset, limit: Option<usize>) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let n = limit.unwrap_or(usize::MAX).min(data.samples.len());
    for s in &data.samples[..n] {
        let file = s.path.strip_prefix(&data.root).unwrap_or(&s.path).display().to_string();
        let image = sha256_file(&s.path).map_err(|e| Error::io(&s.path, e))?;
        let reference = match &s.reference {
            Some(r) => sha256_file(r).map_err(|e| Error::io(r, e))?,
            None => String::new(),
        };
        let label = s.label.map(|l| l.to_string()).unwrap_or_default();
        h.update(format!("{file}\0{}\0{label}\0{image}\0{reference}\n", s.frame).as_bytes());
    }
    let meta = data.root.join("meta.json");
    if meta.is_file() {
        h.update(format!("meta.json\0{}\n", sha256_file(&meta).map_err(|e| Error::io(&meta, e))?).as_bytes());
    }
    Ok(hex(&h.finalize()))
}
