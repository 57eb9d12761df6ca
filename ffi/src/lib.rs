//! C ABI of ldctq: `libldctq.so` / `libldctq.a`, described by `include/ldctq.h` (generated from this
//! crate by cbindgen; `tests/header.rs` regenerates it and fails when the committed one differs).
//!
//! Thin translation only. Every entry point has the same shape: `ffi_boundary` (panics and libtorch
//! errors become a status and a thread-local message), NULL checks, the call into the core crate,
//! then the outputs, written only on success. The contract shared by all functions (ownership,
//! threads, CUDA) is in the header's preamble, `cbindgen.toml`; what each function needs from its
//! pointers is in its `# Safety` section, copied into the header with the rest of its doc.
#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod dlpack;
pub mod error;

use dlpack::{tensor_view, DLDataType, DLDevice, DLTensor, KDL_CPU, KDL_CUDA, KDL_FLOAT};
pub use error::ldctq_status;
use error::{ffi_boundary, ffi_boundary_void, non_null, utf8_arg, FfiError, FfiResult};
use ldctq::{MapMethod, Placement, QualityCriterion, Scorer, Space};
use std::ffi::{c_char, CStr};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use tch::{Device, Kind, Tensor};

/// Major version of the C ABI: changes when a function, struct or enum value changes incompatibly.
/// The soname is `libldctq.so.<major>` (ffi/build.rs reads this constant from ffi/src/lib.rs).
pub const LDCTQ_ABI_VERSION_MAJOR: u32 = 1;
/// Minor version of the C ABI: grows when functions, struct fields (at the end) or status codes are
/// added.
pub const LDCTQ_ABI_VERSION_MINOR: u32 = 1;

/// `ldctq_version_string()`, e.g. "ldctq 0.1.0 (C ABI 1.1; tch 0.24.0; libtorch 2.11.0+cu130)":
/// assembled at compile time from the package version, the ABI constants above, and the tch and
/// libtorch versions that `build.rs` read (Cargo.lock's tch entry, the libtorch torch-sys built
/// against).
const VERSION: &CStr = {
    const TEXT: version::Text = version::Text::new()
        .str("ldctq ")
        .str(env!("CARGO_PKG_VERSION"))
        .str(" (C ABI ")
        .num(LDCTQ_ABI_VERSION_MAJOR)
        .str(".")
        .num(LDCTQ_ABI_VERSION_MINOR)
        .str("; tch ")
        .str(env!("LDCTQ_TCH_VERSION"))
        .str("; libtorch ")
        .str(env!("LDCTQ_LIBTORCH_VERSION"))
        .str(")");
    match CStr::from_bytes_until_nul(&TEXT.bytes) {
        Ok(s) => s,
        Err(_) => panic!("the version string fills its buffer"),
    }
};

/// A string built in a `const` (no allocation, no formatting machinery): pieces appended to a
/// zero-filled buffer, which therefore stays NUL-terminated. Too long a text fails to compile.
mod version {
    pub struct Text {
        pub bytes: [u8; 128],
        len: usize,
    }

    impl Text {
        pub const fn new() -> Self {
            Self { bytes: [0; 128], len: 0 }
        }

        pub const fn str(mut self, s: &str) -> Self {
            let s = s.as_bytes();
            let mut i = 0;
            while i < s.len() {
                assert!(s[i] != 0 && self.len + 1 < self.bytes.len(), "NUL in, or too long a version string");
                self.bytes[self.len] = s[i];
                self.len += 1;
                i += 1;
            }
            self
        }

        pub const fn num(mut self, mut n: u32) -> Self {
            let mut digits = [0u8; 10];
            let mut k = 0;
            loop {
                digits[k] = b'0' + (n % 10) as u8;
                k += 1;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            while k > 0 {
                k -= 1;
                assert!(self.len + 1 < self.bytes.len(), "too long a version string");
                self.bytes[self.len] = digits[k];
                self.len += 1;
            }
            self
        }
    }
}

/// Precision in which a model holds its weights and computes.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ldctq_dtype {
    Float32 = 0,
    Bfloat16 = 1,
    Float16 = 2,
    /// Double precision (slow; meant for gradient checks).
    Float64 = 3,
}

/// What the pixel values given to a model mean.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ldctq_input_space {
    /// Images already windowed to [0, 1] (LDCTIQA2023-style).
    Unit = 0,
    /// Hounsfield units, windowed by the model with `window_center` / `window_width`.
    Hu = 1,
}

/// How `ldctq_quality_map` locates quality loss (every map is high where quality is lost).
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ldctq_map_method {
    /// Model-intrinsic: 4 minus each patch's score (the patch token through the local and texture
    /// heads, fused with the slice's global head), upsampled bilinearly; in [0, 4].
    Intrinsic = 0,
    /// Gradient: |d score / d image|, smoothed by a Gaussian of (h + w) / 128 pixels.
    Gradient = 1,
}

