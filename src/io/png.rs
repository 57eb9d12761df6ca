//! PNG: 8- and 16-bit grayscale, scaled to `[0, 1]`.

use std::path::Path;

use ::png::{BitDepth, ColorType, Decoder, DecodingError, Encoder, Limits, Transformations};
use ndarray::ArrayView2;

use super::{open, slices, write_file, ReadError, Result, Slices, Space};

const FORMAT: &str = "PNG";

fn error(path: &Path, e: DecodingError) -> ReadError {
    match e {
        DecodingError::IoError(e) => ReadError::from_io(path, FORMAT, e),
        DecodingError::LimitsExceeded => ReadError::unsupported(path, FORMAT, "size: image exceeds 256 MiB"),
        e => ReadError::invalid(path, FORMAT, e),
    }
}

/// Reads a PNG as one frame in `[0, 1]` (`Space::Unit`): samples are divided by 255 (bit depths
/// up to 8, which are first scaled to 8 bits) or 65535 (16 bits).
///
/// Grayscale is read as is and gray+alpha without its alpha. RGB(A) and palette images are read
/// only where every pixel has R = G = B (taking R); other colour PNGs are refused.
pub fn read_png(path: &Path) -> Result<Slices> {
    let mut decoder =
        Decoder::new_with_limits(open(path, FORMAT, &[b"\x89PNG\r\n\x1a\n"])?, Limits { bytes: 256 << 20 });
    decoder.set_transformations(Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(|e| error(path, e))?;
    let size = reader.output_buffer_size().ok_or_else(|| error(path, DecodingError::LimitsExceeded))?;
    let mut buffer = vec![0; size];
    let info = reader.next_frame(&mut buffer).map_err(|e| error(path, e))?;
    let (width, height) = (info.width as usize, info.height as usize);
    let (bytes, scale) = match info.bit_depth {
        BitDepth::Eight => (1, 255.0),
        BitDepth::Sixteen => (2, 65535.0),
        depth => {
            return Err(ReadError::unsupported(path, FORMAT, format!("bit depth {depth:?} after expansion")))
        }
    };
    let channels = info.color_type.samples();
    let colour = matches!(info.color_type, ColorType::Rgb | ColorType::Rgba);
    let pixel = channels * bytes;
    let sample = |p: &[u8], c: usize| match bytes {
        1 => u16::from(p[c]),
        _ => u16::from_be_bytes([p[2 * c], p[2 * c + 1]]),
    };
    let mut values = Vec::with_capacity(width * height);
    for row in buffer.chunks(info.line_size.max(1)).take(height) {
        let row = row.get(..width * pixel).ok_or_else(|| ReadError::invalid(path, FORMAT, "short row"))?;
        for p in row.chunks_exact(pixel) {
            let gray = sample(p, 0);
            if colour && (sample(p, 1) != gray || sample(p, 2) != gray) {
                let reason = "colour image (R, G and B differ); only grayscale is read";
                return Err(ReadError::unsupported(path, FORMAT, reason));
            }
            values.push(f32::from(gray) / scale);
        }
    }
    slices(path, FORMAT, (1, height, width), values, Some(Space::Unit), None)
}

/// Writes `image` (`H x W`, values in `[0, 1]`) as a 16-bit grayscale PNG: each value is clamped
/// to `[0, 1]` and rounded to the nearest multiple of 1/65535 (NaN becomes 0).
pub fn write_png_u16(path: &Path, image: &ArrayView2<f32>) -> Result<()> {
    let (height, width) = image.dim();
    let too_large = || ReadError::write(path, FORMAT, format!("{height} x {width} is too large"));
    let (w, h) =
        (u32::try_from(width).map_err(|_| too_large())?, u32::try_from(height).map_err(|_| too_large())?);
    let data: Vec<u8> =
        image.iter().flat_map(|v| ((v.clamp(0.0, 1.0) * 65535.0).round() as u16).to_be_bytes()).collect();
    let mut bytes = Vec::new();
    let mut encoder = Encoder::new(&mut bytes, w, h);
    encoder.set_color(ColorType::Grayscale);
    encoder.set_depth(BitDepth::Sixteen);
    encoder
        .write_header()
        .and_then(|mut writer| {
            writer.write_image_data(&data)?;
            writer.finish()
        })
        .map_err(|e| ReadError::write(path, FORMAT, e))?;
    write_file(path, &bytes)
}
