//! Image sets: the LDCTIQA2023 layout, CSV manifests, `meta.json`, folds for cross-validation, and
//! image files read as tensors in a chosen space ([`load_frame`]), and shards of a set for array jobs
//! ([`Shard`]).
//!
//! * LDCTIQA2023: a folder with `image/*.tif` (or `images/`) and a labels json
//!   (`{"0000.tif": 2.8, ...}`: `train.json`, `test.json`, `test-ground-truth.json` or `labels.json`);
//!   without a labels json, the same folder (with `reference/` when present), or any folder of images,
//!   is an unlabelled set.
//! * A CSV manifest with a header naming its columns: `path` (required), `score`, `frame`, `reference`
//!   (paths relative to the manifest), `anatomy` (a word such as abdomen, chest, head), or a folder
//!   holding `manifest.csv`: any readable image, e.g. DICOM series. Without a `score` column (or with
//!   empty cells) the images are unlabelled: enough for `ldctq bench` and `ldctq score`, while
//!   training and evaluation ask for scores ([`Dataset::labels`]).
//!
//! In the LDCTIQA2023 layout, labels without images and images without labels are errors that list the
//! offending names; in a manifest, missing images and references are.
mod frames;
mod meta;
mod shard;

pub use frames::{frames, load_frame};
pub use meta::{read_meta, ImageMeta};
pub use shard::Shard;

use crate::error::{Error, Result};
use crate::rng::Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One image of a set.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub path: PathBuf,
    /// Frame of a multi-frame file.
    pub frame: usize,
    /// Mean opinion score in [0, 4]; `None` in an unlabelled manifest.
    pub label: Option<f64>,
    /// Full-dose reference image, when the set has one (`reference/` beside `image/`).
    pub reference: Option<PathBuf>,
    /// What the slice shows (lower case), from the manifest's `anatomy` column or `meta.json`.
    pub anatomy: Option<String>,
}

/// A labelled image set.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    pub samples: Vec<Sample>,
}

const LABEL_FILES: [&str; 4] = ["train.json", "test.json", "test-ground-truth.json", "labels.json"];

fn problem(path: &Path, msg: String) -> Error {
    Error::InvalidInput(format!("{}: {msg}", path.display()))
}

fn listed(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(8).map(String::as_str).collect();
    let more = names.len().saturating_sub(shown.len());
    format!("{}{}", shown.join(", "), if more > 0 { format!(" and {more} more") } else { String::new() })
}

