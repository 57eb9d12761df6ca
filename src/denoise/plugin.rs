//! The host of C denoiser plugins (ABI in `include/ldctq_denoiser.h`).
//!
//! Loading: the library is opened with `RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE` (every symbol resolved up
//! front, none leaked into the global namespace, never unmapped), `ldctq_denoiser_get_api(1)` is looked
//! up and called, and the table's `abi_major` and `struct_size` are checked before any other call. The
//! library is then kept for the life of the process, even when a check fails: thread-local destructors
//! and static data of a library that ran code must stay mapped (libloading#41, glibc bug 21032). A
//! library loaded twice is loaded once; each [`PluginDenoiser`] has its own state (`create`/`destroy`).
//!
//! Calls: the host passes a private copy of the input and an output buffer with a guard zone after it;
//! both ends are checked after each call. Output cells are pre-filled with a marker NaN, so values left
//! unwritten, writes past the end (within the guard), error codes, and NaN/Inf outputs are all reported
//! as a [`DenoiseError`] naming the plugin. A plugin that crashes (segfault, abort) takes its process
//! down: [`super::isolated`] runs each plugin state in a child process, where a crash is an error.
use super::{sha256_file, DenoiseError, Denoiser, DenoiserInfo, ErrorKind};
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use tch::{Device, Kind, Tensor};

/// The ABI major this host implements (`LDCTQ_DENOISER_ABI_MAJOR`).
pub const ABI_MAJOR: u32 = 1;
/// The ABI minor this host knows (`LDCTQ_DENOISER_ABI_MINOR`).
pub const ABI_MINOR: u32 = 0;
/// The one symbol a plugin exports.
pub const ENTRY_POINT: &str = "ldctq_denoiser_get_api";

/// Bytes of the error buffer passed to plugins.
const ERR_LEN: usize = 1024;
/// Floats of the guard zone after the output buffer.
const GUARD: usize = 4096;
/// A quiet NaN with a payload no arithmetic produces: marks output cells the plugin has not written.
const UNWRITTEN: u32 = 0x7FC0_DEAD;

type CreateFn = unsafe extern "C" fn(*const c_char, *mut *mut c_void, *mut c_char, usize) -> i32;
type DenoiseFn =
    unsafe extern "C" fn(*mut c_void, *const f32, *mut f32, i64, i64, i64, *mut c_char, usize) -> i32;
type DestroyFn = unsafe extern "C" fn(*mut c_void);
type GetApiFn = unsafe extern "C" fn(u32) -> *const RawApi;

/// `ldctq_denoiser_api` (ABI 1.0), field for field.
#[repr(C)]
struct RawApi {
    abi_major: u32,
    abi_minor: u32,
    struct_size: u32,
    reserved: u32,
    name: *const c_char,
    version: *const c_char,
    create: Option<CreateFn>,
    denoise: Option<DenoiseFn>,
    destroy: Option<DestroyFn>,
}

/// A loaded, checked plugin library (kept for the life of the process).
struct Library {
    path: PathBuf,
    name: String,
    version: String,
    abi_minor: u32,
    sha256: String,
    create: CreateFn,
    denoise: DenoiseFn,
    destroy: DestroyFn,
}

/// Libraries by canonical path; entries are leaked on purpose (never unloaded).
fn registry() -> &'static Mutex<HashMap<PathBuf, &'static Library>> {
    static REGISTRY: OnceLock<Mutex<HashMap<PathBuf, &'static Library>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

fn cstr(p: *const c_char) -> Option<String> {
    // SAFETY: the ABI requires static NUL-terminated strings; NULL is checked.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

#[cfg(unix)]
fn open(path: &Path) -> Result<libloading::Library, libloading::Error> {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    // SAFETY: running a library's initialisers is inherent to loading a plugin the user named.
    unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL | libc::RTLD_NODELETE) }.map(Into::into)
}

#[cfg(not(unix))]
fn open(path: &Path) -> Result<libloading::Library, libloading::Error> {
    // SAFETY: as above.
    unsafe { libloading::Library::new(path) }
}

