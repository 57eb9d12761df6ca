//! The C ABI as a C caller sees it: the exported functions are called through the declarations of
//! `include/ldctq.h` (mirrored below). The crate has no rlib (its name would collide with the core
//! crate's), so this test compiles `src/lib.rs` in; `scripts/test_ffi.sh` drives the built
//! `libldctq.so` from C, C++ and Python.
//! Status codes, NULL handling, outputs left alone on failure, DLPack views (strides,
//! byte_offset, dtypes), the vector-Jacobian product against central differences, and threads.
#![allow(non_camel_case_types, clippy::missing_transmute_annotations)]
use std::ffi::{c_char, c_void, CStr, CString};
use std::path::PathBuf;

use std::ptr::{null, null_mut};
use std::sync::OnceLock;

// ---- declarations mirroring include/ldctq.h and include/dlpack.h --------------------------------

#[repr(C)]
#[derive(Clone, Copy)]
struct DLDevice {
    device_type: i32,
    device_id: i32,
}
#[repr(C)]
#[derive(Clone, Copy)]
struct DLDataType {
    code: u8,
    bits: u8,
    lanes: u16,
}
#[repr(C)]
struct DLTensor {
    data: *mut c_void,
    device: DLDevice,
    ndim: i32,
    dtype: DLDataType,
    shape: *mut i64,
    strides: *mut i64,
    byte_offset: u64,
}
#[repr(C)]
#[derive(Clone, Copy)]
struct Options {
    struct_size: u32,
    device_type: i32,
    device_id: i32,
    dtype: i32,
    num_threads: i32,
    override_film_strength: i32,
    film_strength: f64,
    prompt: *const c_char,
}
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
struct Info {
    struct_size: u32,
    input_space: i32,
    window_center: f64,
    window_width: f64,
    image_size: i64,
    score_min: f64,
    score_max: f64,
    higher_is_better: i32,
    device_type: i32,
    device_id: i32,
    dtype: i32,
    film_strength: f64,
}
enum Model {}

const OK: i32 = 0;
const NULL_ARGUMENT: i32 = 1;
const INVALID_ARGUMENT: i32 = 2;
const INVALID_UTF8: i32 = 3;
const UNSUPPORTED_DTYPE: i32 = 4;
const UNSUPPORTED_DEVICE: i32 = 5;
const SHAPE_MISMATCH: i32 = 7;
const NOT_FOUND: i32 = 8;
const INVALID_MODEL: i32 = 9;
const DTYPE_F64: i32 = 3;

#[allow(dead_code, unused_imports, clippy::all)]
#[path = "../src/lib.rs"]
mod ffi;

struct Api {
    abi_version: unsafe extern "C" fn() -> u32,
    version_string: unsafe extern "C" fn() -> *const c_char,
    status_string: unsafe extern "C" fn(i32) -> *const c_char,
    last_error: unsafe extern "C" fn() -> *const c_char,
    options_init: unsafe extern "C" fn(*mut Options),
    open: unsafe extern "C" fn(*const c_char, *const Options, *mut *mut Model) -> i32,
    free: unsafe extern "C" fn(*mut Model),
    info: unsafe extern "C" fn(*const Model, *mut Info) -> i32,
    set_prompt: unsafe extern "C" fn(*mut Model, *const c_char) -> i32,
    set_film_strength: unsafe extern "C" fn(*mut Model, f64) -> i32,
    score: unsafe extern "C" fn(*mut Model, *const f32, usize, usize, usize, *mut f64) -> i32,
    score_grad: unsafe extern "C" fn(
        *mut Model,
        *const f32,
        usize,
        usize,
        usize,
        *const f64,
        *mut f64,
        *mut f32,
    ) -> i32,
    set_checkpointing: unsafe extern "C" fn(*mut Model, u32) -> i32,
    score_dl: unsafe extern "C" fn(*mut Model, *const DLTensor, usize, *mut f64) -> i32,
    score_grad_dl:
        unsafe extern "C" fn(*mut Model, *const DLTensor, *const f64, usize, *mut f64, *mut DLTensor) -> i32,
}

