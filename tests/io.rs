//! Tests of `ldctq::io` on real and synthetic fixtures (tests/fixtures/io, made by
//! gen_io_fixtures.py there) and on files the tests write themselves.
//!
//! `CT_small.dcm` is pydicom's test file, found by running `$LDCTQ_PYTHON` (default
//! `.venv/bin/python` in the crate root).
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use ldctq::io::{
    list_images, read_dicom, read_image, read_npy, read_png, read_tiff, write_npy_f32, write_png_u16,
    write_tiff_f32, ReadError,
};
use ldctq::{Space, Window};
use ndarray::{Array2, Array3, ArrayD, IxDyn};
use proptest::prelude::*;
use serde::Deserialize;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/io").join(name)
}

/// pydicom's CT_small.dcm (asked of `$LDCTQ_PYTHON`, default `.venv/bin/python`).
fn ct_small() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let python = std::env::var_os("LDCTQ_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
        let code = "from pydicom.data import get_testdata_file; print(get_testdata_file('CT_small.dcm'))";
        let out = Command::new(&python).args(["-c", code]).output().unwrap_or_else(|e| {
            panic!("cannot run {} (set LDCTQ_PYTHON to a python with pydicom): {e}", python.display())
        });
        assert!(
            out.status.success(),
            "{} failed: {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).expect("utf-8 path").trim())
    })
}

/// A fresh folder under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ldctq-io-test-{}-{n}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Asserts that reading `path` fails with a message naming the file and containing `needle`.
fn assert_error(result: ldctq::io::Result<impl std::fmt::Debug>, path: &Path, needle: &str) -> ReadError {
    let error = result.expect_err(&format!("{} should not be readable", path.display()));
    let message = error.to_string();
    let name = path.file_name().unwrap().to_string_lossy();
    assert!(message.contains(&*name), "{message:?} does not name {name}");
    assert!(message.contains(needle), "{message:?} does not contain {needle:?}");
    assert_eq!(error.path(), path);
    error
}

#[derive(Deserialize)]
struct Stats {
    shape: [usize; 3],
    min: f64,
    max: f64,
    mean: f64,
    std: f64,
    pixels: Vec<(usize, usize, f64)>,
}

#[test]
fn ct_small_hu_statistics_match_pydicom() {
    let stats: Stats =
        serde_json::from_str(&fs::read_to_string(fixture("ct_small_stats.json")).unwrap()).unwrap();
    let slices = read_dicom(ct_small()).unwrap();
    assert_eq!(slices.space, Some(Space::Hu));
    assert_eq!(slices.window, None);
    assert_eq!(slices.source, ct_small());
    let hu = &slices.pixels;
    assert_eq!(hu.shape(), stats.shape);
    let n = hu.len() as f64;
    let mean = hu.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let std = (hu.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n).sqrt();
    let min = hu.iter().fold(f32::INFINITY, |a, &b| a.min(b));
    let max = hu.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    assert_eq!((f64::from(min), f64::from(max)), (stats.min, stats.max));
    // f64 sums of the same integer HU values as numpy's, in another order: the mean within f64
    // rounding of n terms of size max |HU|; the std's squares add a rounding, and its error is the
    // variance's (terms up to (2 max |HU|)^2) over 2 std. Scalar f64 code: no kernel enters.
    let big = f64::from(max).max(-f64::from(min));
    let tol = common::rounding_tol(tch::Kind::Double, hu.len() as i64, 1, big);
    assert!((mean - stats.mean).abs() <= tol, "mean {mean} vs {}", stats.mean);
    let tol = common::rounding_tol(tch::Kind::Double, hu.len() as i64, 2, 2.0 * big * big / stats.std);
    assert!((std - stats.std).abs() <= tol, "std {std} vs {}", stats.std);
    for (row, col, value) in stats.pixels {
        assert_eq!(f64::from(hu[[0, row, col]]), value, "pixel ({row}, {col})");
    }
    // Dispatch by extension gives the same.
    assert_eq!(read_image(ct_small()).unwrap().pixels, slices.pixels);
}

#[derive(Deserialize)]
struct Fixtures {
    ok: Vec<Expected>,
    error: Vec<Failing>,
}

#[derive(Deserialize)]
struct Expected {
    file: String,
    expected: String,
    /// "Hu", "Unit", or "Raw" (values of unknown meaning: `None`).
    space: String,
    window: Option<Window>,
}

