//! The model folder's `ldctq.json` ([`QualityConfig`]), the hidden widths of a new model ([`Widths`]) and
//! how `ldctq.json` refers to its backbone.
use crate::error::{Error, Result};
use crate::heads::LocalMode;
use crate::preprocess::Preprocess;
use crate::window::{Space, Window};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The paper's clinical prompt (section IV-B), verbatim with its line breaks joined by spaces.
pub const DEFAULT_PROMPT: &str =
    "Rate this low-dose CT (MOS 0-4): 0 Nondiagnostic--desired features not shown; \
1 Poor--diagnostic interpretation impossible; 2 Fair--limited interpretation; 3 Good--diagnostic; \
4 Excellent--anatomy highly visible. Return only one number 0-4.";

/// Version of the model-folder format written by this build.
pub const FORMAT_VERSION: u32 = 1;

fn default_prompt() -> String {
    DEFAULT_PROMPT.into()
}
fn default_film_strength() -> f64 {
    1.0
}
fn default_tau_out() -> f64 {
    2.0
}
fn default_dropout() -> f64 {
    0.1
}
fn default_window_center() -> f64 {
    Window::LDCTIQA.center
}
fn default_window_width() -> f64 {
    Window::LDCTIQA.width
}

/// What drives FiLM: a hand-written text prompt, or learned context vectors (`prompt.safetensors`)
/// followed by the text of `prompt` (see [`crate::model::PromptInit`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptMode {
    #[default]
    Text,
    Learned,
}

/// `ldctq.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityConfig {
    pub format_version: u32,
    /// SigLIP backbone: a folder (relative to the model folder, or absolute), HF cache folder or repo id.
    pub backbone: String,
    /// The prompt (text mode), or the text after the learned context (learned mode; usually empty).
    #[serde(default = "default_prompt")]
    pub prompt: String,
    #[serde(default)]
    pub prompt_mode: PromptMode,
    /// Anatomy prompts: the anatomy words this model was trained with. An image of anatomy `a` is
    /// conditioned on [`Self::prompt_text`]`(Some(a))`; images of no (or unknown) anatomy on the
    /// prompt alone. Empty: one prompt for every image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anatomies: Vec<String>,
    /// FiLM strength s (0 disables the prompt).
    #[serde(default = "default_film_strength")]
    pub film_strength: f64,
    /// Output temperature: score = 4 sigmoid(logit / tau_out).
    #[serde(default = "default_tau_out")]
    pub tau_out: f64,
    #[serde(default)]
    pub local_mode: LocalMode,
    /// What the pixel values given to the model mean: `"unit"` ([0, 1] images, `window_center` /
    /// `window_width` recording the HU window they were made with) or `"hu"` (windowed by the model).
    pub input: Space,
    #[serde(default = "default_window_center")]
    pub window_center: f64,
    #[serde(default = "default_window_width")]
    pub window_width: f64,
    /// Model input size; images of any size are resized to it.
    pub image_size: i64,
    /// Dropout of the branch heads (training only).
    #[serde(default = "default_dropout")]
    pub dropout: f64,
}

impl QualityConfig {
    /// A config for `backbone` with the paper's defaults and LDCTIQA2023-style [0, 1] input.
    pub fn new(backbone: &str, image_size: i64) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            backbone: backbone.into(),
            prompt: default_prompt(),
            prompt_mode: PromptMode::Text,
            anatomies: Vec::new(),
            film_strength: 1.0,
            tau_out: 2.0,
            local_mode: LocalMode::Sequence,
            input: Space::Unit,
            window_center: default_window_center(),
            window_width: default_window_width(),
            image_size,
            dropout: default_dropout(),
        }
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let err = |msg: String| Error::Config { path: path.to_path_buf(), msg };
        if !path.is_file() {
            return Err(Error::NotFound(format!("{}: no such file (not a model folder?)", path.display())));
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: Self = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        cfg.validate().map_err(err)?;
        Ok(cfg)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.format_version != FORMAT_VERSION {
            return Err(format!(
                "format_version {} (this build reads {FORMAT_VERSION})",
                self.format_version
            ));
        }
        if !(self.tau_out > 0.0 && self.tau_out.is_finite()) {
            return Err(format!("tau_out must be positive, got {}", self.tau_out));
        }
        if !self.film_strength.is_finite() {
            return Err(format!("film_strength must be finite, got {}", self.film_strength));
        }
        Window::new(self.window_center, self.window_width).map_err(|e| e.to_string())?;
        if let Some(a) = self.anatomies.iter().find(|a| a.is_empty() || a.chars().any(|c| c.is_uppercase())) {
            return Err(format!("anatomies must be non-empty lower-case words, got {a:?}"));
        }
        if self.image_size <= 0 {
            return Err(format!("image_size must be positive, got {}", self.image_size));
        }
        Ok(())
    }

    /// The text that conditions an image of `anatomy`: the anatomy word, then the prompt (so that
    /// truncating a long prompt to the tower's 64 positions never drops the word; in learned mode the
    /// text follows the learned context), or the prompt alone.
    pub fn prompt_text(&self, anatomy: Option<&str>) -> String {
        match anatomy {
            Some(a) if !self.prompt.is_empty() => format!("{a} {}", self.prompt),
            Some(a) => a.to_string(),
            None => self.prompt.clone(),
        }
    }

    /// Checks that `anatomy` is one this model was trained with.
    pub fn check_anatomy(&self, anatomy: &str) -> std::result::Result<(), String> {
        if self.anatomies.iter().any(|a| a == anatomy) {
            Ok(())
        } else if self.anatomies.is_empty() {
            Err(format!("anatomy {anatomy:?}: this model has no anatomy prompts"))
        } else {
            Err(format!("anatomy {anatomy:?}: this model knows {}", self.anatomies.join(", ")))
        }
    }

    /// The HU window of the input: applied to HU images, or the one [0, 1] images were made with.
    pub fn window(&self) -> Window {
        Window { center: self.window_center, width: self.window_width }
    }

    /// The preprocessing this model expects.
    pub fn preprocess(&self) -> Preprocess {
        Preprocess { input: self.input, window: self.window(), image_size: self.image_size }
    }
}

/// Hidden widths of a fresh model (`ldctq init`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Widths {
    pub film_hidden: i64,
    pub head_hidden: i64,
    pub fusion_hidden: i64,
}

impl Default for Widths {
    fn default() -> Self {
        Self { film_hidden: 256, head_hidden: 256, fusion_hidden: 16 }
    }
}

/// `backbone` as stored in ldctq.json of model folder `out`: relative when it lies inside the folder,
/// absolute when it is another folder, unchanged when it is a repo id.
pub fn backbone_ref(backbone: &str, out: &Path) -> Result<String> {
    let path = Path::new(backbone);
    if !path.exists() {
        return Ok(backbone.to_string());
    }
    let abs = path.canonicalize().map_err(|e| Error::io(path, e))?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let out = out.canonicalize().map_err(|e| Error::io(out, e))?;
    Ok(abs.strip_prefix(&out).map(|p| p.display().to_string()).unwrap_or_else(|_| abs.display().to_string()))
}

/// A backbone reference of ldctq.json, resolved against the model folder `dir` when it names a path inside it.
pub fn resolve_backbone(backbone: &str, dir: Option<&Path>) -> String {
    match dir.map(|d| d.join(backbone)) {
        Some(p) if Path::new(backbone).is_relative() && p.exists() => p.display().to_string(),
        _ => backbone.to_string(),
    }
}
