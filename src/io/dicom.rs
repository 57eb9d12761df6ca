//! DICOM: native (uncompressed) little-endian pixel data, rescaled to Hounsfield units.

use std::borrow::Cow;
use std::path::Path;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::value::{DicomValueType, PrimitiveValue, Value};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::{tags, StandardDataDictionary};
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};

use super::{chain, head, slices, ReadError, Result, Slices, Space, Window};

const FORMAT: &str = "DICOM";
const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
const DEFLATED_EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1.99";
const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";
/// Value representations whose explicit-VR element header has a 2-byte length (PS3.5 7.1.2).
#[rustfmt::skip]
const SHORT_VRS: [VR; 21] = [
    VR::AE, VR::AS, VR::AT, VR::CS, VR::DA, VR::DS, VR::DT, VR::FL, VR::FD, VR::IS, VR::LO,
    VR::LT, VR::PN, VR::SH, VR::SL, VR::SS, VR::ST, VR::TM, VR::UI, VR::UL, VR::US,
];

/// Whether `path` has the 'DICM' magic at byte 128 (false for shorter files).
pub(super) fn has_magic(path: &Path) -> Result<bool> {
    Ok(head(path, 132)?.get(128..132) == Some(b"DICM"))
}

/// The InstanceNumber of a DICOM file; `None` if absent or unreadable.
pub(super) fn instance_number(path: &Path) -> Option<i64> {
    let obj = parse(path, &std::fs::read(path).ok()?, Some(tags::PIXEL_DATA)).ok()?;
    obj.element_opt(tags::INSTANCE_NUMBER).ok()??.to_int::<i64>().ok()
}

/// Parses a DICOM file's bytes (preamble included), up to the element `until` if given.
fn parse(path: &Path, bytes: &[u8], until: Option<Tag>) -> Result<DefaultDicomObject> {
    if bytes.get(128..132) != Some(b"DICM") {
        return Err(ReadError::not_format(path, FORMAT, "no 'DICM' magic at byte 128"));
    }
    check_lengths(path, bytes)?;
    let options = OpenFileOptions::new().read_preamble(ReadPreamble::Always);
    let options = match until {
        Some(tag) => options.read_until(tag),
        None => options,
    };
    options.from_reader(bytes).map_err(|e| {
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
    })
}