/// Options of `ldctq_model_open`. Fill with `ldctq_model_options_init`, then change fields.
/// A NULL options pointer means the defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ldctq_model_options {
    /// `sizeof(ldctq_model_options)` as compiled by the caller (set by `ldctq_model_options_init`).
    pub struct_size: u32,
    /// DLPack device type of the weights: `kDLCPU` (default; 0 is taken as CPU too) or `kDLCUDA`.
    pub device_type: i32,
    /// CUDA device index (ignored for CPU).
    pub device_id: i32,
    /// An `ldctq_dtype` (default `LDCTQ_DTYPE_FLOAT32`).
    pub dtype: i32,
    /// If > 0, the number of libtorch intra-op CPU threads. This is process-wide (it changes every
    /// model in the process); 0 (default) leaves libtorch's setting.
    pub num_threads: i32,
    /// Nonzero: use `film_strength` instead of the model folder's FiLM strength.
    pub override_film_strength: i32,
    /// FiLM strength s (0 disables the prompt), used when `override_film_strength` is nonzero.
    pub film_strength: f64,
    /// NULL (default) or a UTF-8 prompt replacing the model folder's. Copied during the call.
    pub prompt: *const c_char,
}

impl Default for ldctq_model_options {
    fn default() -> Self {
        Self {
            struct_size: std::mem::size_of::<Self>() as u32,
            device_type: KDL_CPU,
            device_id: 0,
            dtype: ldctq_dtype::Float32 as i32,
            num_threads: 0,
            override_film_strength: 0,
            film_strength: 1.0,
            prompt: std::ptr::null(),
        }
    }
}

/// What a model computes and expects (`ldctq_model_get_info`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ldctq_model_info {
    /// Set by the caller to `sizeof(ldctq_model_info)`; left unchanged.
    pub struct_size: u32,
    /// An `ldctq_input_space`: what the pixel values must mean.
    pub input_space: i32,
    /// HU window (center, width): applied to HU input, or the one [0, 1] input was made with.
    pub window_center: f64,
    pub window_width: f64,
    /// Images of any H x W are resized (differentiably) to image_size x image_size.
    pub image_size: i64,
    /// Range of the score (0 and 4).
    pub score_min: f64,
    pub score_max: f64,
    /// Always 1: a higher score is a better image.
    pub higher_is_better: i32,
    /// Where the weights are: DLPack device type and index.
    pub device_type: i32,
    pub device_id: i32,
    /// An `ldctq_dtype`: the weights' precision.
    pub dtype: i32,
    /// Current FiLM strength s.
    pub film_strength: f64,
}

/// A loaded quality model, or an ensemble of models (opaque). Calls on one model are serialized by
/// an internal mutex; separate models run concurrently.
pub struct ldctq_model {
    model: Mutex<Scorer>,
}

impl ldctq_model {
    /// The model, serialized. A panic in an earlier call (already reported as a status) poisons the
    /// mutex; the model's state is only written after its fallible work succeeds, so it is reused.
    fn lock(&self) -> MutexGuard<'_, Scorer> {
        self.model.lock().unwrap_or_else(|poisoned| {
            self.model.clear_poison();
            poisoned.into_inner()
        })
    }
}

fn kind_of_dtype(dtype: i32) -> FfiResult<Kind> {
    Ok(match dtype {
        x if x == ldctq_dtype::Float32 as i32 => Kind::Float,
        x if x == ldctq_dtype::Bfloat16 as i32 => Kind::BFloat16,
        x if x == ldctq_dtype::Float16 as i32 => Kind::Half,
        x if x == ldctq_dtype::Float64 as i32 => Kind::Double,
        x => return Err(FfiError::dtype(format!("options.dtype {x} (expected an ldctq_dtype value)"))),
    })
}

fn dtype_of_kind(kind: Kind) -> ldctq_dtype {
    match kind {
        Kind::BFloat16 => ldctq_dtype::Bfloat16,
        Kind::Half => ldctq_dtype::Float16,
        Kind::Double => ldctq_dtype::Float64,
        _ => ldctq_dtype::Float32,
    }
}

/// Options from the caller's struct (defaults for NULL), after checking `struct_size`.
///
/// # Safety
/// `p` is NULL or points to readable memory holding an `ldctq_model_options` of `struct_size` bytes
/// (`ldctq_model_open`'s contract). Only `struct_size` is read before it is checked.
unsafe fn read_options(p: *const ldctq_model_options) -> FfiResult<ldctq_model_options> {
    if p.is_null() {
        return Ok(ldctq_model_options::default());
    }
    // SAFETY: p is not NULL and points to a struct that starts with its u32 struct_size (contract
    // above); only that field is read.
    let size = unsafe { (*p).struct_size };
    let v1 = std::mem::size_of::<ldctq_model_options>();
    if (size as usize) < v1 {
        return Err(FfiError::invalid(format!(
            "options->struct_size is {size} but this library needs at least {v1}: call ldctq_model_options_init"
        )));
    }
    // SAFETY: the caller's struct has struct_size >= v1 readable bytes, so the v1 fields this
    // version knows (a newer caller's larger struct starts with them) can be read; all are plain
    // integers, a double and a pointer, valid for any bits.
    Ok(unsafe { p.read() })
}

