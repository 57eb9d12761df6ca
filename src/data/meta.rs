//! A data set's `meta.json`: what the simulator (or the user) knows of each image.
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// What a `meta.json` says of an image, each part when known.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageMeta {
    pub dose: Option<f64>,
    pub views: Option<i64>,
    pub anatomy: Option<String>,
}

/// Dose, views and anatomy per file name, from `root/meta.json` (a list of `{"file", "dose", "views",
/// "anatomy", ...}`, or an object keyed by file name); empty when the set has none.
pub fn read_meta(root: &Path) -> Result<BTreeMap<String, ImageMeta>> {
    let path = root.join("meta.json");
    let mut out = BTreeMap::new();
    if !path.is_file() {
        return Ok(out);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::Config { path: path.clone(), msg: e.to_string() })?;
    let entry = |v: &serde_json::Value| ImageMeta {
        dose: v.get("dose").and_then(|d| d.as_f64()),
        views: v.get("views").and_then(|d| d.as_i64()),
        anatomy: v.get("anatomy").and_then(|d| d.as_str()).map(|a| a.trim().to_ascii_lowercase()),
    };
    match &value {
        serde_json::Value::Array(items) => {
            for v in items {
                if let Some(file) = v.get("file").and_then(|f| f.as_str()) {
                    out.insert(file.to_string(), entry(v));
                }
            }
        }
        serde_json::Value::Object(map) => {
            for (file, v) in map {
                out.insert(file.clone(), entry(v));
            }
        }
        _ => {}
    }
    Ok(out)
}
