//! Scoring, gradients and quality maps on the caller's memory: host arrays and DLPack tensors (host
//! or CUDA). Every export checks its arguments, borrows the caller's buffers for the call only and
//! runs inside `ffi_boundary`.
use crate::dlpack::{tensor_view, DLDataType, DLDevice, DLTensor, KDL_CPU, KDL_FLOAT};
use crate::error::{ffi_boundary, non_null, FfiError, FfiResult};
use crate::{ldctq_map_method, ldctq_model, ldctq_status};
use ldctq::{MapMethod, QualityCriterion};
use tch::{Device, Kind, Tensor};

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
        m if m == ldctq_map_method::Occlusion as i32 => MapMethod::Occlusion,
        m if m == ldctq_map_method::Smoothing as i32 => MapMethod::Smoothing,
        m => {
            return Err(FfiError::invalid(format!(
                "map method {m} (expected 0 intrinsic, 1 gradient, 2 occlusion or 3 smoothing)"
            )))
        }
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