/// Scores (N) of any device and dtype as host doubles, checked against the caller's length.
fn host_scores(scores: &Tensor, n: usize) -> FfiResult<Vec<f64>> {
    let host = scores.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?.f_contiguous()?;
    let v = Vec::<f64>::try_from(&host)?;
    if v.len() != n {
        return Err(FfiError::new(ldctq_status::Backend, format!("{} scores for {n} images", v.len())));
    }
    Ok(v)
}

/// Waits for the queued work of `device` (v1 calls are synchronous).
fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn check_batch(images: &Tensor, n: usize) -> FfiResult<()> {
    let batch = images.size()[0];
    if usize::try_from(batch).ok() != Some(n) {
        return Err(FfiError::shape(format!("n is {n} but images has {batch} images")));
    }
    Ok(())
}

/// The model and a checked view of the `n` images: the first steps of every scoring call.
///
/// # Safety
/// `model` is NULL or a live handle, and `images` is NULL or a valid DLTensor (as
/// `ldctq_score_dlpack` requires), both for `'a`; the returned tensor borrows the images' memory and
/// must be dropped before the call returns.
unsafe fn model_and_images<'a>(
    model: *mut ldctq_model,
    images: *const DLTensor,
    n: usize,
) -> FfiResult<(&'a ldctq_model, Tensor)> {
    // SAFETY: model is NULL or a live handle for 'a (contract above); only shared access is taken,
    // the mutex inside serializes the calls.
    let model = unsafe { non_null(model, "model") }?;
    // SAFETY: images is NULL (an error) or a valid DLTensor whose memory outlives the view (above).
    let x = unsafe { tensor_view(images, "images", false) }?;
    check_batch(&x, n)?;
    Ok((model, x))
}

/// Shared body of `ldctq_score` / `ldctq_score_dlpack`.
///
/// # Safety
/// As `ldctq_score_dlpack`: `model` NULL or live, `images` NULL or a valid DLTensor, `scores_out`
/// NULL or writable for `n` doubles.
unsafe fn score(
    model: *mut ldctq_model,
    images: *const DLTensor,
    n: usize,
    scores_out: *mut f64,
) -> FfiResult<()> {
    if scores_out.is_null() {
        return Err(FfiError::null("scores_out"));
    }
    // SAFETY: forwarded from this function's contract.
    let (model, x) = unsafe { model_and_images(model, images, n) }?;
    let scores = {
        let m = model.lock();
        tch::no_grad(|| m.score(&x))?
    };
    let v = host_scores(&scores, n)?;
    // SAFETY: scores_out is not NULL and is writable for n doubles (contract); no Rust reference
    // to that memory exists (the images are only read through libtorch).
    unsafe { std::slice::from_raw_parts_mut(scores_out, n) }.copy_from_slice(&v);
    Ok(())
}

/// Shared body of `ldctq_score_grad` / `ldctq_score_grad_dlpack`.
///
/// # Safety
/// As `ldctq_score_grad_dlpack`: `model` NULL or live; `images` and `grad_out` NULL or valid
/// DLTensors, `grad_out`'s memory writable; `upstream` NULL or readable for `n` doubles;
/// `scores_out` NULL or writable for `n` doubles.
unsafe fn score_grad(
    model: *mut ldctq_model,
    images: *const DLTensor,
    upstream: *const f64,
    n: usize,
    scores_out: *mut f64,
    grad_out: *mut DLTensor,
) -> FfiResult<()> {
    if grad_out.is_null() {
        return Err(FfiError::null("grad_out"));
    }
    // SAFETY: forwarded from this function's contract.
    let (model, x) = unsafe { model_and_images(model, images, n) }?;
    // SAFETY: grad_out is a valid DLTensor over writable memory that outlives the view (contract);
    // `writable` rejects strides that would write one element twice.
    let mut out = unsafe { tensor_view(grad_out, "grad_out", true) }?;
    if out.size() != x.size() {
        return Err(FfiError::shape(format!("grad_out has shape {:?}, images {:?}", out.size(), x.size())));
    }
    let u = match upstream.is_null() {
        true => None,
        // SAFETY: upstream is not NULL and readable for n doubles (contract); the tensor copies them.
        false => Some(Tensor::f_from_slice(unsafe { std::slice::from_raw_parts(upstream, n) })?),
    };
    let (scores, grad) = {
        let m = model.lock();
        tch::with_grad(|| m.score_and_grad(&x, u.as_ref()))?
    };
    let v = host_scores(&scores, n)?;
    tch::no_grad(|| out.f_copy_(&grad))?; // casts to grad_out's dtype and device
    sync(out.device());
    if !scores_out.is_null() {
        // SAFETY: scores_out is not NULL and writable for n doubles (contract); no Rust reference
        // to that memory exists.
        unsafe { std::slice::from_raw_parts_mut(scores_out, n) }.copy_from_slice(&v);
    }
    Ok(())
}

