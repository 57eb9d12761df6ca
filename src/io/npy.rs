//! NumPy `.npy`: 2-D images and stacks of them.

use std::path::Path;

use ndarray::{ArrayD, ArrayViewD, Axis, Ix3};
use ndarray_npy::{ReadNpyError, ReadNpyExt, ReadableElement, WriteNpyExt};

use super::{slices, write_file, ReadError, Result, Sample, Slices};

const FORMAT: &str = "NumPy";

/// Reads `bytes` as an array of `T`, converted to `f32`.
fn read_as<T: ReadableElement + Sample>(bytes: &[u8]) -> std::result::Result<ArrayD<f32>, ReadNpyError> {
    Ok(ArrayD::<T>::read_npy(bytes)?.mapv(Sample::to_f32))
}

/// Readers for each accepted dtype, most common first.
type Reader = fn(&[u8]) -> std::result::Result<ArrayD<f32>, ReadNpyError>;
const READERS: [Reader; 10] = [
    read_as::<f32>,
    read_as::<f64>,
    read_as::<i16>,
    read_as::<u16>,
    read_as::<u8>,
    read_as::<i8>,
    read_as::<i32>,
    read_as::<u32>,
    read_as::<i64>,
    read_as::<u64>,
];

/// Reads a `.npy` array of dtype float32, float64 or (u)int8/16/32/64 (64-bit integers rounded to
/// `f32`), in either byte order and C or Fortran order, shaped `(H, W)`, `(N, H, W)` or
/// `(N, 1, H, W)`; values are kept as they are (their space is unknown: `None`).
pub fn read_npy(path: &Path) -> Result<Slices> {
    let bytes = std::fs::read(path).map_err(|e| ReadError::io(path, e))?;
    check_size(path, &bytes)?;
    let read = READERS.iter().find_map(|read| match read(&bytes) {
        Err(ReadNpyError::WrongDescriptor(_)) => None,
        result => Some(result),
    });
    let mut array = match read {
        Some(Ok(array)) => array,
        Some(Err(ReadNpyError::MissingData)) => {
            return Err(ReadError::truncated(path, FORMAT, "data shorter than the header's shape"))
        }
        Some(Err(e)) => return Err(ReadError::invalid(path, FORMAT, e)),
        None => {
            let descr = header(&bytes).and_then(|(h, _)| field(h, "descr")).unwrap_or("?");
            let reason = format!("dtype {descr}; need float32/64 or (u)int8/16/32/64");
            return Err(ReadError::unsupported(path, FORMAT, reason));
        }
    };
    let shape = array.shape().to_vec();
    match shape.len() {
        2 => array.insert_axis_inplace(Axis(0)),
        3 => {}
        4 if shape[1] == 1 => array.index_axis_inplace(Axis(1), 0),
        _ => {
            let reason = format!("shape {shape:?}; need (H, W), (N, H, W) or (N, 1, H, W)");
            return Err(ReadError::unsupported(path, FORMAT, reason));
        }
    }
    let array = array.into_dimensionality::<Ix3>().map_err(|e| ReadError::invalid(path, FORMAT, e))?;
    slices(path, FORMAT, array.dim(), array.iter().copied().collect(), None, None)
}

/// The header text of an `.npy` file and the offset of its data, if its preamble is well-formed.
fn header(bytes: &[u8]) -> Option<(&str, usize)> {
    let (start, len) = match (bytes.get(..6)?, *bytes.get(6)?) {
        (b"\x93NUMPY", 1) => (10usize, u16::from_le_bytes(bytes.get(8..10)?.try_into().ok()?) as usize),
        (b"\x93NUMPY", _) => (12, u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?) as usize),
        _ => return None,
    };
    let end = start.checked_add(len)?;
    Some((std::str::from_utf8(bytes.get(start..end)?).ok()?, end))
}

/// The raw text of `key`'s value in a header dict: a whole tuple, or up to the next `,` or `}`.
fn field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let rest = &header[header.find(key)? + key.len()..];
    let rest = rest.trim_start_matches(['\'', '"']).trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') { rest.find(')')? + 1 } else { rest.find([',', '}'])? };
    Some(rest[..end].trim())
}

/// Refuses files whose header declares more elements than there are data bytes, before the npy
/// reader allocates room for them.
fn check_size(path: &Path, bytes: &[u8]) -> Result<()> {
    if !bytes.starts_with(b"\x93NUMPY") {
        return Err(ReadError::not_format(path, FORMAT, "no \\x93NUMPY signature"));
    }
    let Some((header, offset)) = header(bytes) else {
        return Err(ReadError::truncated(path, FORMAT, "header cut short or not text"));
    };
    let shape = field(header, "shape").and_then(|s| s.strip_prefix('(')?.strip_suffix(')'));
    let Some(shape) = shape else {
        return Err(ReadError::invalid(path, FORMAT, "header has no shape tuple"));
    };
    let count = shape
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .try_fold(1u64, |n, d| n.checked_mul(d.trim_end_matches('L').parse::<u64>().ok()?));
    let data = (bytes.len() - offset) as u64;
    match count {
        Some(n) if n <= data => Ok(()),
        Some(n) => Err(ReadError::truncated(
            path,
            FORMAT,
            format!("shape ({shape}) has {n} elements; file has {data} data bytes"),
        )),
        None => Err(ReadError::invalid(path, FORMAT, format!("bad shape ({shape})"))),
    }
}

/// Writes `array` as a little-endian float32 `.npy` file (any number of dimensions).
pub fn write_npy_f32(path: &Path, array: &ArrayViewD<f32>) -> Result<()> {
    let mut bytes = Vec::new();
    array.write_npy(&mut bytes).map_err(|e| ReadError::write(path, FORMAT, e))?;
    write_file(path, &bytes)
}