fn api() -> &'static Api {
    static API: OnceLock<Api> = OnceLock::new();
    // SAFETY: each function has the C signature declared in Api (include/ldctq.h); the enum return
    // type ldctq_status is repr(i32).
    API.get_or_init(|| unsafe {
        macro_rules! sym {
            ($f:path) => {
                std::mem::transmute($f as *const ())
            };
        }
        Api {
            abi_version: sym!(ffi::ldctq_abi_version),
            version_string: sym!(ffi::ldctq_version_string),
            status_string: sym!(ffi::ldctq_status_string),
            last_error: sym!(ffi::ldctq_last_error_message),
            options_init: sym!(ffi::ldctq_model_options_init),
            open: sym!(ffi::ldctq_model_open),
            free: sym!(ffi::ldctq_model_free),
            info: sym!(ffi::ldctq_model_get_info),
            set_prompt: sym!(ffi::ldctq_set_prompt),
            set_film_strength: sym!(ffi::ldctq_set_film_strength),
            score: sym!(ffi::ldctq_score),
            score_grad: sym!(ffi::ldctq_score_grad),
            set_checkpointing: sym!(ffi::ldctq_set_activation_checkpointing),
            score_dl: sym!(ffi::ldctq_score_dlpack),
            score_grad_dl: sym!(ffi::ldctq_score_grad_dlpack),
        }
    })
}

fn last_error() -> String {
    unsafe { CStr::from_ptr((api().last_error)()) }.to_string_lossy().into_owned()
}

/// Asserts the status and that a failure left a message; returns the message.
fn expect_status(got: i32, want: i32, what: &str) -> String {
    let msg = last_error();
    assert_eq!(got, want, "{what}: status {got} (message {msg:?})");
    if want == OK {
        assert!(msg.is_empty(), "{what}: message after success: {msg:?}");
    } else {
        assert!(!msg.is_empty(), "{what}: no message");
    }
    println!("{what}: status {got}: {msg}");
    msg
}

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(rel)
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn default_options() -> Options {
    let mut o = std::mem::MaybeUninit::<Options>::zeroed();
    unsafe {
        (api().options_init)(o.as_mut_ptr());
        o.assume_init()
    }
}

/// An owned model handle.
struct Handle(*mut Model);
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}
impl Drop for Handle {
    fn drop(&mut self) {
        unsafe { (api().free)(self.0) }
    }
}

fn open(dir: &str, options: Option<&Options>) -> Handle {
    let path = c(fixture(dir).to_str().unwrap());
    let mut m = null_mut();
    let st = unsafe { (api().open)(path.as_ptr(), options.map_or(null(), |o| o as *const _), &mut m) };
    expect_status(st, OK, "open");
    assert!(!m.is_null());
    Handle(m)
}