fn load_library(path: &Path) -> Result<&'static Library, DenoiseError> {
    let who = format!("plugin {}", path.display());
    let err = |kind, msg: String| DenoiseError::new(who.clone(), kind, msg);
    let canonical = path.canonicalize().map_err(|e| err(ErrorKind::Load, format!("cannot open: {e}")))?;
    let mut libs = registry().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(lib) = libs.get(&canonical) {
        return Ok(lib);
    }
    let sha256 = sha256_file(&canonical).map_err(|e| err(ErrorKind::Load, format!("cannot read: {e}")))?;
    let lib = open(&canonical).map_err(|e| err(ErrorKind::Load, format!("cannot load: {e}")))?;
    // Never unload: even a library that fails the checks below has run its initialisers.
    let lib: &'static libloading::Library = Box::leak(Box::new(lib));
    // SAFETY: the symbol's type is the ABI's `ldctq_denoiser_get_api_fn`.
    let get_api = unsafe { lib.get::<GetApiFn>(ENTRY_POINT.as_bytes()) }.map_err(|e| {
        err(
            ErrorKind::MissingSymbol,
            format!("does not export {ENTRY_POINT} (is it an ldctq denoiser plugin? see include/ldctq_denoiser.h): {e}"),
        )
    })?;
    // SAFETY: calling the plugin's entry point as the ABI specifies.
    let api = unsafe { get_api(ABI_MAJOR) };
    if api.is_null() {
        return Err(err(
            ErrorKind::Abi,
            format!("{ENTRY_POINT}({ABI_MAJOR}) returned NULL: no table for ABI {ABI_MAJOR}.x"),
        ));
    }
    // Read the fixed header (3 x u32) first: a table of another ABI may be shorter than ours.
    // SAFETY: every ABI version starts with these fields.
    let (major, minor, size) = unsafe {
        let p = api as *const u32;
        (p.read_unaligned(), p.add(1).read_unaligned(), p.add(2).read_unaligned())
    };
    if major != ABI_MAJOR {
        return Err(err(
            ErrorKind::Abi,
            format!("ABI {major}.{minor}, but this host implements ABI {ABI_MAJOR}.x (rebuild the plugin against include/ldctq_denoiser.h)"),
        ));
    }
    let needed = std::mem::size_of::<RawApi>();
    if (size as usize) < needed {
        return Err(err(
            ErrorKind::Abi,
            format!("struct_size {size} is smaller than the ABI {ABI_MAJOR}.0 table ({needed} bytes)"),
        ));
    }
    // SAFETY: major and size checked: the table holds at least the ABI 1.0 fields.
    let raw = unsafe { &*api };
    let (Some(create), Some(denoise), Some(destroy)) = (raw.create, raw.denoise, raw.destroy) else {
        return Err(err(ErrorKind::Abi, "the table lacks create, denoise or destroy (NULL)".into()));
    };
    let name = cstr(raw.name)
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| err(ErrorKind::Abi, "the table's name is NULL or empty".into()))?;
    let version = cstr(raw.version).unwrap_or_else(|| "unknown".into());
    let library = Box::leak(Box::new(Library {
        path: canonical.clone(),
        name,
        version,
        abi_minor: minor,
        sha256,
        create,
        denoise,
        destroy,
    }));
    libs.insert(canonical, library);
    Ok(library)
}

/// The message a plugin wrote into an error buffer.
fn message(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let text = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    if text.is_empty() {
        "(no message)".into()
    } else {
        text
    }
}

/// One state of a C plugin (`create` on load, `destroy` on drop; the library stays loaded).
pub struct PluginDenoiser {
    lib: &'static Library,
    state: *mut c_void,
    config: String,
}

// SAFETY: the ABI allows a state to be used from any thread, one at a time (`&mut self`).
unsafe impl Send for PluginDenoiser {}

impl std::fmt::Debug for PluginDenoiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginDenoiser").field("path", &self.lib.path).field("name", &self.lib.name).finish()
    }
}

impl PluginDenoiser {
    /// Loads (or reuses) the library at `path`, checks its ABI and creates a state from `config` (a JSON
    /// object; `{}` when `None`).
    pub fn load(path: &Path, config: Option<&str>) -> Result<Self, DenoiseError> {
        let lib = load_library(path)?;
        let config = config.unwrap_or("{}").to_string();
        let who = || label(lib);
        let c_config = CString::new(config.clone())
            .map_err(|_| DenoiseError::new(who(), ErrorKind::Config, "config contains a NUL byte"))?;
        let mut state: *mut c_void = std::ptr::null_mut();
        let mut buf = vec![0u8; ERR_LEN];
        // SAFETY: arguments as the ABI specifies; `buf` has ERR_LEN bytes.
        let code = unsafe { (lib.create)(c_config.as_ptr(), &mut state, buf.as_mut_ptr().cast(), ERR_LEN) };
        if code != 0 {
            return Err(DenoiseError::new(
                who(),
                ErrorKind::Create,
                format!("create({config}) failed with code {code}: {}", message(&buf)),
            ));
        }
        Ok(Self { lib, state, config })
    }