/// Shared body of `ldctq_quality_map` / `ldctq_quality_map_dlpack`.
///
/// # Safety
/// As `ldctq_quality_map_dlpack`: `model` NULL or live; `images` and `maps_out` NULL or valid
/// DLTensors, `maps_out`'s memory writable.
unsafe fn quality_map(
    model: *mut ldctq_model,
    images: *const DLTensor,
    n: usize,
    method: i32,
    maps_out: *mut DLTensor,
) -> FfiResult<()> {
    let method = match method {
        m if m == ldctq_map_method::Intrinsic as i32 => MapMethod::Intrinsic,
        m if m == ldctq_map_method::Gradient as i32 => MapMethod::Gradient,
        m => return Err(FfiError::invalid(format!("map method {m} (expected 0 intrinsic or 1 gradient)"))),
    };
    if maps_out.is_null() {
        return Err(FfiError::null("maps_out"));
    }
    // SAFETY: forwarded from this function's contract.
    let (model, x) = unsafe { model_and_images(model, images, n) }?;
    // SAFETY: maps_out is a valid DLTensor over writable memory that outlives the view (contract);
    // `writable` rejects strides that would write one element twice.
    let mut out = unsafe { tensor_view(maps_out, "maps_out", true) }?;
    let size = x.size();
    let (h, w) = (size[size.len() - 2], size[size.len() - 1]);
    if out.numel() != x.numel() || out.size()[0] != size[0] || out.size()[out.dim() - 2..] != [h, w] {
        return Err(FfiError::shape(format!(
            "maps_out has shape {:?}, expected [{}, {h}, {w}] for images {size:?}",
            out.size(),
            size[0]
        )));
    }
    let maps = {
        let m = model.lock();
        m.quality_map(&x, method)?
    };
    tch::no_grad(|| out.f_copy_(&maps.f_reshape(out.size())?))?; // casts to maps_out's dtype and device
    sync(out.device());
    Ok(())
}

/// A DLTensor header over a caller's contiguous float32 N x H x W host buffer.
fn host_tensor(data: *const f32, shape: &mut [i64; 3], name: &str) -> FfiResult<DLTensor> {
    if data.is_null() {
        return Err(FfiError::null(name));
    }
    Ok(DLTensor {
        data: data as *mut _,
        device: DLDevice { device_type: KDL_CPU, device_id: 0 },
        ndim: 3,
        dtype: DLDataType { code: KDL_FLOAT, bits: 32, lanes: 1 },
        shape: shape.as_mut_ptr(),
        strides: std::ptr::null_mut(),
        byte_offset: 0,
    })
}

/// [n, h, w] as i64, after checking that all are > 0 and that n * h * w * 4 bytes fit in memory.
fn host_shape(n: usize, h: usize, w: usize) -> FfiResult<[i64; 3]> {
    if n == 0 || h == 0 || w == 0 {
        return Err(FfiError::invalid(format!("n, h, w must be > 0, got {n}, {h}, {w}")));
    }
    n.checked_mul(h)
        .and_then(|x| x.checked_mul(w))
        .and_then(|x| x.checked_mul(4))
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or_else(|| FfiError::invalid(format!("n * h * w = {n} * {h} * {w} float32 values overflow")))?;
    Ok([n as i64, h as i64, w as i64])
}

// ------------------------------------------------------------------------------------------------
// Versions and errors

/// ABI version of the loaded library: `(major << 16) | minor`. A caller built against major M must
/// check `ldctq_abi_version() >> 16 == M` (the C++ wrapper does).
#[no_mangle]
pub extern "C" fn ldctq_abi_version() -> u32 {
    (LDCTQ_ABI_VERSION_MAJOR << 16) | LDCTQ_ABI_VERSION_MINOR
}

/// Library version, e.g. "ldctq 0.1.0 (C ABI 1.1; tch 0.24.0; libtorch 2.11.0+cu130)": the package,
/// the C ABI (`LDCTQ_ABI_VERSION_MAJOR.MINOR`), and the tch and libtorch it was built with.
/// Static; never NULL.
#[no_mangle]
pub extern "C" fn ldctq_version_string() -> *const c_char {
    VERSION.as_ptr()
}

/// Static description of a status code ("unknown status" for numbers this version does not know).
/// Never NULL.
#[no_mangle]
pub extern "C" fn ldctq_status_string(status: i32) -> *const c_char {
    error::ALL_STATUSES
        .iter()
        .find(|s| **s as i32 == status)
        .map_or(c"unknown status".as_ptr(), |s| s.text().as_ptr())
}

