//! Denoisers for `ldctq bench`: a Rust [`Denoiser`] trait, built-ins ([`builtin`]: identity, Gaussian,
//! median, box, bilateral, TV), C plugins ([`plugin`], ABI in `include/ldctq_denoiser.h`) and TorchScript modules
//! ([`torchscript`]).
//!
//! # Image contract
//! Every denoiser sees float32 images in [0, 1], the LDCTIQA2023 space (HU through the window
//! center -300 / width 1400), as one `(N, 1, H, W)` contiguous tensor, and returns a tensor of the same
//! shape. [`denoise_checked`] enforces the contract on the way out: a wrong shape or a NaN/Inf value is a
//! [`DenoiseError`] naming the denoiser, never a panic.
//!
//! # Specs
//! [`DenoiserSpec`] parses the command line's `--denoiser` values:
//! * `identity`, `gaussian`, `median`, optionally with a JSON config: `gaussian:{"sigma":1.5}`;
//! * `path/to/libplugin.so[:JSON]` (any path with `/` or ending in `.so`, `.dylib`, `.dll`): a C plugin,
//!   the JSON passed to its `create` (`{}` when absent);
//! * `path/to/model.pt` (`.pt`, `.pth`, `.ts`): a TorchScript module;
//! * any of them prefixed by `LABEL=` to name the method in reports (`smooth2=gaussian:{"sigma":2}`).
//!
//! # Where denoisers from files run
//! [`PluginHost::InProcess`] calls C plugins and TorchScript modules in this process;
//! [`PluginHost::Isolated`] runs each one in a worker process ([`isolated`]), so that one that crashes
//! is reported like any other failure. `ldctq bench` isolates them unless told `--in-process-plugins`.
//! Built-ins always run in process.
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

pub mod builtin;
pub mod isolated;
pub mod plugin;
pub mod torchscript;

pub use isolated::IsolatedDenoiser;
pub use plugin::{PluginDenoiser, ABI_MAJOR, ABI_MINOR, ENTRY_POINT};
pub use torchscript::TorchScriptDenoiser;

/// What went wrong, for callers (and tests) that act on the kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The spec is malformed or names an unknown built-in.
    Spec,
    /// The file is missing or cannot be loaded (dlopen, TorchScript deserialisation).
    Load,
    /// The plugin does not export `ldctq_denoiser_get_api`.
    MissingSymbol,
    /// The plugin's ABI major or table size does not match the host's, or the table is incomplete.
    Abi,
    /// The configuration JSON is invalid or refused.
    Config,
    /// The plugin's `create` failed.
    Create,
    /// The denoiser reported an error for a batch.
    Denoise,
    /// The output holds NaN or infinite values.
    NonFinite,
    /// The output does not have the input's shape (or a plugin did not fill its buffer exactly).
    WrongSize,
    /// libtorch raised an error while running the denoiser.
    Torch,
    /// An isolated denoiser's worker process died (segfault, abort, exit).
    Crashed,
    /// An isolated denoiser did not load or denoise a batch within its timeout (its worker was killed).
    Timeout,
}

/// A failure of one denoiser; the message names the denoiser (plugin path, module path or built-in).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenoiseError {
    /// The denoiser, e.g. `plugin /tmp/libgauss.so (gaussian 1.0.0)`.
    pub denoiser: String,
    pub kind: ErrorKind,
    pub message: String,
}

impl DenoiseError {
    pub fn new(denoiser: impl Into<String>, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { denoiser: denoiser.into(), kind, message: message.into() }
    }
}

impl fmt::Display for DenoiseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.denoiser, self.message)
    }
}

impl std::error::Error for DenoiseError {}

/// What a denoiser is, for reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenoiserInfo {
    /// Short name (`gaussian`, the plugin's own name, the module's file stem).
    pub name: String,
    /// `builtin`, `plugin`, `torchscript` or `rust`.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The plugin or module file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The configuration JSON, as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// sha256 of the plugin or module file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl DenoiserInfo {
    /// A denoiser written in Rust (no file, no version).
    pub fn rust(name: &str) -> Self {
        Self { name: name.into(), kind: "rust".into(), version: None, path: None, config: None, sha256: None }
    }

    /// How error messages name the denoiser.
    pub fn label(&self) -> String {
        match (&self.path, &self.version) {
            (Some(p), Some(v)) => format!("{} {} ({} {v})", self.kind, p.display(), self.name),
            (Some(p), None) => format!("{} {}", self.kind, p.display()),
            (None, _) => format!("{} {}", self.kind, self.name),
        }
    }
}

/// A denoiser: `(N, 1, H, W)` float32 images in [0, 1] in, the same shape out.
///
/// Implement it for a denoiser written in Rust (see `examples/rust_denoiser.rs`). The input is on the
/// benchmark's device; the output may be on any device and of any float kind (the host converts it).
/// `denoise` takes `&mut self` so that a denoiser may keep state (buffers, a random generator); it is
/// called from one thread. Return errors rather than panicking: [`denoise_checked`] turns them, a wrong
/// shape and non-finite values into a [`DenoiseError`] and the benchmark of the others goes on.
pub trait Denoiser {
    fn info(&self) -> DenoiserInfo;