    /// The plugin's ABI minor version.
    pub fn abi_minor(&self) -> u32 {
        self.lib.abi_minor
    }

    /// Denoises `n x h x w` float32 values (row-major) and checks the plugin filled exactly its output.
    pub fn denoise_raw(&mut self, input: &[f32], [n, h, w]: [i64; 3]) -> Result<Vec<f32>, DenoiseError> {
        let who = || label(self.lib);
        let total = (n * h * w) as usize;
        if n < 1 || h < 1 || w < 1 || input.len() != total {
            return Err(DenoiseError::new(
                who(),
                ErrorKind::WrongSize,
                format!("{} input values for a batch of {n} x {h} x {w}", input.len()),
            ));
        }
        let mut output = vec![f32::from_bits(UNWRITTEN); total + GUARD];
        let mut buf = vec![0u8; ERR_LEN];
        // SAFETY: input has n*h*w floats, output n*h*w (+ guard), buf ERR_LEN bytes, as the ABI specifies.
        let code = unsafe {
            (self.lib.denoise)(
                self.state,
                input.as_ptr(),
                output.as_mut_ptr(),
                n,
                h,
                w,
                buf.as_mut_ptr().cast(),
                ERR_LEN,
            )
        };
        if code != 0 {
            return Err(DenoiseError::new(
                who(),
                ErrorKind::Denoise,
                format!("denoise failed with code {code} on a batch of {n} x {h} x {w}: {}", message(&buf)),
            ));
        }
        if output[total..].iter().any(|v| v.to_bits() != UNWRITTEN) {
            return Err(DenoiseError::new(
                who(),
                ErrorKind::WrongSize,
                format!("wrote past the end of its output buffer of {n} x 1 x {h} x {w} = {total} values (wrong output size)"),
            ));
        }
        let unwritten = output[..total].iter().filter(|v| v.to_bits() == UNWRITTEN).count();
        if unwritten > 0 {
            return Err(DenoiseError::new(
                who(),
                ErrorKind::WrongSize,
                format!("left {unwritten} of the {total} output values of a {n} x 1 x {h} x {w} batch unwritten (wrong output size)"),
            ));
        }
        output.truncate(total);
        Ok(output)
    }
}

fn label(lib: &Library) -> String {
    format!("plugin {} ({} {})", lib.path.display(), lib.name, lib.version)
}

impl Drop for PluginDenoiser {
    fn drop(&mut self) {
        // SAFETY: `state` came from this library's `create` and is destroyed once.
        unsafe { (self.lib.destroy)(self.state) };
    }
}

impl Denoiser for PluginDenoiser {
    fn info(&self) -> DenoiserInfo {
        DenoiserInfo {
            name: self.lib.name.clone(),
            kind: "plugin".into(),
            version: Some(self.lib.version.clone()),
            path: Some(self.lib.path.clone()),
            config: Some(self.config.clone()),
            sha256: Some(self.lib.sha256.clone()),
        }
    }

    fn denoise(&mut self, images: &Tensor) -> Result<Tensor, DenoiseError> {
        let (input, [n, h, w]) = host_batch(images, &label(self.lib))?;
        let output = self.denoise_raw(&input, [n, h, w])?;
        Ok(Tensor::from_slice(&output).view([n, 1, h, w]).to_device(images.device()))
    }
}

/// An `(N, 1, H, W)` batch as host float32 values and `[N, H, W]`, for denoisers that take raw buffers.
pub(super) fn host_batch(images: &Tensor, who: &str) -> Result<(Vec<f32>, [i64; 3]), DenoiseError> {
    let err = |kind, msg: String| DenoiseError::new(who, kind, msg);
    let size = images.size();
    let [n, c, h, w] = size[..] else {
        return Err(err(ErrorKind::WrongSize, format!("input shape {size:?} is not N x 1 x H x W")));
    };
    if c != 1 {
        return Err(err(ErrorKind::WrongSize, format!("input has {c} channels, expected 1")));
    }
    let values = images
        .f_to_device(Device::Cpu)
        .and_then(|t| t.f_to_kind(Kind::Float))
        .and_then(|t| t.f_contiguous())
        .and_then(|t| t.f_view(-1))
        .and_then(|t| Vec::<f32>::try_from(&t))
        .map_err(|e| err(ErrorKind::Torch, e.to_string()))?;
    Ok((values, [n, h, w]))
}