/// Message of the last status-returning call on this thread: empty after `LDCTQ_STATUS_OK`, else
/// what went wrong. Thread-local; valid until the next ldctq call on this thread; never NULL; do
/// not free.
#[no_mangle]
pub extern "C" fn ldctq_last_error_message() -> *const c_char {
    error::last_error_ptr()
}

/// Number of CUDA devices libtorch sees (0 without CUDA).
#[no_mangle]
pub extern "C" fn ldctq_cuda_device_count() -> i32 {
    std::panic::catch_unwind(tch::Cuda::device_count).map_or(0, |c| c as i32)
}

// ------------------------------------------------------------------------------------------------
// Models

/// Fills `options` with the defaults and its `struct_size`. NULL is ignored.
///
/// # Safety
/// `options` is NULL or points to writable memory for one `ldctq_model_options` as declared in this
/// header.
#[no_mangle]
pub unsafe extern "C" fn ldctq_model_options_init(options: *mut ldctq_model_options) {
    ffi_boundary_void(|| {
        if !options.is_null() {
            // SAFETY: options is not NULL and writable for one ldctq_model_options (contract); write
            // does not read or drop the uninitialized old value.
            unsafe { options.write(ldctq_model_options::default()) };
        }
    })
}

/// Loads the model folder `path` (UTF-8: `ldctq.json`, `head.safetensors`, its backbone; or an
/// ensemble folder with `ensemble.json`, scoring the mean of its members) with
/// `options` (NULL: defaults) and stores a new handle in `*model_out`, to be released with
/// `ldctq_model_free`.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string. `options` is NULL or points to readable memory of
/// `options->struct_size` bytes (an `ldctq_model_options`, e.g. filled by
/// `ldctq_model_options_init`) whose `prompt` is NULL or a NUL-terminated string. `model_out` is
/// NULL or writable for one pointer. None of them is modified by another thread during the call.
#[no_mangle]
pub unsafe extern "C" fn ldctq_model_open(
    path: *const c_char,
    options: *const ldctq_model_options,
    model_out: *mut *mut ldctq_model,
) -> ldctq_status {
    ffi_boundary(|| {
        if model_out.is_null() {
            return Err(FfiError::null("model_out"));
        }
        // SAFETY: path is NULL or a NUL-terminated string that outlives the call (contract).
        let path = unsafe { utf8_arg(path, "path") }?;
        // SAFETY: options is NULL or readable for its struct_size bytes (contract).
        let o = unsafe { read_options(options) }?;
        let device = match o.device_type {
            0 | KDL_CPU => Device::Cpu,
            KDL_CUDA => dlpack::device_of(DLDevice { device_type: KDL_CUDA, device_id: o.device_id })?,
            t => {
                return Err(FfiError::device(format!("options.device_type {t} (expected kDLCPU or kDLCUDA)")))
            }
        };
        let placement = Placement { device, kind: kind_of_dtype(o.dtype)? };
        let prompt = match o.prompt.is_null() {
            true => None,
            // SAFETY: options->prompt is not NULL, so a NUL-terminated string (contract).
            false => Some(unsafe { utf8_arg(o.prompt, "options.prompt") }?),
        };
        if o.override_film_strength != 0 && !o.film_strength.is_finite() {
            return Err(FfiError::invalid(format!(
                "options.film_strength must be finite, got {}",
                o.film_strength
            )));
        }
        if !Path::new(path).is_dir() {
            return Err(FfiError::new(
                ldctq_status::NotFound,
                format!("model folder {path:?} does not exist"),
            ));
        }
        if o.num_threads > 0 {
            tch::set_num_threads(o.num_threads);
        }
        let mut model = tch::no_grad(|| Scorer::load(Path::new(path), placement))?;
        if let Some(p) = prompt {
            tch::no_grad(|| model.set_prompt(p))?;
        }
        if o.override_film_strength != 0 {
            model.set_film_strength(o.film_strength)?;
        }
        let handle = Box::into_raw(Box::new(ldctq_model { model: Mutex::new(model) }));
        // SAFETY: model_out is not NULL and writable for one pointer (contract).
        unsafe { model_out.write(handle) };
        Ok(())
    })
}

/// Releases a model. NULL is ignored.
///
/// # Safety
/// `model` is NULL or a handle from `ldctq_model_open` that was not freed yet. No call on it may be
/// running on another thread, and the handle must not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn ldctq_model_free(model: *mut ldctq_model) {
    ffi_boundary_void(|| {
        if !model.is_null() {
            // SAFETY: a live handle is a Box made by ldctq_model_open, and the caller gives up its
            // only owner here, with no call running on it (contract).
            drop(unsafe { Box::from_raw(model) });
        }
    })
}

