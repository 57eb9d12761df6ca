"""ctypes bindings of libldctq (include/ldctq.h) for numpy and PyTorch.

    import torch            # first: the process must hold one libtorch, torch's
    import ldctq_ffi
    model = ldctq_ffi.Model("path/to/model")                     # or device="cuda", dtype="float64"
    scores = model.score_numpy(images)                            # float32 (N, H, W) -> float64 (N,)
    loss = (4 - ldctq_ffi.quality_score(model, x)).mean()        # differentiable, x: (N, H, W) tensor
    loss.backward()

The library is found from `path=`, else $LDCTQ_LIBRARY, else the loader's search path (libldctq.so.1).
Torch tensors cross as DLPack views (no copy when they are on the model's device). Calls release the
GIL (ctypes does); calls on one model are serialized by the library.
"""
import ctypes
import os
from ctypes import POINTER, c_char_p, c_double, c_float, c_int32, c_int64, c_size_t, c_uint8, c_uint16, c_uint32, c_uint64, c_void_p

try:  # torch before the library: libldctq then binds to the libtorch torch has loaded
    import torch
except ImportError:  # the numpy path works without torch
    torch = None
import numpy as np

# ---- include/dlpack.h -------------------------------------------------------------------------

kDLCPU, kDLCUDA = 1, 2
kDLInt, kDLFloat, kDLBfloat = 0, 2, 4


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", c_int32), ("device_id", c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", c_uint8), ("bits", c_uint8), ("lanes", c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", c_void_p),
        ("device", DLDevice),
        ("ndim", c_int32),
        ("dtype", DLDataType),
        ("shape", POINTER(c_int64)),
        ("strides", POINTER(c_int64)),
        ("byte_offset", c_uint64),
    ]


# ---- include/ldctq.h --------------------------------------------------------------------------

STATUS_OK = 0
STATUS_NAMES = {
    0: "OK", 1: "NULL_ARGUMENT", 2: "INVALID_ARGUMENT", 3: "INVALID_UTF8", 4: "UNSUPPORTED_DTYPE",
    5: "UNSUPPORTED_DEVICE", 6: "UNSUPPORTED", 7: "SHAPE_MISMATCH", 8: "NOT_FOUND", 9: "INVALID_MODEL",
    10: "IO", 11: "OUT_OF_MEMORY", 12: "BACKEND", 255: "PANIC",
}
DTYPES = {"float32": 0, "bfloat16": 1, "float16": 2, "float64": 3}


class ModelOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("device_type", c_int32),
        ("device_id", c_int32),
        ("dtype", c_int32),
        ("num_threads", c_int32),
        ("override_film_strength", c_int32),
        ("film_strength", c_double),
        ("prompt", c_char_p),
    ]


class ModelInfo(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("input_space", c_int32),
        ("window_center", c_double),
        ("window_width", c_double),
        ("image_size", c_int64),
        ("score_min", c_double),
        ("score_max", c_double),
        ("higher_is_better", c_int32),
        ("device_type", c_int32),
        ("device_id", c_int32),
        ("dtype", c_int32),
        ("film_strength", c_double),
    ]


class LdctqError(RuntimeError):
    """A call returned a status other than OK: `.status` (int), `.name`, and the library's message."""

    def __init__(self, status, message):
        self.status = status
        self.name = STATUS_NAMES.get(status, str(status))
        super().__init__(f"{self.name} ({status}): {message}")


_lib = None