/// Reads a single- or multi-frame grayscale DICOM file into Hounsfield units (`Space::Hu`).
///
/// Supports native transfer syntaxes (implicit and explicit VR little endian; deflated where the
/// DICOM parser is built with it), BitsAllocated 8, 16 or 32, any BitsStored/HighBit within it,
/// unsigned or signed (two's complement) samples and SamplesPerPixel 1. Values are
/// `raw * RescaleSlope + RescaleIntercept` (defaults 1 and 0).
///
/// Enhanced multi-frame files keep RescaleSlope/RescaleIntercept in the
/// PixelValueTransformationSequence and WindowCenter/WindowWidth in the FrameVOILUTSequence of
/// their functional groups. Top-level values win where present; otherwise a frame's own
/// PerFrameFunctionalGroupsSequence item applies to it, then the SharedFunctionalGroupsSequence
/// item. The window is the first frame's.
///
/// MONOCHROME1 images (where higher values are darker) are mirrored within the range of the stored
/// values, `raw' = min + max - raw` (for example `4095 - raw` for unsigned 12-bit, `-1 - raw` for
/// signed), before rescaling, so that higher always means brighter; the window center is mirrored
/// the same way. CT images are MONOCHROME2 in practice. A missing PhotometricInterpretation is
/// taken as MONOCHROME2.
pub fn read_dicom(path: &Path) -> Result<Slices> {
    let obj = parse(path, &std::fs::read(path).map_err(|e| ReadError::io(path, e))?, None)?;
    let uid = obj.meta().transfer_syntax().trim_end_matches(['\0', ' ']).to_string();
    match uid.as_str() {
        IMPLICIT_VR_LE | EXPLICIT_VR_LE | DEFLATED_EXPLICIT_VR_LE => {}
        EXPLICIT_VR_BE => {
            return Err(ReadError::unsupported(path, FORMAT, "transfer syntax: explicit VR big endian"))
        }
        _ => return Err(ReadError::CompressedDicom { path: path.into(), uid }),
    }
    let attrs = Attrs { obj: &obj, path, within: String::new() };

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

    let pixels = pixel_bytes(&obj, path, &uid)?;
    let width = allocated as usize / 8;
    let dims = format!("{frames} x {rows} x {cols} (frames x rows x columns)");
    let needed = [rows, cols, frames].iter().try_fold(width, |n, &d| n.checked_mul(d as usize));
    let Some(needed) = needed else {
        return Err(ReadError::invalid(path, FORMAT, format!("{dims} is too large")));
    };
    if pixels.len() < needed {
        let reason =
            format!("PixelData has {} bytes; {dims} at {allocated} bits need {needed}", pixels.len());
        return Err(ReadError::truncated(path, FORMAT, reason));
    }

    let (lowest, highest) = if signed {
        (-(1i64 << (stored - 1)), (1i64 << (stored - 1)) - 1)
    } else {
        (0, (1i64 << stored) - 1)
    };
    let mirror = lowest + highest;
    let shift = high_bit + 1 - stored;
    let mask = u32::MAX >> (32 - stored);
    let groups = Groups::new(&obj, path);
    // No overflow: `needed` is this times `frames`.
    let frame_bytes = rows as usize * cols as usize * width;
    let mut values = Vec::with_capacity(needed / width);
    for (frame, bytes) in pixels[..needed].chunks_exact(frame_bytes.max(1)).enumerate() {
        let (slope, intercept) = groups.rescale(frame)?;
        let hu = |raw: i64| ((if mono1 { mirror - raw } else { raw }) as f64 * slope + intercept) as f32;
        values.extend(bytes.chunks_exact(width).map(|sample| {
            let mut word = [0u8; 4];
            word[..width].copy_from_slice(sample);
            let raw = i64::from((u32::from_le_bytes(word) >> shift) & mask);
            hu(if signed && raw > highest { raw - (1i64 << stored) } else { raw })
        }));
    }

    let (slope, intercept) = groups.rescale(0)?;
    let window = groups.window()?.and_then(|(c, w)| {
        // hu(mirror - raw) = mirror * slope + 2 * intercept - hu(raw)
        Window::new(if mono1 { mirror as f64 * slope + 2.0 * intercept - c } else { c }, w).ok()
    });
    slices(path, FORMAT, (frames as usize, rows as usize, cols as usize), values, Some(Space::Hu), window)
}

