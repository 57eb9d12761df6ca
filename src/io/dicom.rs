//! DICOM: native (uncompressed) little-endian pixel data, rescaled to Hounsfield units.

use std::borrow::Cow;
use std::path::Path;

use dicom_core::value::{DicomValueType, PrimitiveValue, Value};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions};

use super::{chain, head, slices, ReadError, Result, Slices, Space};

const FORMAT: &str = "DICOM";
const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
const DEFLATED_EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1.99";
const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";

/// Whether `path` has the 'DICM' magic at byte 128 (false for shorter files).
pub(super) fn has_magic(path: &Path) -> Result<bool> {
    Ok(head(path, 132)?.get(128..132) == Some(b"DICM"))
}

/// The InstanceNumber of a DICOM file, read without its pixel data; `None` if absent or unreadable.
pub(super) fn instance_number(path: &Path) -> Option<i64> {
    let obj = OpenFileOptions::new().read_until(tags::PIXEL_DATA).open_file(path).ok()?;
    obj.element_opt(tags::INSTANCE_NUMBER).ok()??.to_int::<i64>().ok()
}

/// Reads a single- or multi-frame grayscale DICOM file into Hounsfield units (`Space::Hu`).
///
/// Supports native transfer syntaxes (implicit and explicit VR little endian; deflated where the
/// DICOM parser is built with it), BitsAllocated 8, 16 or 32, any BitsStored/HighBit within it,
/// unsigned or signed (two's complement) samples and SamplesPerPixel 1. Values are
/// `raw * RescaleSlope + RescaleIntercept` (defaults 1 and 0).
///
/// MONOCHROME1 images (where higher values are darker) are mirrored within the range of the stored
/// values, `raw' = min + max - raw` (for example `4095 - raw` for unsigned 12-bit, `-1 - raw` for
/// signed), before rescaling, so that higher always means brighter; the window center is mirrored
/// the same way. CT images are MONOCHROME2 in practice. A missing PhotometricInterpretation is
/// taken as MONOCHROME2.
pub fn read_dicom(path: &Path) -> Result<Slices> {
    if !has_magic(path)? {
        return Err(ReadError::not_format(path, FORMAT, "no 'DICM' magic at byte 128"));
    }
    let obj = dicom_object::open_file(path).map_err(|e| {
        // Running out of bytes anywhere in the data set means the file was cut short.
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::UnexpectedEof {
                    return ReadError::truncated(path, FORMAT, chain(&e));
                }
            }
            source = s.source();
        }
        ReadError::invalid(path, FORMAT, chain(&e))
    })?;
    let uid = obj.meta().transfer_syntax().trim_end_matches(['\0', ' ']).to_string();
    match uid.as_str() {
        IMPLICIT_VR_LE | EXPLICIT_VR_LE | DEFLATED_EXPLICIT_VR_LE => {}
        EXPLICIT_VR_BE => {
            return Err(ReadError::unsupported(path, FORMAT, "transfer syntax: explicit VR big endian"))
        }
        _ => return Err(ReadError::CompressedDicom { path: path.into(), uid }),
    }
    let attrs = Attrs { obj: &obj, path };

    let samples = attrs.int(tags::SAMPLES_PER_PIXEL, "SamplesPerPixel")?.unwrap_or(1);
    if samples != 1 {
        return Err(ReadError::unsupported(path, FORMAT, format!("SamplesPerPixel {samples}; need 1")));
    }
    let photometric = attrs.text(tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_else(|| "MONOCHROME2".into());
    let mono1 = match photometric.as_str() {
        "MONOCHROME1" => true,
        "MONOCHROME2" => false,
        other => {
            let reason = format!("PhotometricInterpretation {other}; need MONOCHROME1 or MONOCHROME2");
            return Err(ReadError::unsupported(path, FORMAT, reason));
        }
    };
    let rows = attrs.required(tags::ROWS, "Rows")?;
    let cols = attrs.required(tags::COLUMNS, "Columns")?;
    let frames = attrs.int(tags::NUMBER_OF_FRAMES, "NumberOfFrames")?.unwrap_or(1);
    let allocated = attrs.required(tags::BITS_ALLOCATED, "BitsAllocated")?;
    let stored = attrs.int(tags::BITS_STORED, "BitsStored")?.unwrap_or(allocated);
    let high_bit = attrs.int(tags::HIGH_BIT, "HighBit")?.unwrap_or(stored.saturating_sub(1));
    let signed = match attrs.int(tags::PIXEL_REPRESENTATION, "PixelRepresentation")?.unwrap_or(0) {
        0 => false,
        1 => true,
        other => return Err(ReadError::invalid(path, FORMAT, format!("PixelRepresentation {other}"))),
    };
    if !matches!(allocated, 8 | 16 | 32) {
        let reason = format!("sample format: BitsAllocated {allocated}; need 8, 16 or 32");
        return Err(ReadError::unsupported(path, FORMAT, reason));
    }
    if stored == 0 || stored > allocated || high_bit >= allocated || high_bit + 1 < stored {
        let reason = format!("BitsStored {stored} and HighBit {high_bit} with BitsAllocated {allocated}");
        return Err(ReadError::invalid(path, FORMAT, reason));
    }

    let bytes = pixel_bytes(&obj, path, &uid)?;
    let width = allocated as usize / 8;
    let needed = [rows, cols, frames].iter().try_fold(width, |n, &d| n.checked_mul(d as usize));
    let Some(needed) = needed else {
        return Err(ReadError::invalid(
            path,
            FORMAT,
            format!("{frames} x {rows} x {cols} (frames x rows x columns) is too large"),
        ));
    };
    if bytes.len() < needed {
        let (len, dims) = (bytes.len(), format!("{frames} x {rows} x {cols} (frames x rows x columns)"));
        let reason = format!("PixelData has {len} bytes; {dims} at {allocated} bits need {needed}");
        return Err(ReadError::truncated(path, FORMAT, reason));
    }

    let slope = attrs.first_float(tags::RESCALE_SLOPE, "RescaleSlope")?.unwrap_or(1.0);
    let intercept = attrs.first_float(tags::RESCALE_INTERCEPT, "RescaleIntercept")?.unwrap_or(0.0);
    let (lowest, highest) = if signed {
        (-(1i64 << (stored - 1)), (1i64 << (stored - 1)) - 1)
    } else {
        (0, (1i64 << stored) - 1)
    };
    let mirror = lowest + highest;
    let shift = high_bit + 1 - stored;
    let mask = u32::MAX >> (32 - stored);
    let hu = |raw: i64| ((if mono1 { mirror - raw } else { raw }) as f64 * slope + intercept) as f32;
    let values = bytes[..needed]
        .chunks_exact(width)
        .map(|sample| {
            let mut word = [0u8; 4];
            word[..width].copy_from_slice(sample);
            let raw = i64::from((u32::from_le_bytes(word) >> shift) & mask);
            hu(if signed && raw > highest { raw - (1i64 << stored) } else { raw })
        })
        .collect();

    let center = attrs.first_float(tags::WINDOW_CENTER, "WindowCenter")?;
    let window_width = attrs.first_float(tags::WINDOW_WIDTH, "WindowWidth")?;
    let window = center.zip(window_width).map(|(c, w)| {
        // hu(mirror - raw) = mirror * slope + 2 * intercept - hu(raw)
        (if mono1 { mirror as f64 * slope + 2.0 * intercept - c } else { c }, w)
    });
    slices(path, FORMAT, (frames as usize, rows as usize, cols as usize), values, Space::Hu, window)
}

