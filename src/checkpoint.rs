//! Hugging Face model folders and safetensors checkpoints.
//!
//! A model is given as a folder (`config.json`, `model.safetensors` or a sharded
//! `model.safetensors.index.json`, `tokenizer.json`), as a folder of the Hugging Face cache
//! (`models--ORG--NAME`), or as a repo id (`google/medsiglip-448`) looked up in the local cache. Nothing
//! is ever downloaded.
//!
//! Loading is strict: every registered variable must be in the file with the same shape, and every
//! tensor of the file must be claimed by a store (or ignored by prefix). All problems are collected and
//! reported together, each with the tensor's full dotted name.
use crate::error::{Error, Result};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use tch::{nn, Kind, Tensor};

/// Resolves a model argument (folder, cache folder or repo id) to a folder holding `config.json`.
pub fn resolve_model_dir(spec: &str) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.is_dir() {
        if path.join("config.json").is_file() {
            return Ok(path.to_path_buf());
        }
        if path.join("snapshots").is_dir() {
            return snapshot_of(path);
        }
        return Err(Error::NotFound(format!("{spec}: folder has no config.json")));
    }
    let is_repo_id = spec.split('/').count() == 2 && !spec.starts_with('.') && !path.exists();
    if !is_repo_id {
        return Err(Error::NotFound(format!("{spec}: no such model folder")));
    }
    let name = format!("models--{}", spec.replace('/', "--"));
    let roots = hf_cache_roots();
    for root in &roots {
        let repo = root.join(&name);
        if repo.is_dir() {
            return snapshot_of(&repo);
        }
    }
    let searched: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
    Err(Error::NotFound(format!(
        "{spec}: not a folder and not in the Hugging Face cache (searched {}); ldctq never downloads: \
         fetch it where you have access (e.g. `huggingface-cli download {spec}`) or pass a folder",
        searched.join(", ")
    )))
}

/// Hugging Face cache roots, in the order huggingface_hub uses them.
fn hf_cache_roots() -> Vec<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let mut roots = Vec::new();
    roots.extend(env("HF_HUB_CACHE"));
    roots.extend(env("HUGGINGFACE_HUB_CACHE"));
    roots.extend(env("HF_HOME").map(|h| h.join("hub")));
    roots.extend(env("XDG_CACHE_HOME").map(|h| h.join("huggingface/hub")));
    roots.extend(env("HOME").map(|h| h.join(".cache/huggingface/hub")));
    roots.dedup();
    roots
}

/// `models--ORG--NAME/snapshots/REV` for `refs/main`, else the only (or newest) snapshot.
fn snapshot_of(repo: &Path) -> Result<PathBuf> {
    let snapshots = repo.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(repo.join("refs/main")) {
        let dir = snapshots.join(rev.trim());
        if dir.join("config.json").is_file() {
            return Ok(dir);
        }
    }
    let entries = std::fs::read_dir(&snapshots).map_err(|e| Error::io(&snapshots, e))?;
    let newest = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("config.json").is_file())
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
    newest
        .map(|e| e.path())
        .ok_or_else(|| Error::NotFound(format!("{}: no snapshot with a config.json", repo.display())))
}

/// One tensor of a checkpoint: where its bytes are and what they hold.
#[derive(Debug, Clone)]
struct Entry {
    file: usize,
    dtype: Dtype,
    shape: Vec<i64>,
    start: usize,
    end: usize,
}

/// Memory-mapped safetensors file(s) of one model.
pub struct Checkpoint {
    path: PathBuf,
    files: Vec<Mmap>,
    entries: BTreeMap<String, Entry>,
}

