//! Image input: DICOM, TIFF, NumPy `.npy` and PNG files read into `f32` frame stacks.
//!
//! Every reader returns a [`Slices`]: a `frames x H x W` array of `f32` plus what its values
//! mean ([`Space`], `None` when the format does not say). Readers never panic on malformed files;
//! every [`ReadError`] names the file and the reason. `data::load_frame` turns a file into a
//! tensor in a chosen space.

mod atomic;
mod dicom;
mod npy;
mod png;
mod tiff;

use std::fmt::Display;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::window::{Space, Window};
use ndarray::Array3;

pub use self::atomic::write_atomic;
pub(crate) use self::atomic::{commit, temp_path};
pub use self::dicom::read_dicom;
pub use self::npy::{read_npy, write_npy_f32};
pub use self::png::{read_png, write_png_u16};
pub use self::tiff::{read_tiff, write_tiff_f32};

/// The formats [`read_image`] recognises, for error messages.
const SUPPORTED: &str =
    "DICOM (.dcm, .dicom, or any name with 'DICM' at byte 128), TIFF (.tif, .tiff), NumPy (.npy), PNG (.png)";

/// The images of one file.
#[derive(Debug, Clone)]
pub struct Slices {
    /// Pixel values, `frames x H x W`; never empty.
    pub pixels: Array3<f32>,
    /// What the values mean: HU for DICOM (after RescaleSlope/RescaleIntercept), [0, 1] for float
    /// TIFF (the LDCTIQA2023 format) and PNG (divided by 255 or 65535); `None` for numbers of
    /// unknown meaning (integer TIFF, `.npy`).
    pub space: Option<Space>,
    /// The DICOM WindowCenter/WindowWidth tags (first values), in the same units as `pixels`, if the
    /// file has a valid pair.
    pub window: Option<Window>,
    /// The file the images came from.
    pub source: PathBuf,
}

/// Why an image file could not be read or written. Every message starts with the file's path.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened, read, listed or written.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// The file lacks the signature of the format its name says.
    #[error("{}: not a {format} file: {reason}", path.display())]
    NotFormat {
        /// The file.
        path: PathBuf,
        /// The expected format.
        format: &'static str,
        /// What is missing.
        reason: String,
    },
    /// The file ends before the data it declares.
    #[error("{}: truncated {format} file: {reason}", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The file's format.
        format: &'static str,
        /// What is missing.
        reason: String,
    },
    /// The file is malformed.
    #[error("{}: invalid {format} file: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The file's format.
        format: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The file is well-formed, but holds something this module does not read (colour, an
    /// unusual sample type or shape, ...).
    #[error("{}: unsupported {format} {reason}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// The file's format.
        format: &'static str,
        /// What is not supported, e.g. "sample format: 1-bit grayscale".
        reason: String,
    },
    /// A DICOM file whose pixel data is compressed.
    #[error(
        "{}: compressed transfer syntax {uid} is not supported; decompress first (e.g. gdcmconv --raw)",
        path.display()
    )]
    CompressedDicom {
        /// The file.
        path: PathBuf,
        /// The transfer syntax UID.
        uid: String,
    },
    /// The file's name (or content, for names without an extension) matches no supported format.
    #[error("{}: unknown image format; supported: {SUPPORTED}", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// An image could not be encoded.
    #[error("{}: cannot write {format}: {reason}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The format being written.
        format: &'static str,
        /// Why.
        reason: String,
    },
}

/// Result of this module's functions.
pub type Result<T> = std::result::Result<T, ReadError>;

impl ReadError {
    /// The file the error is about.
    #[must_use]
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. }
            | Self::NotFormat { path, .. }
            | Self::Truncated { path, .. }
            | Self::Invalid { path, .. }
            | Self::Unsupported { path, .. }
            | Self::CompressedDicom { path, .. }
            | Self::UnknownFormat { path }
            | Self::Write { path, .. } => path,
        }
    }

    fn io(path: &Path, error: std::io::Error) -> Self {
        Self::Io { path: path.into(), error }
    }
    fn not_format(path: &Path, format: &'static str, reason: impl Display) -> Self {
        Self::NotFormat { path: path.into(), format, reason: reason.to_string() }
    }
    fn truncated(path: &Path, format: &'static str, reason: impl Display) -> Self {
        Self::Truncated { path: path.into(), format, reason: reason.to_string() }
    }
    fn invalid(path: &Path, format: &'static str, reason: impl Display) -> Self {
        Self::Invalid { path: path.into(), format, reason: reason.to_string() }
    }
    fn unsupported(path: &Path, format: &'static str, reason: impl Display) -> Self {
        Self::Unsupported { path: path.into(), format, reason: reason.to_string() }
    }
    fn write(path: &Path, format: &'static str, reason: impl Display) -> Self {
        Self::Write { path: path.into(), format, reason: reason.to_string() }
    }
    /// Maps a decoder's I/O error: running out of bytes means the file is truncated.
    fn from_io(path: &Path, format: &'static str, error: std::io::Error) -> Self {
        match error.kind() {
            std::io::ErrorKind::UnexpectedEof => Self::truncated(path, format, error),
            _ => Self::io(path, error),
        }
    }
}