def load_library(path=None):
    """Loads libldctq once and declares every function's argtypes/restype."""
    global _lib
    if _lib is not None:
        return _lib
    lib = ctypes.CDLL(path or os.environ.get("LDCTQ_LIBRARY", "libldctq.so.1"))
    sigs = {
        "ldctq_abi_version": ([], c_uint32),
        "ldctq_version_string": ([], c_char_p),
        "ldctq_status_string": ([c_int32], c_char_p),
        "ldctq_last_error_message": ([], c_char_p),  # c_char_p: copied at once
        "ldctq_cuda_device_count": ([], c_int32),
        "ldctq_model_options_init": ([POINTER(ModelOptions)], None),
        "ldctq_model_open": ([c_char_p, POINTER(ModelOptions), POINTER(c_void_p)], c_int32),
        "ldctq_model_free": ([c_void_p], None),
        "ldctq_model_get_info": ([c_void_p, POINTER(ModelInfo)], c_int32),
        "ldctq_set_prompt": ([c_void_p, c_char_p], c_int32),
        "ldctq_set_film_strength": ([c_void_p, c_double], c_int32),
        "ldctq_score": ([c_void_p, POINTER(c_float), c_size_t, c_size_t, c_size_t, POINTER(c_double)], c_int32),
        "ldctq_score_grad": (
            [c_void_p, POINTER(c_float), c_size_t, c_size_t, c_size_t, POINTER(c_double), POINTER(c_double), POINTER(c_float)],
            c_int32,
        ),
        "ldctq_score_dlpack": ([c_void_p, POINTER(DLTensor), c_size_t, POINTER(c_double)], c_int32),
        "ldctq_score_grad_dlpack": (
            [c_void_p, POINTER(DLTensor), POINTER(c_double), c_size_t, POINTER(c_double), POINTER(DLTensor)],
            c_int32,
        ),
    }
    for name, (args, res) in sigs.items():
        f = getattr(lib, name)
        f.argtypes, f.restype = args, res
    major = lib.ldctq_abi_version() >> 16
    if major != 1:
        raise LdctqError(6, f"libldctq has ABI major {major}, these bindings speak 1")
    _lib = lib
    return lib


def _check(status):
    if status != STATUS_OK:
        raise LdctqError(status, _lib.ldctq_last_error_message().decode("utf-8", "replace"))


def version():
    return load_library().ldctq_version_string().decode()


def _f64_ptr(a):
    return a.ctypes.data_as(POINTER(c_double))


# ---- DLPack views of torch tensors ------------------------------------------------------------

_TORCH_DL = {}
if torch is not None:
    _TORCH_DL = {
        torch.float32: (kDLFloat, 32),
        torch.float64: (kDLFloat, 64),
        torch.float16: (kDLFloat, 16),
        torch.bfloat16: (kDLBfloat, 16),
        torch.int32: (kDLInt, 32),  # rejected by the library: lets tests see the status
    }


def dl_view(t):
    """A DLTensor over tensor `t` (no copy), with the shape/strides arrays it points to.

    The data pointer is the storage's and `byte_offset` the view's offset in bytes, so strided views
    and slices cross as they are. Keep the returned tuple (and `t`) alive during the call."""
    code, bits = _TORCH_DL[t.dtype]
    shape = (c_int64 * t.dim())(*t.shape)
    strides = (c_int64 * t.dim())(*t.stride())
    dev = DLDevice(kDLCUDA, t.device.index or 0) if t.device.type == "cuda" else DLDevice(kDLCPU, 0)
    dl = DLTensor(
        c_void_p(t.untyped_storage().data_ptr()), dev, t.dim(), DLDataType(code, bits, 1), shape, strides,
        t.storage_offset() * t.element_size(),
    )
    return dl, (shape, strides, t)