/// Writes what `model` computes and expects into `*info_out`, whose `struct_size` the caller sets.
///
/// # Safety
/// `model` is NULL or a live handle (from `ldctq_model_open`, not freed). `info_out` is NULL or
/// points to writable memory of `info_out->struct_size` bytes whose `struct_size` field is set.
/// Any thread.
#[no_mangle]
pub unsafe extern "C" fn ldctq_model_get_info(
    model: *const ldctq_model,
    info_out: *mut ldctq_model_info,
) -> ldctq_status {
    ffi_boundary(|| {
        // SAFETY: model is NULL or a live handle (contract); the mutex serializes access.
        let model = unsafe { non_null(model, "model") }?;
        if info_out.is_null() {
            return Err(FfiError::null("info_out"));
        }
        // SAFETY: info_out is not NULL and starts with the u32 struct_size the caller set
        // (contract); only that field is read.
        let size = unsafe { (*info_out).struct_size };
        let v1 = std::mem::size_of::<ldctq_model_info>();
        if (size as usize) < v1 {
            return Err(FfiError::invalid(format!(
                "info_out->struct_size is {size} but this library writes {v1} bytes"
            )));
        }
        let m = model.lock();
        let info = m.info();
        let at = m.placement();
        let config = m.config();
        let device = dlpack::dl_device(at.device);
        let value = ldctq_model_info {
            struct_size: size,
            input_space: match config.input {
                Space::Unit => ldctq_input_space::Unit,
                Space::Hu => ldctq_input_space::Hu,
            } as i32,
            window_center: config.window_center,
            window_width: config.window_width,
            image_size: info.image_size,
            score_min: info.score_range.0,
            score_max: info.score_range.1,
            higher_is_better: i32::from(info.higher_is_better),
            device_type: device.device_type,
            device_id: device.device_id,
            dtype: dtype_of_kind(at.kind) as i32,
            film_strength: config.film_strength,
        };
        // SAFETY: info_out is writable for struct_size >= v1 bytes (checked above, contract); a
        // newer caller's fields after the first v1 bytes are left alone.
        unsafe { info_out.write(value) };
        Ok(())
    })
}

/// Replaces the prompt (UTF-8). The frozen text tower runs once per new prompt, and the FiLM
/// parameters are recomputed once, at the next score.
///
/// # Safety
/// `model` is NULL or a live handle; `prompt` is NULL or a NUL-terminated string. Any thread.
#[no_mangle]
pub unsafe extern "C" fn ldctq_set_prompt(model: *mut ldctq_model, prompt: *const c_char) -> ldctq_status {
    ffi_boundary(|| {
        // SAFETY: model is NULL or a live handle (contract); the mutex serializes access.
        let model = unsafe { non_null(model, "model") }?;
        // SAFETY: prompt is NULL or a NUL-terminated string that outlives the call (contract).
        let prompt = unsafe { utf8_arg(prompt, "prompt") }?;
        let mut m = model.lock();
        tch::no_grad(|| m.set_prompt(prompt))?;
        Ok(())
    })
}

/// Sets the FiLM strength s (finite; 0 disables the prompt).
///
/// # Safety
/// `model` is NULL or a live handle. Any thread.
#[no_mangle]
pub unsafe extern "C" fn ldctq_set_film_strength(
    model: *mut ldctq_model,
    film_strength: f64,
) -> ldctq_status {
    ffi_boundary(|| {
        // SAFETY: model is NULL or a live handle (contract); the mutex serializes access.
        let model = unsafe { non_null(model, "model") }?;
        model.lock().set_film_strength(film_strength)?;
        Ok(())
    })
}

/// Activation checkpointing for the gradient functions: the encoder keeps one tensor per segment of
/// `layers_per_segment` layers and recomputes each segment during the backward pass, bounding peak
/// memory for about one extra forward pass. 0 (the default) turns it off.
///
/// # Safety
/// `model` is NULL or a live handle. Any thread.
#[no_mangle]
pub unsafe extern "C" fn ldctq_set_activation_checkpointing(
    model: *mut ldctq_model,
    layers_per_segment: u32,
) -> ldctq_status {
    ffi_boundary(|| {
        // SAFETY: model is NULL or a live handle (contract); the mutex serializes access.
        let model = unsafe { non_null(model, "model") }?;
        model.lock().set_activation_checkpointing(layers_per_segment as usize);
        Ok(())
    })
}

// ------------------------------------------------------------------------------------------------
// Scores and gradients on host memory

/// Scores of `n` images of `h` x `w` float32 pixels (contiguous, row-major, in the model's input
/// space; any size, resized to the model's) into `scores_out[n]` (doubles in [0, 4]).
///
/// # Safety
/// `model` is NULL or a live handle. `images` is NULL or readable for `n * h * w` floats, and
/// `scores_out` NULL or writable for `n` doubles; the two do not overlap, and no other thread
/// writes them during the call. Any thread.
#[no_mangle]
pub unsafe extern "C" fn ldctq_score(
    model: *mut ldctq_model,
    images: *const f32,
    n: usize,
    h: usize,
    w: usize,
    scores_out: *mut f64,
) -> ldctq_status {
    ffi_boundary(|| {
        if model.is_null() {
            return Err(FfiError::null("model"));
        }
        let mut shape = host_shape(n, h, w)?;
        let x = host_tensor(images, &mut shape, "images")?;
        // SAFETY: x describes the caller's n * h * w readable floats (contract; host_shape checked
        // that the size fits in memory) and outlives the call; scores_out and model as above.
        unsafe { score(model, &x, n, scores_out) }
    })
}