    fn denoise(&mut self, images: &Tensor) -> Result<Tensor, DenoiseError>;
}

impl<D: Denoiser + ?Sized> Denoiser for Box<D> {
    fn info(&self) -> DenoiserInfo {
        (**self).info()
    }
    fn denoise(&mut self, images: &Tensor) -> Result<Tensor, DenoiseError> {
        (**self).denoise(images)
    }
}

/// Runs `denoiser` on `images` (`(N, 1, H, W)`, float32, contiguous) and checks its output: same shape,
/// finite. Returns float32 on `images`' device. A panic inside the denoiser becomes an error too.
pub fn denoise_checked(denoiser: &mut dyn Denoiser, images: &Tensor) -> Result<Tensor, DenoiseError> {
    // A panicking Rust denoiser is reported like any other failure.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| denoiser.denoise(images)));
    let who = || denoiser.info().label();
    let out = result.map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "(no message)".into());
        DenoiseError::new(who(), ErrorKind::Denoise, format!("panicked: {msg}"))
    })??;
    let torch = |e: tch::TchError| DenoiseError::new(who(), ErrorKind::Torch, e.to_string());
    if out.size() != images.size() {
        return Err(DenoiseError::new(
            who(),
            ErrorKind::WrongSize,
            format!("output shape {:?}, expected the input's {:?}", out.size(), images.size()),
        ));
    }
    if !matches!(out.kind(), Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16) {
        return Err(DenoiseError::new(
            who(),
            ErrorKind::WrongSize,
            format!("output dtype {:?}, expected a float tensor", out.kind()),
        ));
    }
    let out = out.f_to_device(images.device()).and_then(|t| t.f_to_kind(Kind::Float)).map_err(torch)?;
    let check = || -> Result<Option<(i64, i64, f64)>, tch::TchError> {
        let bad = out.f_isfinite()?.f_logical_not()?.f_to_kind(Kind::Int64)?.f_flatten(0, -1)?;
        let count = bad.f_sum(Kind::Int64)?.int64_value(&[]);
        if count == 0 {
            return Ok(None);
        }
        let first = bad.f_argmax(0, false)?.int64_value(&[]); // the first non-finite value
        Ok(Some((count, first, out.f_flatten(0, -1)?.double_value(&[first]))))
    };
    if let Some((count, first, value)) = check().map_err(torch)? {
        let (h, w) = (images.size()[2], images.size()[3]);
        return Err(DenoiseError::new(
            who(),
            ErrorKind::NonFinite,
            format!(
                "output has {count} NaN/Inf value(s); first {value} in image {} at (row {}, column {})",
                first / (h * w),
                first % (h * w) / w,
                first % w
            ),
        ));
    }
    Ok(out)
}

/// What a `--denoiser` value names.
#[derive(Debug, Clone, PartialEq)]
pub enum SpecKind {
    /// `identity`, `gaussian` or `median`, with an optional JSON config.
    Builtin { name: String, config: Option<String> },
    /// A C plugin and the JSON for its `create`.
    Plugin { path: PathBuf, config: Option<String> },
    /// A TorchScript module file.
    TorchScript { path: PathBuf },
}

/// A parsed `--denoiser` value (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct DenoiserSpec {
    /// The text it was parsed from.
    pub text: String,
    /// `LABEL=` given by the user.
    pub label: Option<String>,
    pub kind: SpecKind,
}

fn is_plugin_path(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    s.contains('/')
        || s.contains('\\')
        || [".so", ".dylib", ".dll"].iter().any(|e| lower.ends_with(e))
        || lower.contains(".so.")
}

fn is_module_path(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    [".pt", ".pth", ".ts", ".torchscript"].iter().any(|e| lower.ends_with(e))
}