class Model:
    """A loaded model (or ensemble) folder: `Model(path, device="cpu"|"cuda[:i]", dtype="float32", ...)`."""

    def __init__(self, path, device="cpu", dtype="float32", threads=0, prompt=None, film_strength=None, library=None):
        lib = load_library(library)
        opts = ModelOptions()
        lib.ldctq_model_options_init(ctypes.byref(opts))
        if device.startswith("cuda"):
            opts.device_type = kDLCUDA
            opts.device_id = int(device.split(":")[1]) if ":" in device else 0
        opts.dtype = DTYPES[dtype]
        opts.num_threads = threads
        if prompt is not None:
            opts.prompt = prompt.encode() if isinstance(prompt, str) else prompt
        if film_strength is not None:
            opts.override_film_strength, opts.film_strength = 1, film_strength
        handle = c_void_p()
        _check(lib.ldctq_model_open(os.fsencode(path), ctypes.byref(opts), ctypes.byref(handle)))
        self._h = handle
        self._lib = lib

    def close(self):
        if getattr(self, "_h", None):
            self._lib.ldctq_model_free(self._h)
            self._h = None

    def __del__(self):
        self.close()

    def info(self):
        i = ModelInfo(struct_size=ctypes.sizeof(ModelInfo))
        _check(self._lib.ldctq_model_get_info(self._h, ctypes.byref(i)))
        return {name: getattr(i, name) for name, _ in ModelInfo._fields_ if name != "struct_size"}

    def set_prompt(self, prompt):
        """`prompt`: str, or bytes passed as they are (must be UTF-8)."""
        _check(self._lib.ldctq_set_prompt(self._h, prompt.encode() if isinstance(prompt, str) else prompt))

    def set_film_strength(self, s):
        _check(self._lib.ldctq_set_film_strength(self._h, s))

    # -- numpy: host float32 through ldctq_score / ldctq_score_grad --

    @staticmethod
    def _nhw(images):
        a = np.ascontiguousarray(images, dtype=np.float32)
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3:
            raise ValueError(f"images must be (N, H, W) or (H, W), got {a.shape}")
        return a

    def score_numpy(self, images):
        a = self._nhw(images)
        out = np.empty(a.shape[0], dtype=np.float64)
        _check(self._lib.ldctq_score(self._h, a.ctypes.data_as(POINTER(c_float)), *a.shape, _f64_ptr(out)))
        return out

    def score_grad_numpy(self, images, upstream=None):
        a = self._nhw(images)
        out = np.empty(a.shape[0], dtype=np.float64)
        grad = np.empty_like(a)
        u = None if upstream is None else np.ascontiguousarray(upstream, dtype=np.float64)
        if u is not None and u.shape != (a.shape[0],):
            raise ValueError("upstream must have N values")
        _check(self._lib.ldctq_score_grad(
            self._h, a.ctypes.data_as(POINTER(c_float)), *a.shape, None if u is None else _f64_ptr(u), _f64_ptr(out),
            grad.ctypes.data_as(POINTER(c_float))))
        return out, grad

    # -- torch: DLPack views through ldctq_score_dlpack / ldctq_score_grad_dlpack --

    def score_torch(self, images):
        """Scores (N,) float64 on the CPU of images (N, H, W) / (N, 1, H, W), any float dtype, strides, device."""
        x = images.detach()
        dl, keep = dl_view(x)
        out = np.empty(x.shape[0], dtype=np.float64)
        _check(self._lib.ldctq_score_dlpack(self._h, ctypes.byref(dl), x.shape[0], _f64_ptr(out)))
        return torch.from_numpy(out)

    def score_grad_torch(self, images, upstream=None):
        """(scores (N,) float64 CPU, gradient like `images`) with upstream (N,) (None: ones)."""
        x = images.detach()
        grad = torch.empty_like(x, memory_format=torch.contiguous_format)
        dl, keep = dl_view(x)
        gdl, gkeep = dl_view(grad)
        out = np.empty(x.shape[0], dtype=np.float64)
        u = None
        if upstream is not None:
            u = np.ascontiguousarray(upstream.detach().cpu().double().numpy() if torch.is_tensor(upstream) else upstream, dtype=np.float64)
        _check(self._lib.ldctq_score_grad_dlpack(
            self._h, ctypes.byref(dl), None if u is None else _f64_ptr(u), x.shape[0], _f64_ptr(out), ctypes.byref(gdl)))
        return torch.from_numpy(out), grad


if torch is not None:

    class QualityScore(torch.autograd.Function):
        """scores = QualityScore.apply(model, images): differentiable with respect to `images`.

        The forward pass computes the scores and, when `images` requires grad, their Jacobian-vector
        product with ones (one ldctq_score_grad_dlpack call); backward scales it per image by
        grad_output (the Jacobian of image i's score touches only image i)."""

        @staticmethod
        def forward(ctx, model, images):
            if images.requires_grad:
                scores, grad = model.score_grad_torch(images)
                ctx.save_for_backward(grad)
            else:
                scores = model.score_torch(images)
            return scores.to(device=images.device, dtype=images.dtype)

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, grad_output):
            (grad,) = ctx.saved_tensors
            scale = grad_output.to(device=grad.device, dtype=grad.dtype).reshape(-1, *[1] * (grad.dim() - 1))
            return None, grad * scale

    def quality_score(model, images):
        """Differentiable per-image scores (N,) of images (N, H, W) or (N, 1, H, W)."""
        return QualityScore.apply(model, images)
