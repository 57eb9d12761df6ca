//! TIFF: single-channel grayscale, one frame per page.

use std::io::Cursor;
use std::path::Path;

use ::tiff::decoder::{Decoder, DecodingResult};
use ::tiff::encoder::{colortype::Gray32Float, TiffEncoder};
use ::tiff::{ColorType, TiffError};
use ndarray::ArrayView2;

use super::{open, slices, to_f32, write_file, ReadError, Result, Slices, Space};

const FORMAT: &str = "TIFF";
/// Little- and big-endian TIFF and BigTIFF.
const MAGICS: [&[u8]; 4] = [b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"];

fn error(path: &Path, e: TiffError) -> ReadError {
    match e {
        TiffError::FormatError(e) => ReadError::invalid(path, FORMAT, e),
        TiffError::UnsupportedError(e) => ReadError::unsupported(path, FORMAT, format!("feature: {e}")),
        TiffError::IoError(e) => ReadError::from_io(path, FORMAT, e),
        e => ReadError::invalid(path, FORMAT, e),
    }
}

/// Reads a single-channel TIFF; each page becomes a frame (all pages must have the same size and
/// kind of samples).
///
/// Floating-point samples (32-bit as in LDCTIQA2023, also 16- and 64-bit) are taken to be in
/// `[0, 1]` (`Space::Unit`); 8-, 16-, 32- and 64-bit integer samples, signed or not, give
/// an unknown space (`None`). Colour, palette and multi-sample images and bit depths below 8 are refused.
pub fn read_tiff(path: &Path) -> Result<Slices> {
    let err = |e| error(path, e);
    let mut decoder = Decoder::new(open(path, FORMAT, &MAGICS)?).map_err(err)?;
    let mut values = Vec::new();
    let mut first: Option<((u32, u32), Option<Space>)> = None;
    let mut pages = 0;
    loop {
        let size = decoder.dimensions().map_err(err)?;
        match decoder.colortype().map_err(err)? {
            ColorType::Gray(8 | 16 | 32 | 64) => {}
            ColorType::Gray(bits) => {
                return Err(ReadError::unsupported(
                    path,
                    FORMAT,
                    format!("sample format: {bits}-bit grayscale"),
                ))
            }
            other => {
                let reason = format!("colour type {other:?}; only single-channel grayscale is read");
                return Err(ReadError::unsupported(path, FORMAT, reason));
            }
        }
        let (page, space) = match decoder.read_image().map_err(err)? {
            DecodingResult::F32(v) => (v, Some(Space::Unit)),
            DecodingResult::F64(v) => (to_f32(v), Some(Space::Unit)),
            DecodingResult::F16(v) => (v.into_iter().map(|x| x.to_f32()).collect(), Some(Space::Unit)),
            DecodingResult::U8(v) => (to_f32(v), None),
            DecodingResult::I8(v) => (to_f32(v), None),
            DecodingResult::U16(v) => (to_f32(v), None),
            DecodingResult::I16(v) => (to_f32(v), None),
            DecodingResult::U32(v) => (to_f32(v), None),
            DecodingResult::I32(v) => (to_f32(v), None),
            DecodingResult::U64(v) => (to_f32(v), None),
            DecodingResult::I64(v) => (to_f32(v), None),
        };
        let expected = size.0 as usize * size.1 as usize;
        if page.len() != expected {
            let reason =
                format!("page {pages} decodes to {} samples, not {} x {}", page.len(), size.1, size.0);
            return Err(ReadError::invalid(path, FORMAT, reason));
        }
        match first {
            None => first = Some((size, space)),
            Some(f) if f == (size, space) => {}
            Some(((w, h), s)) => {
                let reason = format!(
                    "page {pages} is {} x {} {space:?}, unlike page 0 ({h} x {w} {s:?})",
                    size.1, size.0
                );
                return Err(ReadError::unsupported(path, FORMAT, format!("mixed pages: {reason}")));
            }
        }
        values.extend(page);
        pages += 1;
        if !decoder.more_images() {
            break;
        }
        decoder.next_image().map_err(err)?;
    }
    let ((width, height), space) = first.ok_or_else(|| ReadError::invalid(path, FORMAT, "no pages"))?;
    slices(path, FORMAT, (pages, height as usize, width as usize), values, space, None)
}

/// Writes `image` (`H x W`) as an uncompressed single-page 32-bit float grayscale TIFF, the
/// LDCTIQA2023 format.
pub fn write_tiff_f32(path: &Path, image: &ArrayView2<f32>) -> Result<()> {
    let (height, width) = image.dim();
    let too_large = || ReadError::write(path, FORMAT, format!("{height} x {width} is too large"));
    let (w, h) =
        (u32::try_from(width).map_err(|_| too_large())?, u32::try_from(height).map_err(|_| too_large())?);
    let data: Vec<f32> = image.iter().copied().collect();
    let mut bytes = Cursor::new(Vec::new());
    TiffEncoder::new(&mut bytes)
        .and_then(|mut encoder| encoder.write_image::<Gray32Float>(w, h, &data))
        .map_err(|e| ReadError::write(path, FORMAT, e))?;
    write_file(path, bytes.get_ref())
}