/// Scores (into `scores_out[n]`, may be NULL) and the vector-Jacobian product
/// `grad_out = d(sum_i upstream[i] * score_i) / d images` (into `grad_out[n * h * w]`, float32) of
/// `n` images as in `ldctq_score`. `upstream` has `n` values, NULL meaning all ones: pass
/// e.g. -1/n to get the gradient of the mean loss `4 - score`.
///
/// # Safety
/// `model` is NULL or a live handle. `images` is NULL or readable for `n * h * w` floats;
/// `upstream` NULL or readable for `n` doubles; `scores_out` NULL or writable for `n` doubles;
/// `grad_out` NULL or writable for `n * h * w` floats. The outputs overlap no other argument, and no
/// other thread writes these buffers during the call. Any thread.
#[no_mangle]
pub unsafe extern "C" fn ldctq_score_grad(
    model: *mut ldctq_model,
    images: *const f32,
    n: usize,
    h: usize,
    w: usize,
    upstream: *const f64,
    scores_out: *mut f64,
    grad_out: *mut f32,
) -> ldctq_status {
    ffi_boundary(|| {
        if model.is_null() {
            return Err(FfiError::null("model"));
        }
        let mut shape = host_shape(n, h, w)?;
        let x = host_tensor(images, &mut shape, "images")?;
        let mut grad_shape = shape;
        let mut g = host_tensor(grad_out, &mut grad_shape, "grad_out")?;
        // SAFETY: x and g describe the caller's n * h * w readable images and writable gradient
        // (contract; host_shape checked the size) and outlive the call; the other pointers as
        // score_grad requires (contract).
        unsafe { score_grad(model, &x, upstream, n, scores_out, &mut g) }
    })
}

/// Quality maps of `n` images as in `ldctq_score` into `maps_out[n * h * w]` (float32, row-major,
/// each map at its image's size, high where quality is lost). `method`: an `ldctq_map_method`.
///
/// # Safety
/// `model` is NULL or a live handle. `images` is NULL or readable for `n * h * w` floats, and
/// `maps_out` NULL or writable for `n * h * w` floats; the two do not overlap, and no other thread
/// writes them during the call. Any thread.
#[no_mangle]
pub unsafe extern "C" fn ldctq_quality_map(
    model: *mut ldctq_model,
    images: *const f32,
    n: usize,
    h: usize,
    w: usize,
    method: i32,
    maps_out: *mut f32,
) -> ldctq_status {
    ffi_boundary(|| {
        if model.is_null() {
            return Err(FfiError::null("model"));
        }
        let mut shape = host_shape(n, h, w)?;
        let x = host_tensor(images, &mut shape, "images")?;
        let mut maps_shape = shape;
        let mut out = host_tensor(maps_out, &mut maps_shape, "maps_out")?;
        // SAFETY: x and out describe the caller's n * h * w readable images and writable maps
        // (contract; host_shape checked the size) and outlive the call; model as quality_map requires.
        unsafe { quality_map(model, &x, n, method, &mut out) }
    })
}

// ------------------------------------------------------------------------------------------------
// Scores and gradients on DLPack tensors (host or CUDA)

/// Scores of the images in `images` (N x H x W or N x 1 x H x W; float16, bfloat16, float32 or
/// float64; any non-negative strides; CPU, CUDA host, CUDA or CUDA managed memory) into the host
/// array `scores_out[n]`, where `n` must equal N. Memory on the model's device is read in place;
/// other memory is copied there.
///
/// # Safety
/// `model` is NULL or a live handle. `images` is NULL or points to a DLTensor whose `shape` (and
/// `strides`, unless NULL) hold `ndim` values and whose `data` (plus `byte_offset`) is readable,
/// on its device, at every element the shape and strides reach. `scores_out` is NULL or writable
/// for `n` doubles of host memory. No other thread writes any of them during the call; on CUDA the
/// data is ready (see the preamble). Any thread.
#[no_mangle]
pub unsafe extern "C" fn ldctq_score_dlpack(
    model: *mut ldctq_model,
    images: *const DLTensor,
    n: usize,
    scores_out: *mut f64,
) -> ldctq_status {
    // SAFETY: the pointers are as score requires (contract).
    ffi_boundary(|| unsafe { score(model, images, n, scores_out) })
}

