//! Status codes, the one `map_error`, the thread-local last error message, the panic boundary and
//! the NULL-check helpers: everything an entry point needs besides the call into the core.
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Status of a call. The numbers are fixed and never reused; retired codes stay listed as reserved.
/// On any status but `LDCTQ_STATUS_OK`, `ldctq_last_error_message()` says what went wrong.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ldctq_status {
    /// Success.
    Ok = 0,
    /// A required pointer argument is NULL.
    NullArgument = 1,
    /// An argument is out of range: zero or overflowing sizes, NaN/Inf pixels or upstream values,
    /// a bad `struct_size`, negative or overlapping strides, a length that does not match.
    InvalidArgument = 2,
    /// A string argument is not valid UTF-8.
    InvalidUtf8 = 3,
    /// A DLPack dtype other than float16, bfloat16, float32, float64, or a model dtype this build
    /// does not know.
    UnsupportedDtype = 4,
    /// A device that is not CPU or CUDA, or a CUDA device that libtorch does not see.
    UnsupportedDevice = 5,
    /// An option or feature this build does not support.
    Unsupported = 6,
    /// A tensor of the wrong rank or shape.
    ShapeMismatch = 7,
    /// A model folder or file does not exist.
    NotFound = 8,
    /// A model folder is unusable: bad ldctq.json, corrupt or mismatching safetensors, tokenizer.
    InvalidModel = 9,
    /// A file could not be read.
    Io = 10,
    /// libtorch ran out of (host or device) memory.
    OutOfMemory = 11,
    /// Any other libtorch error.
    Backend = 12,
    // Codes 13-254 are free; never reuse a retired number, list it here as reserved instead.
    /// An internal error (a Rust panic) caught at the boundary: please report it. The model handle
    /// stays usable, but freeing it is the safe choice.
    Panic = 255,
}

/// Every status, for `ldctq_status_string`.
pub(crate) const ALL_STATUSES: [ldctq_status; 14] = [
    ldctq_status::Ok,
    ldctq_status::NullArgument,
    ldctq_status::InvalidArgument,
    ldctq_status::InvalidUtf8,
    ldctq_status::UnsupportedDtype,
    ldctq_status::UnsupportedDevice,
    ldctq_status::Unsupported,
    ldctq_status::ShapeMismatch,
    ldctq_status::NotFound,
    ldctq_status::InvalidModel,
    ldctq_status::Io,
    ldctq_status::OutOfMemory,
    ldctq_status::Backend,
    ldctq_status::Panic,
];

impl ldctq_status {
    /// Static, NUL-terminated description.
    pub fn text(self) -> &'static CStr {
        match self {
            Self::Ok => c"ok",
            Self::NullArgument => c"null argument",
            Self::InvalidArgument => c"invalid argument",
            Self::InvalidUtf8 => c"invalid UTF-8",
            Self::UnsupportedDtype => c"unsupported dtype",
            Self::UnsupportedDevice => c"unsupported device",
            Self::Unsupported => c"unsupported",
            Self::ShapeMismatch => c"shape mismatch",
            Self::NotFound => c"not found",
            Self::InvalidModel => c"invalid model",
            Self::Io => c"I/O error",
            Self::OutOfMemory => c"out of memory",
            Self::Backend => c"libtorch error",
            Self::Panic => c"internal error (panic)",
        }
    }
}

/// A status with its message, before it crosses the boundary.
#[derive(Debug)]
pub struct FfiError {
    pub status: ldctq_status,
    pub message: String,
}

pub type FfiResult<T> = Result<T, FfiError>;

impl FfiError {
    pub fn new(status: ldctq_status, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
    pub fn null(name: &str) -> Self {
        Self::new(ldctq_status::NullArgument, format!("{name} is NULL"))
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ldctq_status::InvalidArgument, message)
    }
    pub fn shape(message: impl Into<String>) -> Self {
        Self::new(ldctq_status::ShapeMismatch, message)
    }
    pub fn dtype(message: impl Into<String>) -> Self {
        Self::new(ldctq_status::UnsupportedDtype, message)
    }
    pub fn device(message: impl Into<String>) -> Self {
        Self::new(ldctq_status::UnsupportedDevice, message)
    }
}

/// The one translation of core errors to status codes.
pub fn map_error(e: &ldctq::Error) -> ldctq_status {
    use ldctq::Error as E;
    match e {
        E::Config { .. } | E::Checkpoint { .. } | E::Tokenizer { .. } => ldctq_status::InvalidModel,
        E::NotFound(_) => ldctq_status::NotFound,
        E::InvalidInput(_) | E::Metric(_) => ldctq_status::InvalidArgument,
        E::Unsupported(_) => ldctq_status::Unsupported,
        // Only long training runs stop on request; nothing in this ABI can be interrupted.
        E::Interrupted(_) => ldctq_status::Backend,
        E::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => ldctq_status::NotFound,
        E::Read(_) | E::Io { .. } => ldctq_status::Io,
        E::OutOfMemory(_) => ldctq_status::OutOfMemory,
        E::Torch(_) => ldctq_status::Backend,
    }
}

impl From<ldctq::Error> for FfiError {
    fn from(e: ldctq::Error) -> Self {
        Self::new(map_error(&e), e.to_string())
    }
}

impl From<tch::TchError> for FfiError {
    fn from(e: tch::TchError) -> Self {
        ldctq::Error::from(e).into()
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|m| *m.borrow_mut() = c);
}

/// Pointer to this thread's last error message (valid until the next call on this thread).
pub fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|m| m.borrow().as_ptr())
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".into())
}

/// Runs the body of a status-returning entry point: clears the last error, catches panics (a bug:
/// the core returns libtorch's errors as values, mapped by [`map_error`]; a panic becomes
/// `LDCTQ_STATUS_PANIC`) and records the message.
pub fn ffi_boundary(body: impl FnOnce() -> FfiResult<()>) -> ldctq_status {
    set_last_error("");
    let err = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return ldctq_status::Ok,
        Ok(Err(e)) => e,
        Err(payload) => {
            FfiError::new(ldctq_status::Panic, format!("caught a panic: {}", panic_message(payload.as_ref())))
        }
    };
    set_last_error(&err.message);
    err.status
}

/// Runs the body of an entry point without a status (`_free`): panics are caught and dropped.
pub fn ffi_boundary_void(body: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(body));
}

/// `&*p`, or `LDCTQ_STATUS_NULL_ARGUMENT` naming the argument.
///
/// # Safety
/// `p` must be NULL or valid for reads for the returned lifetime.
pub unsafe fn non_null<'a, T>(p: *const T, name: &str) -> FfiResult<&'a T> {
    // SAFETY: p is NULL (None) or valid for reads for 'a (contract above).
    unsafe { p.as_ref() }.ok_or_else(|| FfiError::null(name))
}

/// A NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string valid for the returned lifetime.
pub unsafe fn utf8_arg<'a>(p: *const c_char, name: &str) -> FfiResult<&'a str> {
    if p.is_null() {
        return Err(FfiError::null(name));
    }
    // SAFETY: p is not NULL, so a NUL-terminated string valid for 'a (contract above).
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|e| FfiError::new(ldctq_status::InvalidUtf8, format!("{name}: {e}")))
}