/// The PixelData bytes in little-endian order.
fn pixel_bytes<'a>(obj: &'a DefaultDicomObject, path: &Path, uid: &str) -> Result<Cow<'a, [u8]>> {
    let element = obj.element_opt(tags::PIXEL_DATA).ok().flatten();
    let Some(element) = element else {
        return Err(ReadError::unsupported(path, FORMAT, "file: no PixelData element"));
    };
    match element.value() {
        Value::Primitive(PrimitiveValue::U8(bytes)) => Ok(Cow::Borrowed(&bytes[..])),
        // OW data is decoded into 16-bit words by the parser; lay them out little-endian again.
        Value::Primitive(PrimitiveValue::U16(words)) => {
            Ok(Cow::Owned(words.iter().flat_map(|w| w.to_le_bytes()).collect()))
        }
        Value::PixelSequence(_) => Err(ReadError::CompressedDicom { path: path.into(), uid: uid.into() }),
        other => Err(ReadError::invalid(path, FORMAT, format!("PixelData holds {:?}", other.value_type()))),
    }
}

/// Typed access to a data set's attributes, with errors naming the file.
struct Attrs<'a> {
    obj: &'a DefaultDicomObject,
    path: &'a Path,
}

impl Attrs<'_> {
    /// The element's primitive value, `None` when absent or empty.
    fn value(&self, tag: Tag) -> Option<&PrimitiveValue> {
        let value = self.obj.element_opt(tag).ok()??.value().primitive()?;
        (!matches!(value, PrimitiveValue::Empty) && !value.to_str().trim().is_empty()).then_some(value)
    }

    fn int(&self, tag: Tag, name: &str) -> Result<Option<u32>> {
        self.value(tag)
            .map(|v| v.to_int::<u32>())
            .transpose()
            .map_err(|e| ReadError::invalid(self.path, FORMAT, format!("{name}: {e}")))
    }

    fn required(&self, tag: Tag, name: &str) -> Result<u32> {
        self.int(tag, name)?.ok_or_else(|| ReadError::invalid(self.path, FORMAT, format!("no {name}")))
    }

    /// The first of a (possibly multi-valued) numeric attribute.
    fn first_float(&self, tag: Tag, name: &str) -> Result<Option<f64>> {
        let Some(value) = self.value(tag) else { return Ok(None) };
        let values = value
            .to_multi_float64()
            .map_err(|e| ReadError::invalid(self.path, FORMAT, format!("{name}: {e}")))?;
        match values.first() {
            Some(v) if v.is_finite() => Ok(Some(*v)),
            _ => Err(ReadError::invalid(self.path, FORMAT, format!("{name} is not a finite number"))),
        }
    }

    fn text(&self, tag: Tag) -> Option<String> {
        Some(self.value(tag)?.to_str().trim().to_string())
    }
}