impl Dataset {
    /// Opens a dataset folder or CSV manifest (see the module docs).
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_file() {
            return Self::from_manifest(path);
        }
        if !path.is_dir() {
            return Err(Error::NotFound(format!("{}: no such dataset folder or manifest", path.display())));
        }
        if path.join("manifest.csv").is_file() {
            return Self::from_manifest(&path.join("manifest.csv"));
        }
        let labels = LABEL_FILES.iter().map(|f| path.join(f)).find(|p| p.is_file());
        let images = ["image", "images"].iter().map(|d| path.join(d)).find(|p| p.is_dir());
        match (labels, images) {
            (Some(labels), Some(images)) => Self::from_labels_json(path, &labels, &images),
            (Some(_), None) => Err(problem(path, "no image/ folder beside the labels".into())),
            (None, images) => Self::unlabelled(path, images.as_deref().unwrap_or(path)),
        }
    }

    /// The image files of a folder, by name (hidden files and json/csv/txt/md skipped).
    fn image_files(dir: &Path) -> Result<Vec<String>> {
        let skip = ["json", "csv", "txt", "md"];
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .filter(|n| !skip.iter().any(|x| n.to_ascii_lowercase().ends_with(&format!(".{x}"))))
            .collect();
        names.sort();
        Ok(names)
    }

    /// A folder without labels: every image of `images` (the folder itself or its `image/`), unlabelled,
    /// with `reference/NAME` beside `image/` when present.
    fn unlabelled(root: &Path, images: &Path) -> Result<Self> {
        let names = Self::image_files(images)?;
        if names.is_empty() {
            return Err(problem(
                root,
                format!("no images, no labels file ({}) and no manifest.csv", LABEL_FILES.join(", ")),
            ));
        }
        let refs = root.join("reference");
        let samples = names
            .into_iter()
            .map(|name| Sample {
                path: images.join(&name),
                frame: 0,
                label: None,
                reference: Some(refs.join(&name)).filter(|p| images != root && p.is_file()),
                anatomy: None,
            })
            .collect();
        Self { root: root.to_path_buf(), samples }.with_meta_anatomy()
    }

    /// Each image's anatomy from `meta.json` beside the images, where it says.
    fn with_meta_anatomy(mut self) -> Result<Self> {
        let meta = read_meta(&self.root)?;
        for s in &mut self.samples {
            let name = s.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            s.anatomy = meta.get(&name).and_then(|m| m.anatomy.clone());
        }
        Ok(self)
    }

    fn from_labels_json(root: &Path, labels: &Path, images: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(labels).map_err(|e| Error::io(labels, e))?;
        let map: BTreeMap<String, f64> = serde_json::from_str(&text)
            .map_err(|e| problem(labels, format!("expected {{\"name.tif\": score}}: {e}")))?;
        let on_disk = Self::image_files(images)?;
        let missing: Vec<String> = map.keys().filter(|k| !images.join(k).is_file()).cloned().collect();
        if !missing.is_empty() {
            return Err(problem(
                labels,
                format!(
                    "{} label(s) without an image in {}: {}",
                    missing.len(),
                    images.display(),
                    listed(&missing)
                ),
            ));
        }
        let unlabelled: Vec<String> = on_disk.iter().filter(|n| !map.contains_key(*n)).cloned().collect();
        if !unlabelled.is_empty() {
            return Err(problem(
                images,
                format!(
                    "{} image(s) without a label in {}: {}",
                    unlabelled.len(),
                    labels.display(),
                    listed(&unlabelled)
                ),
            ));
        }
        let refs = root.join("reference");
        let samples = map
            .into_iter()
            .map(|(name, label)| {
                check_label(labels, &name, label)?;
                let reference = Some(refs.join(&name)).filter(|p| p.is_file());
                Ok(Sample {
                    path: images.join(&name),
                    frame: 0,
                    label: Some(label),
                    reference,
                    anatomy: None,
                })
            })
            .collect::<Result<_>>()?;
        Self { root: root.to_path_buf(), samples }.with_meta_anatomy()
    }

    /// A CSV manifest: a header line naming the columns (`path`; optionally `score`, `frame`,
    /// `reference`, `anatomy`), then one row per image.
    pub fn from_manifest(csv: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(csv).map_err(|e| Error::io(csv, e))?;
        let base = csv.parent().unwrap_or(Path::new("."));
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
        let header: Vec<String> = match lines.next() {
            Some((_, h)) => h.split(',').map(|c| c.trim().to_ascii_lowercase()).collect(),
            None => return Err(problem(csv, "empty manifest".into())),
        };
        let col = |name: &str| header.iter().position(|c| c == name);
        let Some(pcol) = col("path") else {
            return Err(problem(csv, format!("the header must name a path column, got {header:?}")));
        };
        let (scol, fcol, rcol, acol) = (col("score"), col("frame"), col("reference"), col("anatomy"));
        let mut samples = Vec::new();
        let mut missing = Vec::new();
        for (i, line) in lines {
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            let get = |c: usize| {
                cells.get(c).copied().ok_or_else(|| problem(csv, format!("line {}: too few columns", i + 1)))
            };
            let path = base.join(get(pcol)?);
            let label = match scol.map(get).transpose()?.filter(|c| !c.is_empty()) {
                Some(cell) => {
                    let label: f64 = cell
                        .parse()
                        .map_err(|_| problem(csv, format!("line {}: bad score {cell:?}", i + 1)))?;
                    check_label(csv, &format!("line {}", i + 1), label)?;
                    Some(label)
                }
                None => None,
            };
            let reference = rcol.map(get).transpose()?.filter(|c| !c.is_empty()).map(|r| base.join(r));
            if let Some(r) = reference.as_ref().filter(|r| !r.is_file()) {
                missing.push(format!("{} (reference)", r.display()));
            }
            let frame = match fcol {
                Some(c) => get(c)?.parse().map_err(|_| problem(csv, format!("line {}: bad frame", i + 1)))?,
                None => 0,
            };
            if !path.is_file() {
                missing.push(path.display().to_string());
            }
            let anatomy =
                acol.map(get).transpose()?.filter(|c| !c.is_empty()).map(|a| a.to_ascii_lowercase());
            samples.push(Sample { path, frame, label, reference, anatomy });
        }
        if !missing.is_empty() {
            return Err(problem(
                csv,
                format!("{} listed file(s) do not exist: {}", missing.len(), listed(&missing)),
            ));
        }
        if samples.is_empty() {
            return Err(problem(csv, "no rows".into()));
        }
        Ok(Self { root: base.to_path_buf(), samples })
    }

    /// Every image's score, or an error naming the unlabelled ones (training and evaluation need them).
    pub fn labels(&self) -> Result<Vec<f64>> {
        let unlabelled: Vec<String> =
            self.samples.iter().filter(|s| s.label.is_none()).map(|s| s.path.display().to_string()).collect();
        if !unlabelled.is_empty() {
            return Err(problem(
                &self.root,
                format!(
                    "{} image(s) have no score, which training and evaluation need (a labels json or a \
                     manifest's score column): {}",
                    unlabelled.len(),
                    listed(&unlabelled)
                ),
            ));
        }
        Ok(self.samples.iter().filter_map(|s| s.label).collect())
    }
}

fn check_label(file: &Path, what: &str, label: f64) -> Result<()> {
    if !(0.0..=4.0).contains(&label) {
        return Err(problem(file, format!("{what}: score {label} is outside [0, 4]")));
    }
    Ok(())
}

/// Assigns each sample to one of `k` folds, stratified by label: samples are ordered by label (ties in
/// a seeded random order) and dealt round-robin, so every fold spans the whole score range.
pub fn stratified_folds(labels: &[f64], k: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..labels.len()).collect();
    Rng::new(seed).shuffle(&mut order);
    order.sort_by(|&a, &b| labels[a].total_cmp(&labels[b])); // stable: ties keep the shuffled order
    let mut fold = vec![0; labels.len()];
    let mut rng = Rng::derive(&[seed, 1]);
    for chunk in order.chunks(k) {
        let mut ids: Vec<usize> = (0..k).collect();
        rng.shuffle(&mut ids);
        for (&i, f) in chunk.iter().zip(ids) {
            fold[i] = f;
        }
    }
    fold
}
