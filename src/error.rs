//! The library's error type: every failure names what was wrong and where.
use std::path::PathBuf;

/// Errors of the ldctq library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config file is missing, unreadable or holds invalid values.
    #[error("config {path}: {msg}")]
    Config { path: PathBuf, msg: String },
    /// Weights do not match the model: every offending tensor is listed.
    #[error("checkpoint {path}: {}", problems.join("; "))]
    Checkpoint { path: PathBuf, problems: Vec<String> },
    /// A model folder, repo id or file could not be found.
    #[error("not found: {0}")]
    NotFound(String),
    /// The tokenizer file is unusable or a text cannot be tokenized.
    #[error("tokenizer {path}: {msg}")]
    Tokenizer { path: PathBuf, msg: String },
    /// A caller-supplied tensor or value is invalid (shape, NaN, range, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A dtype, device or option that this build does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An image file could not be read.
    #[error(transparent)]
    Read(#[from] crate::io::ReadError),
    /// An evaluation metric is undefined for the given data.
    #[error(transparent)]
    Metric(#[from] crate::metrics::MetricError),
    /// A long run was stopped on request; its last checkpoint is on disk.
    #[error("interrupted: {0}")]
    Interrupted(String),
    /// A file-system operation failed.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// libtorch could not allocate host or device memory.
    #[error("out of memory: {0}")]
    OutOfMemory(tch::TchError),
    /// libtorch reported another error (a device fault, a kernel refusing its input, ...).
    #[error("libtorch: {0}")]
    Torch(tch::TchError),
}

impl From<tch::TchError> for Error {
    /// libtorch's allocators throw `c10::OutOfMemoryError`, which tch passes on as a message only
    /// ("CUDA out of memory", "DefaultCPUAllocator: can't allocate memory"); this is the one place
    /// that tells it from other libtorch errors.
    fn from(e: tch::TchError) -> Self {
        let text = e.to_string();
        if text.contains("out of memory") || text.contains("can't allocate memory") {
            Error::OutOfMemory(e)
        } else {
            Error::Torch(e)
        }
    }
}

/// `Result` with the library's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl From<crate::window::InvalidWindow> for Error {
    fn from(e: crate::window::InvalidWindow) -> Self {
        Error::InvalidInput(e.to_string())
    }
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