impl Checkpoint {
    /// Opens the weights of a model folder: `model.safetensors`, or the shards listed in
    /// `model.safetensors.index.json`.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        if single.is_file() {
            return Self::open_files(&single, std::slice::from_ref(&single));
        }
        let index = dir.join("model.safetensors.index.json");
        if !index.is_file() {
            return Err(Error::NotFound(format!(
                "{}: neither model.safetensors nor model.safetensors.index.json",
                dir.display()
            )));
        }
        let bad = |msg: String| Error::Checkpoint { path: index.clone(), problems: vec![msg] };
        let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let map = json["weight_map"].as_object().ok_or_else(|| bad("no weight_map object".into()))?;
        let shards: BTreeSet<&str> = map.values().filter_map(|v| v.as_str()).collect();
        let shards: Vec<PathBuf> = shards.into_iter().map(|s| dir.join(s)).collect();
        Self::open_files(&index, &shards)
    }

    /// Opens a single `.safetensors` file.
    pub fn open_file(path: &Path) -> Result<Self> {
        Self::open_files(path, &[path.to_path_buf()])
    }

    fn open_files(path: &Path, shards: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::new();
        let mut entries = BTreeMap::new();
        for (i, shard) in shards.iter().enumerate() {
            let file = std::fs::File::open(shard).map_err(|e| Error::io(shard, e))?;
            // SAFETY: the map is read-only; a file truncated by another process while mapped is the
            // same hazard as with any memory-mapped reader (safetensors, numpy.memmap).
            let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(shard, e))?;
            let corrupt = |e: safetensors::SafeTensorError| Error::Checkpoint {
                path: shard.clone(),
                problems: vec![format!("not a valid safetensors file: {e:?}")],
            };
            // `deserialize` validates the header and that every tensor's bytes lie inside the file.
            SafeTensors::deserialize(&mmap).map_err(corrupt)?;
            let (header_len, meta) = SafeTensors::read_metadata(&mmap).map_err(corrupt)?;
            for (name, info) in meta.tensors() {
                let (a, b) = info.data_offsets;
                let entry = Entry {
                    file: i,
                    dtype: info.dtype,
                    shape: info.shape.iter().map(|&d| d as i64).collect(),
                    start: 8 + header_len + a,
                    end: 8 + header_len + b,
                };
                entries.insert(name, entry);
            }
            files.push(mmap);
        }
        Ok(Self { path: path.to_path_buf(), files, entries })
    }

    /// Names of all tensors in the checkpoint, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(|s| s.as_str())
    }

    /// The file (or index) the checkpoint was opened from.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Shape of a tensor of the checkpoint.
    pub fn shape(&self, name: &str) -> Option<&[i64]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// Reads one tensor into a CPU tensor of its stored dtype.
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let e = self.entries.get(name).ok_or_else(|| self.problem(format!("missing tensor {name}")))?;
        let kind = kind_of(e.dtype).ok_or_else(|| {
            self.problem(format!(
                "{name}: dtype {:?} is not a floating-point type (F32, BF16, F16, F64)",
                e.dtype
            ))
        })?;
        let bytes = &self.files[e.file][e.start..e.end];
        Ok(Tensor::f_from_data_size(bytes, &e.shape, kind)?)
    }

    /// Rows `rows` of the 2-D tensor `name`, (rows.len(), cols), reading only those rows' bytes (a
    /// prompt needs a few dozen of the 256k rows of SigLIP's token embedding).
    pub fn rows(&self, name: &str, rows: &[i64]) -> Result<Tensor> {
        let e = self.entries.get(name).ok_or_else(|| self.problem(format!("missing tensor {name}")))?;
        let kind = kind_of(e.dtype).ok_or_else(|| {
            self.problem(format!("{name}: dtype {:?} is not a floating-point type", e.dtype))
        })?;
        let &[n, cols] = e.shape.as_slice() else {
            return Err(self.problem(format!("{name}: expected a 2-D tensor, found shape {:?}", e.shape)));
        };
        let row_bytes = cols as usize * kind.elt_size_in_bytes();
        let picked = rows
            .iter()
            .map(|&r| {
                if !(0..n).contains(&r) {
                    return Err(self.problem(format!("{name}: row {r} out of range 0..{n}")));
                }
                let start = e.start + r as usize * row_bytes;
                Ok(Tensor::f_from_data_size(&self.files[e.file][start..start + row_bytes], &[cols], kind)?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::f_stack(&picked, 0)?)
    }

    fn problem(&self, msg: String) -> Error {
        Error::Checkpoint { path: self.path.clone(), problems: vec![msg] }
    }

    /// Copies the checkpoint into the variables of `stores` (converting dtype and device).
    ///
    /// Fails, listing every problem, when a variable is missing or mis-shaped, a tensor has a
    /// non-float dtype, or a tensor is claimed by no store and matches none of `ignore_prefixes`.
    /// Names matching `ignore_prefixes` are neither loaded nor required, in the file or the stores.
    pub fn load_into(&self, stores: &[&nn::VarStore], ignore_prefixes: &[&str]) -> Result<()> {
        let mut problems = Vec::new();
        let mut claimed = BTreeSet::new();
        let ignored = |name: &str| ignore_prefixes.iter().any(|p| name.starts_with(p));
        let mut wanted: Vec<(String, Tensor)> =
            stores.iter().flat_map(|vs| vs.variables()).filter(|(name, _)| !ignored(name)).collect();
        wanted.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, var) in &wanted {
            claimed.insert(name.clone());
            let Some(e) = self.entries.get(name) else {
                problems.push(format!("missing tensor {name} (expected shape {:?})", var.size()));
                continue;
            };
            if e.shape != var.size() {
                problems.push(format!("tensor {name}: expected shape {:?}, found {:?}", var.size(), e.shape));
                continue;
            }
            if kind_of(e.dtype).is_none() {
                problems.push(format!("tensor {name}: dtype {:?} is not a floating-point type", e.dtype));
            }
        }
        for name in self.entries.keys() {
            if !claimed.contains(name) && !ignored(name) {
                problems.push(format!("unexpected tensor {name} (shape {:?})", self.entries[name].shape));
            }
        }
        if !problems.is_empty() {
            return Err(Error::Checkpoint { path: self.path.clone(), problems });
        }
        tch::no_grad(|| -> Result<()> {
            for (name, mut var) in wanted {
                let src = self.tensor(&name)?;
                var.f_copy_(&src)?;
                self.release_tensor_pages(&name);
            }
            Ok(())
        })?;
        self.release_pages();
        Ok(())
    }

    /// Drops the whole pages inside tensor `name`'s bytes from resident memory once it is copied, so
    /// loading holds one tensor's file pages at a time rather than the whole checkpoint's.
    fn release_tensor_pages(&self, name: &str) {
        const PAGE: usize = 4096;
        let Some(e) = self.entries.get(name) else { return };
        let map = &self.files[e.file];
        let base = map.as_ptr() as usize;
        let first = (base + e.start).div_ceil(PAGE) * PAGE - base;
        let last = ((base + e.end) / PAGE) * PAGE - base;
        if last > first {
            // SAFETY: as in `release_pages`: a private read-only file mapping, re-read on access.
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, first, last - first)
            };
        }
    }

    /// Drops the file pages read so far from this process's resident memory (they are re-read from
    /// the file if needed again), so a loaded model does not also hold its checkpoint in RSS.
    fn release_pages(&self) {
        for map in &self.files {
            // SAFETY: the map is a private read-only file mapping; after DONTNEED its pages are read
            // back from the unchanged file on the next access, so no data is lost.
            let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        }
    }
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    match dtype {
        Dtype::F32 => Some(Kind::Float),
        Dtype::BF16 => Some(Kind::BFloat16),
        Dtype::F16 => Some(Kind::Half),
        Dtype::F64 => Some(Kind::Double),
        _ => None,
    }
}

/// Saves a VarStore as safetensors atomically (see [`crate::io::write_atomic`]).
pub fn save_store_atomic(vs: &tch::nn::VarStore, path: &Path) -> Result<()> {
    let tmp = crate::io::temp_path(path).with_extension("safetensors");
    vs.save(&tmp)?;
    Ok(crate::io::commit(&tmp, path)?)
}