impl DenoiserSpec {
    pub fn parse(text: &str) -> Result<Self, DenoiseError> {
        let bad = |msg: String| DenoiseError::new(format!("--denoiser {text:?}"), ErrorKind::Spec, msg);
        let text_trim = text.trim();
        if text_trim.is_empty() {
            return Err(bad("empty spec".into()));
        }
        // LABEL=REST when the part before '=' is a plain name (and comes before any ':' or '/').
        let (label, rest) = match text_trim.split_once('=') {
            Some((l, r))
                if !l.is_empty()
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || "_-.+#".contains(c))
                    && !l.contains(':') =>
            {
                (Some(l.to_string()), r)
            }
            _ => (None, text_trim),
        };
        // A whole existing file wins over a split at ':' (paths with ':' in them).
        let (head, config) = if Path::new(rest).is_file() {
            (rest, None)
        } else {
            match rest.split_once(':') {
                Some((h, c)) => (h, Some(c.trim().to_string())),
                None => (rest, None),
            }
        };
        if let Some(c) = &config {
            match serde_json::from_str::<serde_json::Value>(c) {
                Ok(serde_json::Value::Object(_)) => {}
                Ok(_) => return Err(bad(format!("config {c:?} is not a JSON object"))),
                Err(e) => return Err(bad(format!("config {c:?} is not valid JSON: {e}"))),
            }
        }
        let kind = if is_module_path(head) {
            if config.is_some() {
                return Err(bad("a TorchScript module takes no config".into()));
            }
            SpecKind::TorchScript { path: PathBuf::from(head) }
        } else if is_plugin_path(head) {
            SpecKind::Plugin { path: PathBuf::from(head), config }
        } else if builtin::names().any(|n| n == head) {
            SpecKind::Builtin { name: head.to_string(), config }
        } else {
            return Err(bad(format!(
                "{head:?} is not a built-in ({}), a plugin (.so, .dylib, .dll or a path with '/') \
                 or a TorchScript module (.pt)",
                builtin::names().collect::<Vec<_>>().join(", ")
            )));
        };
        Ok(Self { text: text.to_string(), label, kind })
    }

    /// Loads the denoiser (TorchScript modules onto `device`; plugins and modules where `host` says).
    pub fn load(&self, device: Device, host: &PluginHost) -> Result<Box<dyn Denoiser>, DenoiseError> {
        Ok(match (&self.kind, host) {
            (SpecKind::Builtin { name, config }, _) => builtin::from_name(name, config.as_deref())?,
            (_, PluginHost::Isolated { worker, timeout }) => {
                Box::new(IsolatedDenoiser::spawn(worker, self, device, *timeout)?)
            }
            (SpecKind::Plugin { path, config }, PluginHost::InProcess) => {
                Box::new(PluginDenoiser::load(path, config.as_deref())?)
            }
            (SpecKind::TorchScript { path }, PluginHost::InProcess) => {
                Box::new(TorchScriptDenoiser::load(path, device)?)
            }
        })
    }

    /// The name for reports before loading: the label, the built-in's name, the file's stem.
    pub fn default_name(&self) -> String {
        if let Some(l) = &self.label {
            return l.clone();
        }
        match &self.kind {
            SpecKind::Builtin { name, .. } => name.clone(),
            SpecKind::Plugin { path, .. } | SpecKind::TorchScript { path } => {
                let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                stem.strip_prefix("lib").filter(|s| !s.is_empty()).unwrap_or(&stem).to_string()
            }
        }
    }
}

/// Where C plugins and TorchScript modules run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PluginHost {
    /// In this process: no start-up cost, but one that crashes takes the process down.
    #[default]
    InProcess,
    /// Each in a worker process started from `worker` (the `ldctq` binary; see [`isolated`]): a crash
    /// is a [`DenoiseError`] of kind [`ErrorKind::Crashed`]. With `timeout`, loading and each batch
    /// must finish within it ([`ErrorKind::Timeout`]).
    Isolated { worker: std::path::PathBuf, timeout: Option<std::time::Duration> },
}

/// A denoiser to benchmark under a report name, or the reason it could not be loaded.
pub struct Candidate {
    /// Unique among the candidates of a run.
    pub name: String,
    /// The `--denoiser` text (or a description for denoisers made in code).
    pub spec: String,
    pub denoiser: Result<Box<dyn Denoiser>, DenoiseError>,
}

impl Candidate {
    /// A denoiser made in code (e.g. a Rust one), named after its info.
    pub fn new(denoiser: Box<dyn Denoiser>) -> Self {
        let info = denoiser.info();
        Self { name: info.name.clone(), spec: info.label(), denoiser: Ok(denoiser) }
    }
}

/// Parses and loads every spec; a spec that fails becomes a candidate holding its error (so the report
/// lists it) rather than stopping the others. Names are made unique (`gaussian`, `gaussian#2`, ...).
pub fn load_all(specs: &[String], device: Device, host: &PluginHost) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    for text in specs {
        let (name, denoiser) = match DenoiserSpec::parse(text) {
            Ok(spec) => {
                let loaded = spec.load(device, host);
                let name = match (&spec.label, &loaded) {
                    (Some(l), _) => l.clone(),
                    (None, Ok(d)) if matches!(spec.kind, SpecKind::Plugin { .. }) => d.info().name,
                    _ => spec.default_name(),
                };
                (name, loaded)
            }
            Err(e) => (text.clone(), Err(e)),
        };
        out.push(Candidate { name, spec: text.clone(), denoiser });
    }
    unique_names(&mut out);
    out
}

/// Renames repeated names `x` to `x#2`, `x#3`, ... (and avoids the reserved `input` and `reference`).
pub fn unique_names(candidates: &mut [Candidate]) {
    let mut seen: Vec<String> = vec!["input".into(), "reference".into()];
    for c in candidates.iter_mut() {
        let base = c.name.clone();
        let mut name = base.clone();
        let mut k = 2;
        while seen.contains(&name) {
            name = format!("{base}#{k}");
            k += 1;
        }
        seen.push(name.clone());
        c.name = name;
    }
}

/// sha256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