impl Expected {
    fn space(&self) -> Option<Space> {
        match self.space.as_str() {
            "Raw" => None,
            s => Some(s.parse().unwrap()),
        }
    }
}

#[derive(Deserialize)]
struct Failing {
    file: String,
    contains: String,
}

fn fixtures() -> Fixtures {
    serde_json::from_str(&fs::read_to_string(fixture("fixtures.json")).unwrap()).unwrap()
}

/// Reads every readable fixture whose name ends with `suffix` with `read` and with `read_image`,
/// and compares it exactly with its expected array; returns how many there were.
fn check_fixtures(suffix: &str, read: fn(&Path) -> ldctq::io::Result<ldctq::io::Slices>) -> usize {
    let mut count = 0;
    for f in fixtures().ok.into_iter().filter(|f| f.file.ends_with(suffix)) {
        let path = fixture(&f.file);
        let expected: Array3<f64> = ndarray_npy::read_npy(fixture(&f.expected)).unwrap();
        for slices in [read(&path).unwrap(), read_image(&path).unwrap()] {
            assert_eq!(slices.pixels, expected.mapv(|v| v as f32), "{}", f.file);
            assert_eq!(slices.space, f.space(), "{}", f.file);
            assert_eq!(slices.window, f.window, "{}", f.file);
        }
        count += 1;
    }
    count
}

#[test]
fn dicom_fixtures_match_expected() {
    // MONOCHROME1 signed 12-in-16 with junk high bits, 3 frames implicit VR, 8-bit, 32-bit shifted.
    assert_eq!(check_fixtures(".dcm", read_dicom), 4);
}

#[test]
fn tiff_fixtures_match_expected() {
    // f32 (tifffile, Pillow, deflate), f32 3 pages, f64, u8, u16, i16 2 pages.
    assert!(check_fixtures(".tif", read_tiff) >= 7);
}

#[test]
fn npy_fixtures_match_expected() {
    // Every accepted dtype; 2-, 3- and 4-D shapes; big-endian and Fortran order.
    assert_eq!(check_fixtures(".npy", read_npy), 11);
}

#[test]
fn multi_page_tiff_gives_one_frame_per_page() {
    let slices = read_tiff(&fixture("f32_3pages.tif")).unwrap();
    assert_eq!(slices.pixels.dim(), (3, 6, 8));
    assert_eq!(slices.space, Some(Space::Unit));
}

#[test]
fn error_fixtures_fail_with_clear_messages() {
    let failing = fixtures().error;
    assert_eq!(failing.len(), 8);
    for f in failing {
        let path = fixture(&f.file);
        assert_error(read_image(&path), &path, &f.contains);
    }
}

#[test]
fn float_tiff_round_trips_exactly() {
    let dir = TempDir::new();
    let path = dir.join("slice.tif");
    let image = Array2::from_shape_fn((7, 5), |(i, j)| (i * 5 + j) as f32 / 34.0 + 1e-7 * j as f32);
    write_tiff_f32(&path, &image.view()).unwrap();
    let slices = read_tiff(&path).unwrap();
    assert_eq!(slices.space, Some(Space::Unit));
    assert_eq!(slices.pixels.dim(), (1, 7, 5));
    assert_eq!(slices.pixels.index_axis(ndarray::Axis(0), 0), image);
    // A non-contiguous view is written in logical order.
    write_tiff_f32(&path, &image.t()).unwrap();
    assert_eq!(read_image(&path).unwrap().pixels.index_axis(ndarray::Axis(0), 0), image.t());
}

#[test]
fn png_u16_round_trips_within_one_step() {
    let dir = TempDir::new();
    let path = dir.join("slice.png");
    let image = Array2::from_shape_fn((9, 11), |(i, j)| ((i * 11 + j) as f32 * 0.0101).sin().abs());
    write_png_u16(&path, &image.view()).unwrap();
    let slices = read_png(&path).unwrap();
    assert_eq!(slices.space, Some(Space::Unit));
    assert_eq!(slices.pixels.dim(), (1, 9, 11));
    for (a, b) in slices.pixels.iter().zip(&image) {
        assert!((a - b).abs() <= 1.0 / 65535.0, "{a} vs {b}");
    }
    // Out-of-range values are clamped, NaN becomes 0.
    let odd = Array2::from_shape_vec((1, 4), vec![-0.5, 1.5, f32::NAN, 1.0]).unwrap();
    write_png_u16(&path, &odd.view()).unwrap();
    assert_eq!(read_image(&path).unwrap().pixels.into_raw_vec_and_offset().0, [0.0, 1.0, 0.0, 1.0]);
}

