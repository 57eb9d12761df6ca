//! C ABI of ldctq: `libldctq.so` / `libldctq.a`, described by `include/ldctq.h` (generated from this
//! crate by cbindgen; `tests/header.rs` regenerates it and fails when the committed one differs).
//!
//! Thin translation only. Every entry point has the same shape: `ffi_boundary` (panics and libtorch
//! errors become a status and a thread-local message), NULL checks, the call into the core crate,
//! then the outputs, written only on success. The contract (ownership, threads, CUDA) is in the
//! header's preamble, `cbindgen.toml`.
#![allow(non_camel_case_types)]
// The safety contract of every extern function is the C one, in the header preamble (cbindgen.toml).
#![allow(clippy::missing_safety_doc)]

pub mod dlpack;
pub mod error;

use dlpack::{tensor_view, DLDataType, DLDevice, DLTensor, KDL_CPU, KDL_CUDA, KDL_FLOAT};
pub use error::ldctq_status;
use error::{ffi_boundary, ffi_boundary_void, non_null, non_null_mut, utf8_arg, FfiError, FfiResult};
use ldctq::{Placement, QualityCriterion, Scorer, Space};
use std::ffi::{c_char, CStr};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use tch::{Device, Kind, Tensor};

/// Major version of the C ABI: changes when a function, struct or enum value changes incompatibly.
pub const LDCTQ_ABI_VERSION_MAJOR: u32 = 1;
/// Minor version of the C ABI: grows when functions, struct fields (at the end) or status codes are
/// added.
pub const LDCTQ_ABI_VERSION_MINOR: u32 = 0;

const VERSION: &CStr = match CStr::from_bytes_with_nul(
    concat!("ldctq ", env!("CARGO_PKG_VERSION"), " (C ABI 1.0; tch 0.24.0)\0").as_bytes(),
) {
    Ok(s) => s,
    Err(_) => panic!("version string has a NUL"),
};

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
unsafe fn read_options(p: *const ldctq_model_options) -> FfiResult<ldctq_model_options> {
    let Some(o) = p.as_ref() else { return Ok(ldctq_model_options::default()) };
    let v1 = std::mem::size_of::<ldctq_model_options>();
    if (o.struct_size as usize) < v1 {
        return Err(FfiError::invalid(format!(
            "options->struct_size is {} but this library needs at least {v1}: call ldctq_model_options_init",
            o.struct_size
        )));
    }
    Ok(*o) // a newer caller's larger struct: the fields this version knows are the leading ones
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
unsafe fn model_and_images<'a>(
    model: *mut ldctq_model,
    images: *const DLTensor,
    n: usize,
) -> FfiResult<(&'a ldctq_model, Tensor)> {
    let model = non_null(model, "model")?;
    non_null(images, "images")?;
    let x = tensor_view(images, "images", false)?;
    check_batch(&x, n)?;
    Ok((model, x))
}

/// Shared body of `ldctq_score` / `ldctq_score_dlpack`.
unsafe fn score(
    model: *mut ldctq_model,
    images: *const DLTensor,
    n: usize,
    scores_out: *mut f64,
) -> FfiResult<()> {
    non_null(scores_out, "scores_out")?;
    let (model, x) = model_and_images(model, images, n)?;
    let scores = {
        let m = model.lock();
        tch::no_grad(|| m.score(&x))?
    };
    let v = host_scores(&scores, n)?;
    std::slice::from_raw_parts_mut(scores_out, n).copy_from_slice(&v);
    Ok(())
}