/// Walks the element headers of a DICOM file (preamble included) the way the DICOM parser will,
/// and fails where an element declares more bytes than the file has left, which the parser would
/// allocate (up to 4 GiB) before noticing.
/// Stops quietly where it cannot follow the encoding (deflated or big-endian data set, undefined
/// length other than SQ, item or PixelData) or the file ends inside a header, leaving those to
/// the parser.
fn check_lengths(path: &Path, bytes: &[u8]) -> Result<()> {
    let too_long = |tag: (u16, u16), at: usize, len: u64, left: usize| {
        let reason =
            format!("element ({:04X},{:04X}) at byte {at} declares {len} bytes; {left} left", tag.0, tag.1);
        ReadError::truncated(path, FORMAT, reason)
    };
    // The meta group, explicit VR little endian, spans the length given by its first element.
    let meta_end = match bytes.get(132..144) {
        Some([2, 0, 0, 0, b'U', b'L', 4, 0, l @ ..]) => {
            144 + u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize
        }
        _ => {
            return Err(ReadError::invalid(
                path,
                FORMAT,
                "meta group does not start with its length (0002,0000)",
            ))
        }
    };
    if meta_end > bytes.len() {
        return Err(too_long((2, 0), 132, (meta_end - 144) as u64, bytes.len() - 144));
    }
    let (mut pos, mut uid, mut meta, mut explicit, mut fragments) = (132, None::<String>, true, true, false);
    while let Some(h) = bytes.get(pos..pos + 8) {
        if meta && pos >= meta_end {
            meta = false;
            match uid.as_deref() {
                Some(IMPLICIT_VR_LE) => explicit = false,
                Some(DEFLATED_EXPLICIT_VR_LE | EXPLICIT_VR_BE) | None => break,
                Some(_) => {}
            }
        }
        let tag = (u16::from_le_bytes([h[0], h[1]]), u16::from_le_bytes([h[2], h[3]]));
        let item = tag.0 == 0xFFFE;
        let vr = match (item, explicit) {
            (true, _) => None,
            (false, true) => VR::from_binary([h[4], h[5]]).or(Some(VR::UN)),
            (false, false) => StandardDataDictionary.by_tag(Tag(tag.0, tag.1)).map(|e| e.vr().relaxed()),
        };
        let (len, start) = match vr {
            Some(vr) if explicit && !SHORT_VRS.contains(&vr) => match bytes.get(pos + 8..pos + 12) {
                Some(l) => (u32::from_le_bytes([l[0], l[1], l[2], l[3]]), pos + 12),
                None => break,
            },
            Some(_) if explicit => (u32::from(u16::from_le_bytes([h[6], h[7]])), pos + 8),
            _ => (u32::from_le_bytes([h[4], h[5], h[6], h[7]]), pos + 8),
        };
        let undefined = len == u32::MAX;
        let pixel_data = tag == (0x7FE0, 0x0010);
        // Sequences and their items are entered; fragments of encapsulated pixel data skipped.
        let enter = match (item, tag.1) {
            (true, 0xE0DD) => {
                fragments = false;
                true
            }
            (true, _) => !fragments || undefined,
            (false, _) => vr == Some(VR::SQ) || (undefined && (pixel_data || !explicit)),
        };
        fragments |= pixel_data && undefined;
        if undefined && !enter {
            break;
        }
        let left = bytes.len().saturating_sub(start);
        if !undefined && len as usize > left {
            return Err(too_long(tag, pos, len.into(), left));
        }
        if meta && tag == (2, 0x10) {
            let text = String::from_utf8_lossy(&bytes[start..start + len as usize]);
            uid = Some(text.trim_end_matches(['\0', ' ']).into());
        }
        pos = if enter { start } else { start + len as usize };
    }
    Ok(())
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

/// Where the rescale and window attributes of a (possibly enhanced multi-frame) file may be.
struct Groups<'a> {
    obj: &'a InMemDicomObject,
    path: &'a Path,
    shared: Option<&'a InMemDicomObject>,
    per_frame: &'a [InMemDicomObject],
}

impl<'a> Groups<'a> {
    fn new(obj: &'a InMemDicomObject, path: &'a Path) -> Self {
        let shared = first_item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
        let per_frame = sequence(obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE).unwrap_or(&[]);
        Groups { obj, path, shared, per_frame }
    }