/// Scores and the vector-Jacobian product of DLPack images (as in `ldctq_score_dlpack`).
/// `upstream`: host array of n doubles, NULL meaning ones. `scores_out`: host array of n doubles,
/// may be NULL. `grad_out`: caller-allocated DLTensor of the images' shape, float16, bfloat16,
/// float32 or float64, any non-overlapping strides, on any supported device (normally the images'):
/// fully overwritten on success, converted to its dtype.
///
/// # Safety
/// `model` is NULL or a live handle. `images` as in `ldctq_score_dlpack`. `grad_out` is NULL or a
/// DLTensor of the same kind whose data is writable at every element it reaches and overlaps
/// neither the images nor the host arrays. `upstream` is NULL or readable for `n` doubles,
/// `scores_out` NULL or writable for `n` doubles (host memory). No other thread writes any of them
/// during the call. Any thread.
#[no_mangle]
pub unsafe extern "C" fn ldctq_score_grad_dlpack(
    model: *mut ldctq_model,
    images: *const DLTensor,
    upstream: *const f64,
    n: usize,
    scores_out: *mut f64,
    grad_out: *mut DLTensor,
) -> ldctq_status {
    // SAFETY: the pointers are as score_grad requires (contract).
    ffi_boundary(|| unsafe { score_grad(model, images, upstream, n, scores_out, grad_out) })
}

/// Quality maps of DLPack images (as in `ldctq_score_dlpack`) into the caller-allocated DLTensor
/// `maps_out`: N x H x W or N x 1 x H x W (the images' N, H and W), float16, bfloat16, float32 or
/// float64, any non-overlapping strides, on any supported device; fully overwritten on success.
/// `method`: an `ldctq_map_method`.
///
/// # Safety
/// `model` is NULL or a live handle. `images` as in `ldctq_score_dlpack`. `maps_out` is NULL or a
/// DLTensor of the same kind whose data is writable at every element it reaches and does not overlap
/// the images. No other thread writes either during the call. Any thread.
#[no_mangle]
pub unsafe extern "C" fn ldctq_quality_map_dlpack(
    model: *mut ldctq_model,
    images: *const DLTensor,
    n: usize,
    method: i32,
    maps_out: *mut DLTensor,
) -> ldctq_status {
    // SAFETY: the pointers are as quality_map requires (contract).
    ffi_boundary(|| unsafe { quality_map(model, images, n, method, maps_out) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `#define NAME value` of a C header's text.
    fn define<'a>(header: &'a str, name: &str) -> Option<&'a str> {
        header
            .lines()
            .find_map(|l| l.strip_prefix("#define ")?.strip_prefix(name)?.strip_prefix(' '))
            .map(str::trim)
    }

    /// `ldctq_version_string()` parsed back: the package version, the ABI constants (which
    /// `ldctq_abi_version()` and the soname follow too), the tch that ffi/Cargo.toml pins, and the
    /// version libtorch's own header declares.
    #[test]
    fn version_string_soname_and_abi_follow_the_constants() {
        // SAFETY: ldctq_version_string returns a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(ldctq_version_string()) }.to_str().unwrap();
        println!("{v}");
        let inner =
            v.strip_prefix("ldctq ").and_then(|r| r.strip_suffix(')')).unwrap_or_else(|| panic!("{v}"));
        let (package, inner) = inner.split_once(" (C ABI ").unwrap_or_else(|| panic!("{v}"));
        let [abi, tch, torch] = inner.split("; ").collect::<Vec<_>>()[..] else { panic!("{v}") };
        assert_eq!(package, env!("CARGO_PKG_VERSION"));
        assert_eq!(abi, format!("{LDCTQ_ABI_VERSION_MAJOR}.{LDCTQ_ABI_VERSION_MINOR}"));
        let packed = ldctq_abi_version();
        assert_eq!((packed >> 16, packed & 0xffff), (LDCTQ_ABI_VERSION_MAJOR, LDCTQ_ABI_VERSION_MINOR));
        assert_eq!(env!("LDCTQ_SONAME"), format!("libldctq.so.{LDCTQ_ABI_VERSION_MAJOR}"));

        let tch = tch.strip_prefix("tch ").unwrap_or_else(|| panic!("{v}"));
        let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
        assert!(manifest.contains(&format!("tch = \"={tch}\"")), "ffi/Cargo.toml does not pin tch {tch}");

        let torch = torch.strip_prefix("libtorch ").unwrap_or_else(|| panic!("{v}"));
        let include = Path::new(env!("LDCTQ_LIBTORCH_LIB")).join("../include/torch");
        let header = ["headeronly/version.h", "csrc/api/include/torch/version.h"]
            .iter()
            .filter_map(|h| std::fs::read_to_string(include.join(h)).ok())
            .find(|text| define(text, "TORCH_VERSION_MAJOR").is_some())
            .expect("libtorch's version.h");
        let declared = ["MAJOR", "MINOR", "PATCH"]
            .map(|part| define(&header, &format!("TORCH_VERSION_{part}")).unwrap().to_string())
            .join(".");
        assert_eq!(torch.split('+').next(), Some(declared.as_str()), "{v}");
    }
}
