//! The DLPack v1 structs that cross the ABI, mirroring `include/dlpack.h` (not re-emitted by
//! cbindgen: `cbindgen.toml` excludes them and includes `dlpack.h`), and their translation to tch
//! tensors that borrow the caller's memory.
use super::error::{FfiError, FfiResult};
use tch::{Device, Kind, Tensor};

/// `DLDevice`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DLDevice {
    /// A `DLDeviceType` (kDLCPU = 1, kDLCUDA = 2, ...).
    pub device_type: i32,
    pub device_id: i32,
}

/// `DLDataType`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DLDataType {
    /// A `DLDataTypeCode` (kDLFloat = 2, kDLBfloat = 4, ...).
    pub code: u8,
    pub bits: u8,
    pub lanes: u16,
}

/// `DLTensor`: a borrowed view; `strides` are in elements, NULL meaning compact row-major.
#[repr(C)]
#[derive(Debug)]
pub struct DLTensor {
    pub data: *mut std::ffi::c_void,
    pub device: DLDevice,
    pub ndim: i32,
    pub dtype: DLDataType,
    pub shape: *mut i64,
    pub strides: *mut i64,
    pub byte_offset: u64,
}

const _: () = assert!(std::mem::size_of::<DLTensor>() == 48 && std::mem::size_of::<DLDevice>() == 8);
const _: () = assert!(std::mem::size_of::<DLDataType>() == 4);

pub(crate) const KDL_CPU: i32 = 1;
pub(crate) const KDL_CUDA: i32 = 2;
pub(crate) const KDL_CUDA_HOST: i32 = 3;
pub(crate) const KDL_CUDA_MANAGED: i32 = 13;
pub(crate) const KDL_FLOAT: u8 = 2;
pub(crate) const KDL_BFLOAT: u8 = 4;

/// The tch device of a DLPack device, if this build can use it.
pub fn device_of(d: DLDevice) -> FfiResult<Device> {
    match d.device_type {
        // Pinned host memory is ordinary host memory to the CPU.
        KDL_CPU | KDL_CUDA_HOST => Ok(Device::Cpu),
        KDL_CUDA | KDL_CUDA_MANAGED => {
            let count = tch::Cuda::device_count();
            if d.device_id < 0 || i64::from(d.device_id) >= count {
                return Err(FfiError::device(format!(
                    "CUDA device {} requested, libtorch sees {count} CUDA device(s)",
                    d.device_id
                )));
            }
            Ok(Device::Cuda(d.device_id as usize))
        }
        t => Err(FfiError::device(format!(
            "DLPack device type {t} (supported: kDLCPU, kDLCUDA, kDLCUDAHost, kDLCUDAManaged)"
        ))),
    }
}

/// The DLPack device of a tch device.
pub fn dl_device(d: Device) -> DLDevice {
    match d {
        Device::Cuda(i) => DLDevice { device_type: KDL_CUDA, device_id: i as i32 },
        _ => DLDevice { device_type: KDL_CPU, device_id: 0 },
    }
}

/// float16 / bfloat16 / float32 / float64, one lane.
pub fn kind_of(t: DLDataType) -> FfiResult<Kind> {
    match (t.code, t.bits, t.lanes) {
        (KDL_FLOAT, 16, 1) => Ok(Kind::Half),
        (KDL_FLOAT, 32, 1) => Ok(Kind::Float),
        (KDL_FLOAT, 64, 1) => Ok(Kind::Double),
        (KDL_BFLOAT, 16, 1) => Ok(Kind::BFloat16),
        (code, bits, lanes) => Err(FfiError::dtype(format!(
            "DLPack dtype code {code}, {bits} bits, {lanes} lanes (supported: float16, bfloat16, float32, float64)"
        ))),
    }
}

/// Whether writing through `strides` can touch one element twice (sorted by stride, each stride must
/// step over the whole extent of the dimensions inside it).
fn overlaps(shape: &[i64], strides: &[i64]) -> bool {
    let mut dims: Vec<(i64, i64)> =
        shape.iter().zip(strides).filter(|(&n, _)| n > 1).map(|(&n, &s)| (s, n)).collect();
    dims.sort_unstable();
    let mut extent = 1i64;
    for (stride, n) in dims {
        if stride < extent {
            return true;
        }
        extent = stride.saturating_mul(n);
    }
    false
}

