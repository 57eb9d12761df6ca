//! C ABI of ldctq: `libldctq.so` / `libldctq.a`, described by `include/ldctq.h` (generated from this
//! crate by cbindgen; `tests/header.rs` regenerates it and fails when the committed one differs).
//!
//! Thin translation only. Every entry point has the same shape: `ffi_boundary` (panics and libtorch
//! errors become a status and a thread-local message), NULL checks, the call into the core crate,
//! then the outputs, written only on success. The contract shared by all functions (ownership,
//! threads, CUDA) is in the header's preamble, `cbindgen.toml`; what each function needs from its
//! pointers is in its `# Safety` section, copied into the header with the rest of its doc.
//!
//! This file: the ABI types, versions, errors and model handles; `scoring`: scores, gradients and
//! quality maps on host arrays and DLPack tensors; `dlpack`: DLPack views; `error`: statuses and the
//! boundary.
#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod dlpack;
pub mod error;
pub mod scoring;

use dlpack::{DLDevice, KDL_CPU, KDL_CUDA};
pub use error::ldctq_status;
use error::{ffi_boundary, ffi_boundary_void, non_null, utf8_arg, FfiError, FfiResult};
use ldctq::{Placement, QualityCriterion, Scorer, Space};
use std::ffi::{c_char, CStr};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use tch::{Device, Kind};

/// Major version of the C ABI: changes when a function, struct or enum value changes incompatibly.
/// The soname is `libldctq.so.<major>` (ffi/build.rs reads this constant from ffi/src/lib.rs).
pub const LDCTQ_ABI_VERSION_MAJOR: u32 = 1;
/// Minor version of the C ABI: grows when functions, struct fields (at the end) or status codes are
/// added.
pub const LDCTQ_ABI_VERSION_MINOR: u32 = 3;

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
    /// Occlusion (ABI 1.2): the score gained if the 3 x 3 patch tokens around each patch were
    /// replaced by the mean of the ring around them, upsampled bilinearly; in score units.
    Occlusion = 2,
    /// Smoothing gain (ABI 1.3): the first-order score gained by smoothing each neighbourhood,
    /// G_w * (-(d score / d image) . (image - G_s image)), s = (h + w) / 512 (at least 0.5) and
    /// w = 3 (h + w) / 128 pixels; high at residual noise and streaks, negative where smoothing costs
    /// score.
    Smoothing = 3,
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
/// parameters are recomputed once, at the next score. On a model with a learned prompt
/// (`"prompt_mode": "learned"` in ldctq.json, `prompt.safetensors`) the text replaces the learned
/// context vectors until the model is loaded again.
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

/// Sets the anatomy of the images scored from now on (ABI 1.2), for a model with anatomy prompts
/// (`anatomies` in ldctq.json: each image is conditioned on the prompt plus its anatomy word);
/// NULL conditions on the prompt alone. A word the model does not know is `LDCTQ_INVALID_ARGUMENT`.
///
/// # Safety
/// `model` is NULL or a live handle; `anatomy` is NULL or a NUL-terminated string. Any thread.
#[no_mangle]
pub unsafe extern "C" fn ldctq_set_anatomy(model: *mut ldctq_model, anatomy: *const c_char) -> ldctq_status {
    ffi_boundary(|| {
        // SAFETY: model is NULL or a live handle (contract); the mutex serializes access.
        let model = unsafe { non_null(model, "model") }?;
        let anatomy = match anatomy.is_null() {
            true => None,
            // SAFETY: anatomy is not NULL, so a NUL-terminated string that outlives the call (contract).
            false => Some(unsafe { utf8_arg(anatomy, "anatomy") }?),
        };
        model.lock().set_anatomy(anatomy)?;
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