/// Writes an 8-bit PNG of `color` with the given raw samples.
fn write_png8(path: &Path, width: u32, height: u32, color: png::ColorType, data: &[u8]) {
    let mut encoder = png::Encoder::new(fs::File::create(path).unwrap(), width, height);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(data).unwrap();
    writer.finish().unwrap();
}

#[test]
fn png_gray_alpha_and_gray_rgb_are_read_as_gray() {
    let dir = TempDir::new();
    let gray = [0u8, 51, 102, 255, 1, 2];
    let expected: Vec<f32> = gray.iter().map(|&v| f32::from(v) / 255.0).collect();
    let cases: [(&str, png::ColorType, Vec<u8>); 4] = [
        ("gray.png", png::ColorType::Grayscale, gray.to_vec()),
        ("gray_alpha.png", png::ColorType::GrayscaleAlpha, gray.iter().flat_map(|&v| [v, 7]).collect()),
        ("rgb.png", png::ColorType::Rgb, gray.iter().flat_map(|&v| [v; 3]).collect()),
        ("rgba.PNG", png::ColorType::Rgba, gray.iter().flat_map(|&v| [v, v, v, 9]).collect()),
    ];
    for (name, color, data) in cases {
        let path = dir.join(name);
        write_png8(&path, 3, 2, color, &data);
        let slices = read_image(&path).unwrap();
        assert_eq!(slices.pixels.dim(), (1, 2, 3), "{name}");
        assert_eq!(slices.pixels.into_raw_vec_and_offset().0, expected, "{name}");
    }
}

#[test]
fn npy_written_arrays_read_back() {
    let dir = TempDir::new();
    for shape in [&[4, 3][..], &[2, 4, 3], &[2, 1, 4, 3]] {
        let n = shape.iter().product::<usize>();
        let array = ArrayD::from_shape_vec(shape, (0..n).map(|i| i as f32 * 0.5 - 2.5).collect()).unwrap();
        let path = dir.join(&format!("a{}.npy", shape.len()));
        write_npy_f32(&path, &array.view()).unwrap();
        let slices = read_npy(&path).unwrap();
        assert_eq!(slices.space, None);
        let frames = if shape.len() == 2 { 1 } else { shape[0] };
        assert_eq!(slices.pixels.dim(), (frames, 4, 3));
        assert_eq!(slices.pixels.into_raw_vec_and_offset().0, array.iter().copied().collect::<Vec<_>>());
    }
}

#[test]
fn extensions_are_case_insensitive_and_dicom_is_found_by_magic() {
    let dir = TempDir::new();
    let bytes = fs::read(fixture("mono1_s12.dcm")).unwrap();
    let expected = read_dicom(&fixture("mono1_s12.dcm")).unwrap().pixels;
    for name in ["UPPER.DCM", "x.Dicom", "IM000001", "1.2.826.0.1.3680043.8.498.3"] {
        fs::write(dir.join(name), &bytes).unwrap();
        assert_eq!(read_image(&dir.join(name)).unwrap().pixels, expected, "{name}");
    }
    fs::copy(fixture("f32.tif"), dir.join("F.TIFF")).unwrap();
    assert_eq!(read_image(&dir.join("F.TIFF")).unwrap().pixels.dim(), (1, 6, 8));
}

#[test]
fn truncated_dicom_is_an_error() {
    let dir = TempDir::new();
    let bytes = fs::read(ct_small()).unwrap();
    let path = dir.join("half.dcm");
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert_error(read_image(&path), &path, "truncated DICOM file");
}

#[test]
fn forged_dicom_length_is_refused_before_parsing() {
    let dir = TempDir::new();
    let mut bytes = fs::read(fixture("mono1_s12.dcm")).unwrap();
    let at = bytes.windows(8).position(|w| w == b"\xe0\x7f\x10\x00OW\0\0").expect("PixelData header");
    bytes[at + 8..at + 12].copy_from_slice(&0xF000_0000u32.to_le_bytes());
    let path = dir.join("forged.dcm");
    fs::write(&path, bytes).unwrap();
    assert_error(read_image(&path), &path, "element (7FE0,0010) at byte");
    assert_error(read_image(&path), &path, "declares 4026531840 bytes");
}