/// A file format this module reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Dicom,
    Tiff,
    Npy,
    Png,
}

impl Format {
    /// The format of `path` by its extension (case-insensitive); a file with no or another
    /// extension (DICOM files are often named by UID, `1.2.840.….123`) is DICOM if it has the
    /// 'DICM' magic, else `None`.
    fn of(path: &Path) -> Result<Option<Format>> {
        let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
        Ok(match ext.as_deref() {
            Some("dcm" | "dicom") => Some(Format::Dicom),
            Some("tif" | "tiff") => Some(Format::Tiff),
            Some("npy") => Some(Format::Npy),
            Some("png") => Some(Format::Png),
            _ => dicom::has_magic(path)?.then_some(Format::Dicom),
        })
    }
}

/// Reads an image file of any supported format, chosen by extension (case-insensitive): `.dcm`,
/// `.dicom`, `.tif`, `.tiff`, `.npy`, `.png`; a file with no or another extension is read as DICOM
/// if it has the 'DICM' magic at byte 128.
pub fn read_image(path: &Path) -> Result<Slices> {
    match Format::of(path)? {
        Some(Format::Dicom) => read_dicom(path),
        Some(Format::Tiff) => read_tiff(path),
        Some(Format::Npy) => read_npy(path),
        Some(Format::Png) => read_png(path),
        None => Err(ReadError::UnknownFormat { path: path.into() }),
    }
}

/// The image files at `path`: a file gives itself; a folder gives the files in it (not in its
/// subfolders, and not hidden ones) that [`read_image`] recognises, sorted by name, except that
/// DICOM files with an InstanceNumber come after the others, in InstanceNumber order (then by name).
pub fn list_images(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|e| ReadError::io(path, e))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| ReadError::io(path, e))? {
        let file = entry.map_err(|e| ReadError::io(path, e))?.path();
        let hidden = file.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden || !file.is_file() {
            continue;
        }
        // An unreadable file of unknown extension is not one of ours: skip it.
        let key = match Format::of(&file) {
            Ok(Some(Format::Dicom)) => dicom::instance_number(&file),
            Ok(Some(_)) => None,
            Ok(None) | Err(_) => continue,
        };
        found.push((key, file));
    }
    found.sort();
    Ok(found.into_iter().map(|(_, file)| file).collect())
}

/// Opens `path` for a decoder after checking that it starts with one of `magics`.
fn open(path: &Path, format: &'static str, magics: &[&[u8]]) -> Result<BufReader<File>> {
    let start = head(path, 8)?;
    if start.is_empty() {
        return Err(ReadError::not_format(path, format, "empty file"));
    }
    if !magics.iter().any(|m| start.starts_with(m)) {
        return Err(ReadError::not_format(path, format, "wrong signature"));
    }
    File::open(path).map(BufReader::new).map_err(|e| ReadError::io(path, e))
}

/// Reads up to `n` bytes from the start of `path`.
fn head(path: &Path, n: u64) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let file = File::open(path).map_err(|e| ReadError::io(path, e))?;
    file.take(n).read_to_end(&mut bytes).map_err(|e| ReadError::io(path, e))?;
    Ok(bytes)
}

/// Writes encoded bytes to `path`.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| ReadError::io(path, e))
}

/// Assembles a [`Slices`], checking that `values` fills `frames x height x width` and is not empty.
fn slices(
    path: &Path,
    format: &'static str,
    (frames, height, width): (usize, usize, usize),
    values: Vec<f32>,
    space: Option<Space>,
    window: Option<Window>,
) -> Result<Slices> {
    if frames == 0 || height == 0 || width == 0 {
        let reason = format!("empty image ({frames} frames of {height} x {width})");
        return Err(ReadError::invalid(path, format, reason));
    }
    let n = values.len();
    let pixels = Array3::from_shape_vec((frames, height, width), values).map_err(|_| {
        let reason = format!("{n} values for {frames} frames of {height} x {width}");
        ReadError::invalid(path, format, reason)
    })?;
    Ok(Slices { pixels, space, window, source: path.to_path_buf() })
}

/// A pixel sample type that converts to `f32` (rounding where `f32` cannot hold it exactly).
trait Sample: Copy {
    fn to_f32(self) -> f32;
}

macro_rules! sample_as_f32 {
    ($($t:ty),*) => { $(impl Sample for $t { fn to_f32(self) -> f32 { self as f32 } })* };
}
sample_as_f32!(u8, i8, u16, i16, u32, i32, u64, i64, f32, f64);

/// Converts a decoded buffer to `f32`.
fn to_f32<T: Sample>(values: Vec<T>) -> Vec<f32> {
    values.into_iter().map(Sample::to_f32).collect()
}

/// `error` and its sources, joined by ": ".
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.ends_with(&next) {
            text = format!("{text}: {next}");
        }
        source = e.source();
    }
    text
}