    /// The data sets that may hold `frame`'s attributes of the functional group `group`, in order
    /// of precedence: the top level, the frame's PerFrameFunctionalGroupsSequence item, the
    /// SharedFunctionalGroupsSequence item.
    fn sources(&self, frame: usize, group: Tag, name: &str) -> impl Iterator<Item = Attrs<'a>> {
        let path = self.path;
        let top = Attrs { obj: self.obj, path, within: String::new() };
        let own = self.per_frame.get(frame).and_then(|g| first_item(g, group)).map(|obj| {
            let within = format!("PerFrameFunctionalGroupsSequence item {} > {name} > ", frame + 1);
            Attrs { obj, path, within }
        });
        let shared = self.shared.and_then(|g| first_item(g, group)).map(|obj| Attrs {
            obj,
            path,
            within: format!("SharedFunctionalGroupsSequence > {name} > "),
        });
        [Some(top), own, shared].into_iter().flatten()
    }

    /// `frame`'s (RescaleSlope, RescaleIntercept), from the first source that has either.
    fn rescale(&self, frame: usize) -> Result<(f64, f64)> {
        for attrs in
            self.sources(frame, tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE, "PixelValueTransformationSequence")
        {
            let slope = attrs.first_float(tags::RESCALE_SLOPE, "RescaleSlope")?;
            let intercept = attrs.first_float(tags::RESCALE_INTERCEPT, "RescaleIntercept")?;
            if slope.is_some() || intercept.is_some() {
                return Ok((slope.unwrap_or(1.0), intercept.unwrap_or(0.0)));
            }
        }
        Ok((1.0, 0.0))
    }

    /// The first frame's (WindowCenter, WindowWidth), from the first source that has both.
    fn window(&self) -> Result<Option<(f64, f64)>> {
        for attrs in self.sources(0, tags::FRAME_VOILUT_SEQUENCE, "FrameVOILUTSequence") {
            let center = attrs.first_float(tags::WINDOW_CENTER, "WindowCenter")?;
            let width = attrs.first_float(tags::WINDOW_WIDTH, "WindowWidth")?;
            if let Some(window) = center.zip(width) {
                return Ok(Some(window));
            }
        }
        Ok(None)
    }
}

/// The items of the sequence `tag` of `obj`; `None` if absent or not a sequence.
fn sequence(obj: &InMemDicomObject, tag: Tag) -> Option<&[InMemDicomObject]> {
    obj.element_opt(tag).ok()??.items()
}

/// The first item of the sequence `tag` of `obj`; `None` if absent, empty or not a sequence.
fn first_item(obj: &InMemDicomObject, tag: Tag) -> Option<&InMemDicomObject> {
    sequence(obj, tag)?.first()
}

/// Typed access to a data set's attributes, with errors naming the file.
struct Attrs<'a> {
    obj: &'a InMemDicomObject,
    path: &'a Path,
    /// Where the data set is, prefixed to attribute names in errors (empty for the top level).
    within: String,
}

impl Attrs<'_> {
    /// The element's primitive value, `None` when absent or empty.
    fn value(&self, tag: Tag) -> Option<&PrimitiveValue> {
        let value = self.obj.element_opt(tag).ok()??.value().primitive()?;
        (!matches!(value, PrimitiveValue::Empty) && !value.to_str().trim().is_empty()).then_some(value)
    }

    fn invalid(&self, reason: impl std::fmt::Display) -> ReadError {
        ReadError::invalid(self.path, FORMAT, format!("{}{reason}", self.within))
    }

    fn int(&self, tag: Tag, name: &str) -> Result<Option<u32>> {
        self.value(tag)
            .map(PrimitiveValue::to_int::<u32>)
            .transpose()
            .map_err(|e| self.invalid(format!("{name}: {e}")))
    }

    fn required(&self, tag: Tag, name: &str) -> Result<u32> {
        self.int(tag, name)?.ok_or_else(|| ReadError::invalid(self.path, FORMAT, format!("no {name}")))
    }

    /// The first of a (possibly multi-valued) numeric attribute.
    fn first_float(&self, tag: Tag, name: &str) -> Result<Option<f64>> {
        let Some(value) = self.value(tag) else { return Ok(None) };
        let values = value.to_multi_float64().map_err(|e| self.invalid(format!("{name}: {e}")))?;
        match values.first() {
            Some(v) if v.is_finite() => Ok(Some(*v)),
            _ => Err(self.invalid(format!("{name} is not a finite number"))),
        }
    }

    fn text(&self, tag: Tag) -> Option<String> {
        Some(self.value(tag)?.to_str().trim().to_string())
    }
}