/// Shared body of `ldctq_score_grad` / `ldctq_score_grad_dlpack`.
unsafe fn score_grad(
    model: *mut ldctq_model,
    images: *const DLTensor,
    upstream: *const f64,
    n: usize,
    scores_out: *mut f64,
    grad_out: *mut DLTensor,
) -> FfiResult<()> {
    non_null(grad_out, "grad_out")?;
    let (model, x) = model_and_images(model, images, n)?;
    let mut out = tensor_view(grad_out, "grad_out", true)?;
    if out.size() != x.size() {
        return Err(FfiError::shape(format!("grad_out has shape {:?}, images {:?}", out.size(), x.size())));
    }
    let u = match upstream.is_null() {
        true => None,
        false => Some(Tensor::f_from_slice(std::slice::from_raw_parts(upstream, n))?),
    };
    let (scores, grad) = {
        let m = model.lock();
        tch::with_grad(|| m.score_and_grad(&x, u.as_ref()))?
    };
    let v = host_scores(&scores, n)?;
    tch::no_grad(|| out.f_copy_(&grad))?; // casts to grad_out's dtype and device
    sync(out.device());
    if !scores_out.is_null() {
        std::slice::from_raw_parts_mut(scores_out, n).copy_from_slice(&v);
    }
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

/// Library version, e.g. "ldctq 0.1.0 (C ABI 1.0; tch 0.24.0)". Static; never NULL.
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
#[no_mangle]
pub unsafe extern "C" fn ldctq_model_options_init(options: *mut ldctq_model_options) {
    ffi_boundary_void(|| {
        if let Some(o) = options.as_mut() {
            *o = ldctq_model_options::default();
        }
    })
}

/// Loads the model folder `path` (UTF-8: `ldctq.json`, `head.safetensors`, its backbone; or an
/// ensemble folder with `ensemble.json`, scoring the mean of its members) with
/// `options` (NULL: defaults) and stores a new handle in `*model_out`, to be released with
/// `ldctq_model_free`.
#[no_mangle]
pub unsafe extern "C" fn ldctq_model_open(
    path: *const c_char,
    options: *const ldctq_model_options,
    model_out: *mut *mut ldctq_model,
) -> ldctq_status {
    ffi_boundary(|| {
        let out = non_null_mut(model_out, "model_out")?;
        let path = utf8_arg(path, "path")?;
        let o = read_options(options)?;
        let device = match o.device_type {
            0 | KDL_CPU => Device::Cpu,
            KDL_CUDA => dlpack::device_of(DLDevice { device_type: KDL_CUDA, device_id: o.device_id })?,
            t => {
                return Err(FfiError::device(format!("options.device_type {t} (expected kDLCPU or kDLCUDA)")))
            }
        };
        let placement = Placement { device, kind: kind_of_dtype(o.dtype)? };
        let prompt = if o.prompt.is_null() { None } else { Some(utf8_arg(o.prompt, "options.prompt")?) };
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
        *out = Box::into_raw(Box::new(ldctq_model { model: Mutex::new(model) }));
        Ok(())
    })
}

/// Releases a model. NULL is ignored. No call may be running on it.
#[no_mangle]
pub unsafe extern "C" fn ldctq_model_free(model: *mut ldctq_model) {
    ffi_boundary_void(|| {
        if !model.is_null() {
            drop(Box::from_raw(model));
        }
    })
}

/// Writes what `model` computes and expects into `*info_out`, whose `struct_size` the caller sets.
#[no_mangle]
pub unsafe extern "C" fn ldctq_model_get_info(
    model: *const ldctq_model,
    info_out: *mut ldctq_model_info,
) -> ldctq_status {
    ffi_boundary(|| {
        let model = non_null(model, "model")?;
        let out = non_null_mut(info_out, "info_out")?;
        let v1 = std::mem::size_of::<ldctq_model_info>();
        if (out.struct_size as usize) < v1 {
            return Err(FfiError::invalid(format!(
                "info_out->struct_size is {} but this library writes {v1} bytes",
                out.struct_size
            )));
        }
        let m = model.lock();
        let info = m.info();
        let at = m.placement();
        let config = m.config();
        let device = dlpack::dl_device(at.device);
        *out = ldctq_model_info {
            struct_size: out.struct_size,
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
        Ok(())
    })
}

/// Replaces the prompt (UTF-8). The frozen text tower runs once per new prompt, and the FiLM
/// parameters are recomputed once, at the next score.
#[no_mangle]
pub unsafe extern "C" fn ldctq_set_prompt(model: *mut ldctq_model, prompt: *const c_char) -> ldctq_status {
    ffi_boundary(|| {
        let model = non_null(model, "model")?;
        let prompt = utf8_arg(prompt, "prompt")?;
        let mut m = model.lock();
        tch::no_grad(|| m.set_prompt(prompt))?;
        Ok(())
    })
}

/// Sets the FiLM strength s (finite; 0 disables the prompt).
#[no_mangle]
pub unsafe extern "C" fn ldctq_set_film_strength(
    model: *mut ldctq_model,
    film_strength: f64,
) -> ldctq_status {
    ffi_boundary(|| {
        let model = non_null(model, "model")?;
        model.lock().set_film_strength(film_strength)?;
        Ok(())
    })
}

/// Activation checkpointing for the gradient functions: the encoder keeps one tensor per segment of
/// `layers_per_segment` layers and recomputes each segment during the backward pass, bounding peak
/// memory for about one extra forward pass. 0 (the default) turns it off.
#[no_mangle]
pub unsafe extern "C" fn ldctq_set_activation_checkpointing(
    model: *mut ldctq_model,
    layers_per_segment: u32,
) -> ldctq_status {
    ffi_boundary(|| {
        let model = non_null(model, "model")?;
        model.lock().set_activation_checkpointing(layers_per_segment as usize);
        Ok(())
    })
}

// ------------------------------------------------------------------------------------------------
// Scores and gradients on host memory

/// Scores of `n` images of `h` x `w` float32 pixels (contiguous, row-major, in the model's input
/// space; any size, resized to the model's) into `scores_out[n]` (doubles in [0, 4]).
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
        non_null(model, "model")?;
        let mut shape = host_shape(n, h, w)?;
        let x = host_tensor(images, &mut shape, "images")?;
        score(model, &x, n, scores_out)
    })
}