/// A tch tensor over the memory of `t` (no copy), after checking everything a DLTensor header can
/// tell: NULL pointers, an image shape (N, H, W) or (N, 1, H, W) with positive sizes, non-negative
/// strides, a supported dtype and device, and that the byte extent fits in memory (`isize`).
/// `writable`: the view will be written, so its elements must not overlap.
///
/// # Safety
/// `t` must be NULL or point to a valid DLTensor: `shape` (and `strides`, unless NULL) hold `ndim`
/// values, and `data` plus `byte_offset` is valid on its device at every element they reach (for
/// writes too when `writable`), for as long as the returned tensor lives.
pub unsafe fn tensor_view(t: *const DLTensor, name: &str, writable: bool) -> FfiResult<Tensor> {
    // SAFETY: t is NULL (an error) or a valid DLTensor for the view's lifetime (contract above).
    let t = unsafe { super::error::non_null(t, name) }?;
    if t.shape.is_null() {
        return Err(FfiError::null(&format!("{name}->shape")));
    }
    if t.ndim != 3 && t.ndim != 4 {
        return Err(FfiError::shape(format!(
            "{name}: ndim {} (expected 3: N x H x W, or 4: N x 1 x H x W)",
            t.ndim
        )));
    }
    let ndim = t.ndim as usize;
    // SAFETY: shape is not NULL and holds ndim (3 or 4) values, as a valid DLTensor's does.
    let shape = unsafe { std::slice::from_raw_parts(t.shape, ndim) }.to_vec();
    let strides = match t.strides.is_null() {
        true => None,
        // SAFETY: strides is not NULL, so it holds ndim values, as a valid DLTensor's does.
        false => Some(unsafe { std::slice::from_raw_parts(t.strides, ndim) }.to_vec()),
    };
    if shape.iter().any(|&d| d <= 0) || (ndim == 4 && shape[1] != 1) {
        return Err(FfiError::shape(format!(
            "{name}: shape {shape:?} (expected N x H x W or N x 1 x H x W, all > 0)"
        )));
    }
    let kind = kind_of(t.dtype)?;
    let device = device_of(t.device)?;
    if t.data.is_null() {
        return Err(FfiError::null(&format!("{name}->data")));
    }
    let elem = i64::from(t.dtype.bits / 8);
    let overflow = || {
        let st = strides.as_ref().map_or("NULL (compact)".to_string(), |s| format!("{s:?}"));
        FfiError::invalid(format!("{name}: shape {shape:?} with strides {st} overflows"))
    };
    // Largest element index reached, then the byte extent including byte_offset.
    let last = match &strides {
        Some(st) => {
            if st.iter().any(|&s| s < 0) {
                return Err(FfiError::invalid(format!("{name}: negative strides {st:?} are not supported")));
            }
            if writable && overlaps(&shape, st) {
                return Err(FfiError::invalid(format!("{name}: strides {st:?} make elements overlap")));
            }
            shape.iter().zip(st).try_fold(0i64, |acc, (&n, &s)| acc.checked_add((n - 1).checked_mul(s)?))
        }
        None => shape.iter().try_fold(1i64, |acc, &n| acc.checked_mul(n)).map(|n| n - 1),
    };
    last.and_then(|l| l.checked_add(1)?.checked_mul(elem))
        .and_then(|b| u64::try_from(b).ok()?.checked_add(t.byte_offset))
        .filter(|&b| b <= isize::MAX as u64)
        .ok_or_else(overflow)?;
    // Device pointers are plain addresses here: offset them without dereferencing.
    let data = (t.data as *const u8).wrapping_add(t.byte_offset as usize);
    let st = strides.unwrap_or_default(); // empty: libtorch makes a contiguous view
                                          // SAFETY: data (with byte_offset) is valid on `device` at every element shape and strides reach
                                          // (contract above; the extent was checked to fit in memory), and the caller drops the tensor
                                          // before that memory goes away. libtorch neither frees nor resizes memory it does not own.
    Ok(unsafe { Tensor::f_from_blob(data, &shape, &st, kind, device) }?)
}