#[test]
fn random_bytes_dcm_is_not_dicom() {
    let dir = TempDir::new();
    let path = dir.join("noise.dcm");
    let noise: Vec<u8> = (0..1000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    fs::write(&path, noise).unwrap();
    assert_error(read_image(&path), &path, "not a DICOM file");
}

#[test]
fn empty_tiff_is_an_error() {
    let dir = TempDir::new();
    let path = dir.join("empty.tif");
    fs::write(&path, b"").unwrap();
    assert_error(read_image(&path), &path, "not a TIFF file: empty file");
}

#[test]
fn colour_png_is_an_error() {
    let dir = TempDir::new();
    let path = dir.join("colour.png");
    write_png8(&path, 2, 1, png::ColorType::Rgb, &[10, 10, 10, 10, 20, 10]);
    assert_error(read_image(&path), &path, "unsupported PNG colour image");
}

#[test]
fn five_dimensional_npy_is_an_error() {
    let dir = TempDir::new();
    let path = dir.join("stack5.npy");
    write_npy_f32(&path, &ArrayD::zeros(IxDyn(&[2, 1, 1, 3, 4])).view()).unwrap();
    assert_error(read_image(&path), &path, "unsupported NumPy shape [2, 1, 1, 3, 4]");
}

#[test]
fn unknown_extension_and_missing_file_are_errors() {
    let dir = TempDir::new();
    let path = dir.join("scan.jpg");
    fs::write(&path, b"\xff\xd8\xff").unwrap();
    let error = assert_error(read_image(&path), &path, "unknown image format; supported: DICOM");
    assert!(matches!(error, ReadError::UnknownFormat { .. }));
    let plain = dir.join("README");
    fs::write(&plain, b"not an image").unwrap();
    assert_error(read_image(&plain), &plain, "unknown image format");
    let missing = dir.join("missing.dcm");
    assert!(matches!(assert_error(read_image(&missing), &missing, ""), ReadError::Io { .. }));
    assert_error(list_images(&missing), &missing, "");
}

#[test]
fn npy_header_cannot_claim_more_data_than_the_file_has() {
    let dir = TempDir::new();
    let path = dir.join("forged.npy");
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000, 100000), }";
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16 + 1).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(b"\n\0\0\0\0");
    fs::write(&path, bytes).unwrap();
    assert_error(read_npy(&path), &path, "truncated NumPy file");
}

#[test]
fn list_images_sorts_files_and_dicom_series() {
    let dir = TempDir::new();
    // InstanceNumbers: multiframe_u16 1, u8 2, mono1_s12 3, s32_shifted 4.
    for (from, to) in [
        ("s32_shifted.dcm", "a.dcm"),
        ("multiframe_u16.dcm", "b.DCM"),
        ("mono1_s12.dcm", "z"),
        ("u16_3d.npy", "c.npy"),
        ("u8.tif", "d.tif"),
        ("u8.dcm", ".hidden.dcm"),
    ] {
        fs::copy(fixture(from), dir.join(to)).unwrap();
    }
    fs::write(dir.join("notes.txt"), b"text").unwrap();
    fs::write(dir.join("LICENSE"), b"text").unwrap();
    fs::create_dir(dir.join("sub.dcm")).unwrap();
    let names: Vec<String> = list_images(&dir.0)
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["c.npy", "d.tif", "b.DCM", "z", "a.dcm"]);
    let file = dir.join("c.npy");
    assert_eq!(list_images(&file).unwrap(), [file]);
}