/// Deterministic pseudo-random pixels in [0.1, 0.9].
fn pixels(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            0.1 + 0.8 * ((s >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

fn dl<T>(data: &mut [T], shape: &mut [i64], strides: Option<&mut [i64]>, code: u8, bits: u8) -> DLTensor {
    DLTensor {
        data: data.as_mut_ptr() as *mut c_void,
        device: DLDevice { device_type: 1, device_id: 0 },
        ndim: shape.len() as i32,
        dtype: DLDataType { code, bits, lanes: 1 },
        shape: shape.as_mut_ptr(),
        strides: strides.map_or(null_mut(), |s| s.as_mut_ptr()),
        byte_offset: 0,
    }
}

// ---- tests ---------------------------------------------------------------------------------------

#[test]
fn versions_and_status_strings() {
    let a = api();
    unsafe {
        assert_eq!((a.abi_version)(), 1 << 16);
        let v = CStr::from_ptr((a.version_string)()).to_str().unwrap();
        assert!(v.starts_with(&format!("ldctq {} ", env!("CARGO_PKG_VERSION"))), "{v}");
        for (code, text) in
            [(0, "ok"), (1, "null argument"), (3, "invalid UTF-8"), (255, "internal error (panic)")]
        {
            assert_eq!(CStr::from_ptr((a.status_string)(code)).to_str().unwrap(), text);
        }
        assert_eq!(CStr::from_ptr((a.status_string)(77)).to_str().unwrap(), "unknown status");
        assert_eq!(CStr::from_ptr((a.status_string)(-1)).to_str().unwrap(), "unknown status");
        let o = default_options();
        assert_eq!(o.struct_size as usize, std::mem::size_of::<Options>());
        assert_eq!((o.device_type, o.dtype, o.num_threads, o.override_film_strength), (1, 0, 0, 0));
        assert!(o.prompt.is_null());
        (a.options_init)(null_mut()); // ignored
        (a.free)(null_mut()); // ignored
    }
}

#[test]
fn null_arguments_and_bad_options() {
    let a = api();
    let path = c(fixture("quality/a_unit_seq").to_str().unwrap());
    let mut m: *mut Model = null_mut();
    unsafe {
        expect_status((a.open)(null(), null(), &mut m), NULL_ARGUMENT, "open(NULL path)");
        expect_status((a.open)(path.as_ptr(), null(), null_mut()), NULL_ARGUMENT, "open(NULL out)");
        let mut o = default_options();
        o.struct_size = 8;
        expect_status((a.open)(path.as_ptr(), &o, &mut m), INVALID_ARGUMENT, "struct_size 8");
        let mut o = default_options();
        o.dtype = 42;
        expect_status((a.open)(path.as_ptr(), &o, &mut m), UNSUPPORTED_DTYPE, "dtype 42");
        let mut o = default_options();
        o.device_type = 4; // kDLOpenCL
        expect_status((a.open)(path.as_ptr(), &o, &mut m), UNSUPPORTED_DEVICE, "OpenCL");
        let mut o = default_options();
        (o.device_type, o.device_id) = (2, 99);
        expect_status((a.open)(path.as_ptr(), &o, &mut m), UNSUPPORTED_DEVICE, "cuda:99");
        let mut o = default_options();
        (o.override_film_strength, o.film_strength) = (1, f64::NAN);
        expect_status((a.open)(path.as_ptr(), &o, &mut m), INVALID_ARGUMENT, "NaN film strength");
        let bad = [0x66u8, 0xff, 0xfe, 0];
        expect_status(
            (a.open)(bad.as_ptr() as *const c_char, null(), &mut m),
            INVALID_UTF8,
            "non-UTF-8 path",
        );
        let missing = c("/nonexistent/ldctq-model");
        expect_status((a.open)(missing.as_ptr(), null(), &mut m), NOT_FOUND, "missing folder");
        assert!(m.is_null(), "model_out written on failure");

        let x = pixels(16 * 16, 1);
        let mut s = [7.0f64];
        let mut g = vec![0f32; 256];
        expect_status(
            (a.score)(null_mut(), x.as_ptr(), 1, 16, 16, s.as_mut_ptr()),
            NULL_ARGUMENT,
            "score(NULL)",
        );
        expect_status((a.score_dl)(null_mut(), null(), 1, s.as_mut_ptr()), NULL_ARGUMENT, "score_dl(NULL)");
        let mut info = Info::default();
        expect_status((a.info)(null(), &mut info), NULL_ARGUMENT, "info(NULL)");
        let h = open("quality/a_unit_seq", None);
        expect_status((a.score)(h.0, null(), 1, 16, 16, s.as_mut_ptr()), NULL_ARGUMENT, "NULL images");
        expect_status((a.score)(h.0, x.as_ptr(), 1, 16, 16, null_mut()), NULL_ARGUMENT, "NULL scores_out");
        let st = (a.score_grad)(h.0, x.as_ptr(), 1, 16, 16, null(), s.as_mut_ptr(), null_mut());
        expect_status(st, NULL_ARGUMENT, "NULL grad_out");
        let st = (a.score_grad)(h.0, x.as_ptr(), 1, 16, 16, null(), null_mut(), g.as_mut_ptr());
        expect_status(st, OK, "score_grad with NULL scores_out");
        expect_status((a.set_prompt)(h.0, null()), NULL_ARGUMENT, "NULL prompt");
        expect_status((a.info)(h.0, null_mut()), NULL_ARGUMENT, "NULL info_out");
        info.struct_size = 4;
        expect_status((a.info)(h.0, &mut info), INVALID_ARGUMENT, "info struct_size 4");
        assert_eq!(s[0], 7.0, "scores_out written on failure");
    }
}

#[test]
fn corrupt_safetensors_is_an_invalid_model() {
    let dir = std::env::temp_dir().join(format!("ldctq-abi-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = std::fs::read_to_string(fixture("quality/a_unit_seq/ldctq.json")).unwrap();
    let backbone = fixture("siglip/tiny_a").canonicalize().unwrap();
    let json = json.replace("../../siglip/tiny_a", backbone.to_str().unwrap());
    std::fs::write(dir.join("ldctq.json"), json).unwrap();
    std::fs::write(dir.join("head.safetensors"), b"\xff\x00\x00\x00\x00\x00\x00\x00{not json").unwrap();
    let path = c(dir.to_str().unwrap());
    let mut m = null_mut();
    let msg = expect_status(unsafe { (api().open)(path.as_ptr(), null(), &mut m) }, INVALID_MODEL, "corrupt");
    assert!(msg.contains("head.safetensors"), "{msg}");
    std::fs::write(dir.join("ldctq.json"), "{").unwrap();
    expect_status(unsafe { (api().open)(path.as_ptr(), null(), &mut m) }, INVALID_MODEL, "bad ldctq.json");
    assert!(m.is_null());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn info_prompt_and_film_strength() {
    let a = api();
    let h = open("quality/a_unit_seq", None);
    let mut info = Info { struct_size: std::mem::size_of::<Info>() as u32, ..Default::default() };
    unsafe {
        expect_status((a.info)(h.0, &mut info), OK, "info");
        assert_eq!((info.input_space, info.image_size, info.higher_is_better), (0, 16, 1), "{info:?}");
        assert_eq!((info.score_min, info.score_max, info.device_type, info.dtype), (0.0, 4.0, 1, 0));
        assert_eq!((info.window_center, info.window_width, info.film_strength), (-300.0, 1400.0, 1.0));
        let x = pixels(2 * 20 * 24, 3);
        let mut before = [0f64; 2];
        let mut after = [0f64; 2];
        expect_status((a.score)(h.0, x.as_ptr(), 2, 20, 24, before.as_mut_ptr()), OK, "score");
        let bad = [b'a', 0xc3, 0x28, 0];
        expect_status(
            (a.set_prompt)(h.0, bad.as_ptr() as *const c_char),
            INVALID_UTF8,
            "invalid UTF-8 prompt",
        );
        let p = c("A sharp abdominal CT slice.");
        expect_status((a.set_prompt)(h.0, p.as_ptr()), OK, "set_prompt");
        expect_status((a.score)(h.0, x.as_ptr(), 2, 20, 24, after.as_mut_ptr()), OK, "score after prompt");
        assert_ne!(before, after, "the prompt changes the score at film strength 1");
        expect_status((a.set_film_strength)(h.0, f64::INFINITY), INVALID_ARGUMENT, "infinite film strength");
        expect_status((a.set_film_strength)(h.0, 0.0), OK, "film strength 0");
        expect_status((a.info)(h.0, &mut info), OK, "info");
        assert_eq!(info.film_strength, 0.0);
        // Options: the same prompt at open time gives the same scores.
        let mut o = default_options();
        o.prompt = p.as_ptr();
        let h2 = open("quality/a_unit_seq", Some(&o));
        let mut again = [0f64; 2];
        expect_status((a.score)(h2.0, x.as_ptr(), 2, 20, 24, again.as_mut_ptr()), OK, "score, prompt option");
        assert_eq!(after, again);
    }
}

#[test]
fn bad_images_return_statuses_and_leave_outputs_alone() {
    let a = api();
    let h = open("quality/a_unit_seq", None);
    let mut x = pixels(2 * 16 * 16, 5);
    let mut s = [7.0f64; 2];
    unsafe {
        expect_status((a.score)(h.0, x.as_ptr(), 0, 16, 16, s.as_mut_ptr()), INVALID_ARGUMENT, "n = 0");
        expect_status((a.score)(h.0, x.as_ptr(), 1, 0, 16, s.as_mut_ptr()), INVALID_ARGUMENT, "h = 0");
        let st = (a.score)(h.0, x.as_ptr(), usize::MAX / 2, 16, 16, s.as_mut_ptr());
        expect_status(st, INVALID_ARGUMENT, "n * h * w overflows");
        let st = (a.score)(h.0, x.as_ptr(), 1 << 21, 1 << 21, 1 << 21, s.as_mut_ptr());
        expect_status(st, INVALID_ARGUMENT, "n * h * w overflows (2^63)");
        x[17] = f32::NAN;
        let msg =
            expect_status((a.score)(h.0, x.as_ptr(), 2, 16, 16, s.as_mut_ptr()), INVALID_ARGUMENT, "NaN");
        assert!(msg.contains("NaN"), "{msg}");
        x[17] = f32::INFINITY;
        expect_status((a.score)(h.0, x.as_ptr(), 2, 16, 16, s.as_mut_ptr()), INVALID_ARGUMENT, "Inf");
        x[17] = 0.5;
        let u = [1.0, f64::NAN];
        let mut g = vec![5f32; x.len()];
        let st = (a.score_grad)(h.0, x.as_ptr(), 2, 16, 16, u.as_ptr(), s.as_mut_ptr(), g.as_mut_ptr());
        expect_status(st, INVALID_ARGUMENT, "NaN upstream");
        assert_eq!(s, [7.0; 2], "scores_out written on failure");
        assert!(g.iter().all(|&v| v == 5.0), "grad_out written on failure");

        // DLPack headers.
        let mut shape = [2i64, 16, 16];
        let mut t = dl(&mut x, &mut shape, None, 0, 32); // int32
        expect_status((a.score_dl)(h.0, &t, 2, s.as_mut_ptr()), UNSUPPORTED_DTYPE, "int32");
        t.dtype = DLDataType { code: 2, bits: 32, lanes: 4 };
        expect_status((a.score_dl)(h.0, &t, 2, s.as_mut_ptr()), UNSUPPORTED_DTYPE, "float32x4");
        t.dtype = DLDataType { code: 2, bits: 32, lanes: 1 };
        t.device = DLDevice { device_type: 4, device_id: 0 };
        expect_status((a.score_dl)(h.0, &t, 2, s.as_mut_ptr()), UNSUPPORTED_DEVICE, "kDLOpenCL");
        t.device = DLDevice { device_type: 2, device_id: 99 };
        expect_status((a.score_dl)(h.0, &t, 2, s.as_mut_ptr()), UNSUPPORTED_DEVICE, "kDLCUDA 99");
        t.device = DLDevice { device_type: 1, device_id: 0 };
        expect_status((a.score_dl)(h.0, &t, 3, s.as_mut_ptr()), SHAPE_MISMATCH, "n != N");
        t.ndim = 2;
        expect_status((a.score_dl)(h.0, &t, 2, s.as_mut_ptr()), SHAPE_MISMATCH, "ndim 2");
        t.ndim = 3;
        t.shape = null_mut();
        expect_status((a.score_dl)(h.0, &t, 2, s.as_mut_ptr()), NULL_ARGUMENT, "NULL shape");
        t.shape = shape.as_mut_ptr();
        t.data = null_mut();
        expect_status((a.score_dl)(h.0, &t, 2, s.as_mut_ptr()), NULL_ARGUMENT, "NULL data");
        t.data = x.as_mut_ptr() as *mut c_void;
        let mut neg = [256i64, -16, 1];
        t.strides = neg.as_mut_ptr();
        expect_status((a.score_dl)(h.0, &t, 2, s.as_mut_ptr()), INVALID_ARGUMENT, "negative stride");
        let mut huge = [i64::MAX / 2, 16, 1];
        t.strides = huge.as_mut_ptr();
        expect_status((a.score_dl)(h.0, &t, 2, s.as_mut_ptr()), INVALID_ARGUMENT, "stride overflow");
        t.strides = null_mut();
        let mut g = vec![0f32; x.len()];
        let mut gshape = [2i64, 16, 15];
        let mut gt = dl(&mut g, &mut gshape, None, 2, 32);
        let st = (a.score_grad_dl)(h.0, &t, null(), 2, s.as_mut_ptr(), &mut gt);
        expect_status(st, SHAPE_MISMATCH, "grad_out shape");
        let mut gshape = [2i64, 16, 16];
        let mut gt = dl(&mut g, &mut gshape, None, 2, 32);
        let mut overlapping = [0i64, 16, 1];
        gt.strides = overlapping.as_mut_ptr();
        let st = (a.score_grad_dl)(h.0, &t, null(), 2, s.as_mut_ptr(), &mut gt);
        expect_status(st, INVALID_ARGUMENT, "overlapping grad_out");
        assert_eq!(s, [7.0; 2], "scores_out written on failure");
    }
}

#[test]
fn dlpack_views_agree_with_the_host_path() {
    let a = api();
    let h = open("quality/a_unit_seq", None);
    let (n, hh, ww) = (3usize, 20usize, 24usize);
    let mut x = pixels(n * hh * ww, 9);
    let mut host = vec![0f64; n];
    unsafe {
        expect_status((a.score)(h.0, x.as_ptr(), n, hh, ww, host.as_mut_ptr()), OK, "host");
        // Contiguous float32, (N, 1, H, W).
        let mut shape4 = [n as i64, 1, hh as i64, ww as i64];
        let t = dl(&mut x, &mut shape4, None, 2, 32);
        let mut s = vec![0f64; n];
        expect_status((a.score_dl)(h.0, &t, n, s.as_mut_ptr()), OK, "dlpack NCHW");
        assert_eq!(s, host);
        // Transposed storage (W, H, N order in memory) with a byte_offset: a strided view.
        let pad = 5usize;
        let mut xt = vec![-1f32; pad + n * hh * ww];
        for i in 0..n {
            for r in 0..hh {
                for col in 0..ww {
                    xt[pad + col * hh * n + r * n + i] = x[i * hh * ww + r * ww + col];
                }
            }
        }
        let mut shape = [n as i64, hh as i64, ww as i64];
        let mut strides = [1i64, n as i64, (hh * n) as i64];
        let mut t = dl(&mut xt, &mut shape, Some(&mut strides), 2, 32);
        t.byte_offset = (pad * 4) as u64;
        expect_status((a.score_dl)(h.0, &t, n, s.as_mut_ptr()), OK, "dlpack strided + byte_offset");
        for (a, b) in s.iter().zip(&host) {
            assert!((a - b).abs() < 1e-6, "{s:?} vs {host:?}");
        }
        // float64 and float16 / bfloat16 inputs.
        let mut x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let mut shape = [n as i64, hh as i64, ww as i64];
        let t = dl(&mut x64, &mut shape, None, 2, 64);
        expect_status((a.score_dl)(h.0, &t, n, s.as_mut_ptr()), OK, "float64");
        for (a, b) in s.iter().zip(&host) {
            assert!((a - b).abs() < 1e-6, "{s:?} vs {host:?}");
        }
        let mut x16: Vec<u16> = x.iter().map(|&v| (v.to_bits() >> 16) as u16).collect(); // bf16 truncation
        let t = dl(&mut x16, &mut shape, None, 4, 16);
        expect_status((a.score_dl)(h.0, &t, n, s.as_mut_ptr()), OK, "bfloat16");
        for (a, b) in s.iter().zip(&host) {
            assert!((a - b).abs() < 0.05, "bf16 {s:?} vs {host:?}");
        }
        // The gradient into a strided float64 grad_out equals the host float32 gradient.
        let mut g = vec![0f32; n * hh * ww];
        let st = (a.score_grad)(h.0, x.as_ptr(), n, hh, ww, null(), s.as_mut_ptr(), g.as_mut_ptr());
        expect_status(st, OK, "host grad");
        assert_eq!(s, host, "score_grad scores == score scores");
        let mut gt_buf = vec![0f64; n * hh * ww];
        let mut gshape = [n as i64, hh as i64, ww as i64];
        let mut gstrides = [1i64, n as i64, (hh * n) as i64];
        let mut gt = dl(&mut gt_buf, &mut gshape, Some(&mut gstrides), 2, 64);
        let xt_view = dl(&mut x, &mut shape, None, 2, 32);
        let st = (a.score_grad_dl)(h.0, &xt_view, null(), n, null_mut(), &mut gt);
        expect_status(st, OK, "dlpack grad into strided f64");
        for i in 0..n {
            for r in 0..hh {
                for col in 0..ww {
                    let want = g[i * hh * ww + r * ww + col] as f64;
                    let got = gt_buf[col * hh * n + r * n + i];
                    assert!((got - want).abs() <= 1e-6 * (1.0 + want.abs()), "grad {got} vs {want}");
                }
            }
        }
    }
}

#[test]
fn gradient_is_a_vjp_matching_central_differences_in_f64() {
    let a = api();
    let mut o = default_options();
    o.dtype = DTYPE_F64;
    let h = open("quality/a_unit_seq", Some(&o));
    let (n, hh, ww) = (2usize, 12usize, 20usize);
    let mut x: Vec<f64> = pixels(n * hh * ww, 11).iter().map(|&v| v as f64).collect();
    let mut shape = [n as i64, hh as i64, ww as i64];
    let u = [0.7f64, -1.3];
    let mut g = vec![0f64; x.len()];
    let mut s = vec![0f64; n];
    unsafe {
        let mut gshape = shape;
        let t = dl(&mut x, &mut shape, None, 2, 64);
        let mut gt = dl(&mut g, &mut gshape, None, 2, 64);
        let st = (a.score_grad_dl)(h.0, &t, u.as_ptr(), n, s.as_mut_ptr(), &mut gt);
        expect_status(st, OK, "f64 vjp");
        let objective = |x: &mut Vec<f64>| {
            let mut shape = [n as i64, hh as i64, ww as i64];
            let t = dl(x, &mut shape, None, 2, 64);
            let mut s = vec![0f64; n];
            assert_eq!((a.score_dl)(h.0, &t, n, s.as_mut_ptr()), OK);
            s[0] * u[0] + s[1] * u[1]
        };
        let eps = 1e-6;
        let mut worst = 0f64;
        for k in [0, 17, 100, 239, 250, 479] {
            let x0 = x[k];
            x[k] = x0 + eps;
            let plus = objective(&mut x);
            x[k] = x0 - eps;
            let minus = objective(&mut x);
            x[k] = x0;
            let fd = (plus - minus) / (2.0 * eps);
            let err = (fd - g[k]).abs() / (g[k].abs().max(1e-3));
            println!("pixel {k}: vjp {:.9e}, central difference {fd:.9e}, rel err {err:.2e}", g[k]);
            worst = worst.max(err);
        }
        assert!(worst < 1e-5, "worst relative error {worst:e}");
        // Linearity in upstream: vjp(u) == u0 * vjp(e0) + u1 * vjp(e1).
        let mut g0 = vec![0f64; x.len()];
        let mut g1 = vec![0f64; x.len()];
        for (e, out) in [([1.0, 0.0], &mut g0), ([0.0, 1.0], &mut g1)] {
            let mut shape = [n as i64, hh as i64, ww as i64];
            let mut gshape = shape;
            let t = dl(&mut x, &mut shape, None, 2, 64);
            let mut gt = dl(out, &mut gshape, None, 2, 64);
            assert_eq!((a.score_grad_dl)(h.0, &t, e.as_ptr(), n, null_mut(), &mut gt), OK);
        }
        for k in 0..x.len() {
            let want = u[0] * g0[k] + u[1] * g1[k];
            assert!(
                (g[k] - want).abs() <= 1e-12 + 1e-12 * want.abs(),
                "linearity at {k}: {} vs {want}",
                g[k]
            );
        }
        // Activation checkpointing (one layer per segment) gives the same product.
        expect_status((a.set_checkpointing)(null_mut(), 1), NULL_ARGUMENT, "null model");
        expect_status((a.set_checkpointing)(h.0, 1), OK, "checkpointing on");
        let mut gc = vec![0f64; x.len()];
        let mut sc = vec![0f64; n];
        let mut gshape = shape;
        let t = dl(&mut x, &mut shape, None, 2, 64);
        let mut gt = dl(&mut gc, &mut gshape, None, 2, 64);
        expect_status(
            (a.score_grad_dl)(h.0, &t, u.as_ptr(), n, sc.as_mut_ptr(), &mut gt),
            OK,
            "checkpointed vjp",
        );
        assert_eq!(sc, s);
        let worst = g.iter().zip(&gc).map(|(a, b)| (a - b).abs()).fold(0f64, f64::max);
        assert!(worst <= 1e-12, "checkpointed gradient differs by {worst:e}");
    }
}

#[test]
fn threads_share_one_model_and_run_separate_models() {
    let h = std::sync::Arc::new(open("quality/a_unit_seq", None));
    let x = pixels(2 * 16 * 16, 21);
    let mut want = [0f64; 2];
    unsafe { expect_status((api().score)(h.0, x.as_ptr(), 2, 16, 16, want.as_mut_ptr()), OK, "score") };
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let h = h.clone();
            let x = x.clone();
            std::thread::spawn(move || {
                // Even threads use the shared model, odd ones their own.
                let own = (i % 2 == 1).then(|| open("quality/a_unit_seq", None));
                let m = own.as_ref().map_or(h.0, |o| o.0);
                for _ in 0..3 {
                    let mut s = [0f64; 2];
                    let mut g = vec![0f32; x.len()];
                    let st = unsafe {
                        (api().score_grad)(m, x.as_ptr(), 2, 16, 16, null(), s.as_mut_ptr(), g.as_mut_ptr())
                    };
                    assert_eq!(st, OK, "{}", last_error());
                    assert!(s.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6), "{s:?} vs {want:?}");
                }
                // The last error is per thread.
                let st = unsafe { (api().score)(m, x.as_ptr(), 0, 16, 16, null_mut()) };
                assert_ne!(st, OK);
                last_error()
            })
        })
        .collect();
    for t in threads {
        assert!(!t.join().unwrap().is_empty());
    }
    assert!(last_error().is_empty(), "another thread's error leaked here: {}", last_error());
}