/// Scores (into `scores_out[n]`, may be NULL) and the vector-Jacobian product
/// `grad_out = d(sum_i upstream[i] * score_i) / d images` (into `grad_out[n * h * w]`, float32) of
/// `n` images as in `ldctq_score`. `upstream` has `n` values, NULL meaning all ones: pass
/// e.g. -1/n to get the gradient of the mean loss `4 - score`.
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
        non_null(model, "model")?;
        let mut shape = host_shape(n, h, w)?;
        let x = host_tensor(images, &mut shape, "images")?;
        let mut grad_shape = shape;
        let mut g = host_tensor(grad_out, &mut grad_shape, "grad_out")?;
        score_grad(model, &x, upstream, n, scores_out, &mut g)
    })
}

// ------------------------------------------------------------------------------------------------
// Scores and gradients on DLPack tensors (host or CUDA)

/// Scores of the images in `images` (N x H x W or N x 1 x H x W; float16, bfloat16, float32 or
/// float64; any non-negative strides; CPU, CUDA host, CUDA or CUDA managed memory) into the host
/// array `scores_out[n]`, where `n` must equal N. Memory on the model's device is read in place;
/// other memory is copied there.
#[no_mangle]
pub unsafe extern "C" fn ldctq_score_dlpack(
    model: *mut ldctq_model,
    images: *const DLTensor,
    n: usize,
    scores_out: *mut f64,
) -> ldctq_status {
    ffi_boundary(|| score(model, images, n, scores_out))
}

/// Scores and the vector-Jacobian product of DLPack images (as in `ldctq_score_dlpack`).
/// `upstream`: host array of n doubles, NULL meaning ones. `scores_out`: host array of n doubles,
/// may be NULL. `grad_out`: caller-allocated DLTensor of the images' shape, float16, bfloat16,
/// float32 or float64, any non-overlapping strides, on any supported device (normally the images'):
/// fully overwritten on success, converted to its dtype.
#[no_mangle]
pub unsafe extern "C" fn ldctq_score_grad_dlpack(
    model: *mut ldctq_model,
    images: *const DLTensor,
    upstream: *const f64,
    n: usize,
    scores_out: *mut f64,
    grad_out: *mut DLTensor,
) -> ldctq_status {
    ffi_boundary(|| score_grad(model, images, upstream, n, scores_out, grad_out))
}