/// Writes `bytes` under every supported extension and reads each with every reader; only checks
/// that nothing panics.
fn read_everything(dir: &TempDir, bytes: &[u8]) {
    for name in ["f.dcm", "f.tif", "f.npy", "f.png", "f"] {
        let path = dir.join(name);
        fs::write(&path, bytes).unwrap();
        let _ = read_image(&path);
    }
    let path = dir.join("f");
    let _ = (read_dicom(&path), read_tiff(&path), read_npy(&path), read_png(&path), list_images(&path));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_bytes_never_panic(magic in 0usize..5, tail in proptest::collection::vec(any::<u8>(), 0..700)) {
        let mut bytes = match magic {
            0 => Vec::new(),
            1 => [&[0u8; 128][..], b"DICM"].concat(),
            2 => b"II*\0".to_vec(),
            3 => b"\x89PNG\r\n\x1a\n".to_vec(),
            _ => b"\x93NUMPY\x01\x00".to_vec(),
        };
        bytes.extend(tail);
        read_everything(&TempDir::new(), &bytes);
    }

    #[test]
    fn corrupted_fixtures_never_panic(
        which in 0usize..7,
        keep in 0.0f64..1.5,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
    ) {
        let dir = TempDir::new();
        let mut bytes = match which {
            0 => fs::read(fixture("mono1_s12.dcm")).unwrap(),
            1 => fs::read(fixture("multiframe_u16.dcm")).unwrap(),
            2 => fs::read(fixture("f32_3pages.tif")).unwrap(),
            3 => fs::read(fixture("f32_deflate.tif")).unwrap(),
            4 => fs::read(fixture("f32_fortran_2d.npy")).unwrap(),
            5 => fs::read(fixture("i16_4d.npy")).unwrap(),
            _ => {
                let path = dir.join("g.png");
                write_png_u16(&path, &Array2::from_elem((5, 4), 0.25f32).view()).unwrap();
                fs::read(path).unwrap()
            }
        };
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= value;
        }
        // Keep everything half of the time, else cut the file short.
        bytes.truncate((bytes.len() as f64 * keep) as usize);
        read_everything(&dir, &bytes);
    }
}

/// pydicom-data's enhanced multi-frame CT eCT_Supplemental.dcm, in the `data_store` package of
/// `$LDCTQ_PYTHON` (default `.venv/bin/python`). Fails, rather than skips, when it is missing.
fn ect_supplemental() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let python = std::env::var_os("LDCTQ_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
        let code = "import os, data_store; \
                    print(os.path.join(os.path.dirname(data_store.__file__), 'data', 'eCT_Supplemental.dcm'))";
        let out = Command::new(&python).args(["-c", code]).output().unwrap_or_else(|e| {
            panic!("cannot run {} (set LDCTQ_PYTHON to a python with pydicom-data): {e}", python.display())
        });
        assert!(
            out.status.success(),
            "{} cannot locate pydicom-data's data_store (pip install pydicom-data): {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let path = PathBuf::from(String::from_utf8(out.stdout).expect("utf-8 path").trim());
        assert!(path.is_file(), "pydicom-data's eCT_Supplemental.dcm is missing: {}", path.display());
        path
    })
}

#[derive(Deserialize)]
struct FrameStats {
    min: f64,
    max: f64,
    mean: f64,
    pixels: Vec<(usize, usize, f64)>,
}

#[derive(Deserialize)]
struct EnhancedStats {
    shape: [usize; 3],
    window: Option<Window>,
    frames: Vec<FrameStats>,
}

#[test]
fn enhanced_ct_rescale_and_window_come_from_functional_groups() {
    // eCT_Supplemental.dcm has no top-level RescaleSlope/Intercept or window; its
    // SharedFunctionalGroupsSequence gives intercept -1024 and window 49/102.
    let stats: EnhancedStats =
        serde_json::from_str(&fs::read_to_string(fixture("ect_supplemental_stats.json")).unwrap()).unwrap();
    let slices = read_dicom(ect_supplemental()).unwrap();
    assert_eq!(slices.space, Some(Space::Hu));
    assert_eq!(slices.window, stats.window);
    assert_eq!(slices.pixels.shape(), stats.shape);
    assert_eq!(stats.frames.len(), stats.shape[0]);
    for (f, (frame, expected)) in slices.pixels.outer_iter().zip(&stats.frames).enumerate() {
        let mean = frame.iter().map(|&v| f64::from(v)).sum::<f64>() / frame.len() as f64;
        let min = frame.iter().fold(f32::INFINITY, |a, &b| a.min(b));
        let max = frame.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        assert_eq!((f64::from(min), f64::from(max)), (expected.min, expected.max), "frame {f}");
        // Each f32 HU value is raw * slope + intercept rounded to f32 (at most two roundings) where
        // pydicom keeps f64: the means differ by at most that rounding of max |HU|.
        let big = f64::from(max).max(-f64::from(min));
        assert!(
            (mean - expected.mean).abs() <= common::rounding_tol(tch::Kind::Float, 1, 2, big),
            "frame {f}: mean {mean} vs {}",
            expected.mean
        );
        for &(row, col, value) in &expected.pixels {
            assert_eq!(f64::from(frame[[row, col]]), value, "frame {f} pixel ({row}, {col})");
        }
    }
    assert_eq!(read_image(ect_supplemental()).unwrap().pixels, slices.pixels);
}
