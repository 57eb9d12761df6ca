"""ldctq: a differentiable, no-reference quality criterion for low-dose CT, for PyTorch.

A MedSigLIP vision tower with a prompt-conditioned FiLM and three pooled heads gives each CT slice a
score in [0, 4] (higher is better). :class:`QualityModel` scores images; :class:`QualityLoss` is an
``nn.Module`` whose value ``4 - score`` a denoiser can minimise, with gradients from the library's
vector-Jacobian product::

    import torch, ldctq
    loss_fn = ldctq.QualityLoss("models/default")           # frozen criterion, CPU, float32
    denoised = denoiser(low_dose)                            # (N, 1, H, W) in the model's input space
    loss = torch.nn.functional.mse_loss(denoised, target) + 0.1 * loss_fn(denoised)
    loss.backward()

Also: :func:`read_image` (DICOM, TIFF, npy, PNG), :mod:`ldctq.metrics` (PLCC, SROCC, KROCC, overall),
:func:`write_ensemble` (ensemble folders, which :class:`QualityModel` loads like model folders),
:mod:`ldctq.errors` (one exception class per kind of library error) and :mod:`ldctq.ray` (scoring on
a Ray cluster).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import torch  # loads libtorch before the extension, which links the same library

from . import errors, metrics
from . import _ldctq
from .errors import LdctqError

__version__ = _ldctq.__version__

PathLike = Union[str, "os.PathLike[str]"]

_DTYPES = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.bfloat16: "bfloat16",
    torch.float16: "float16",
}


@dataclass(frozen=True)
class ModelInfo:
    """What a model computes and expects (:attr:`QualityModel.info`)."""

    name: str
    path: str
    #: 1 for a model folder, the number of members for an ensemble folder.
    members: int
    higher_is_better: bool
    score_range: Tuple[float, float]
    #: What the pixel values given to the model must mean: "unit" ([0, 1]) or "hu".
    input: str
    #: The HU window (center, width): applied to HU input, or the one [0, 1] input was made with.
    window: Tuple[float, float]
    #: Images of any H x W are resized (differentiably) to image_size x image_size.
    image_size: int
    device: torch.device
    dtype: torch.dtype
    prompt: str
    film_strength: float
    #: "text" (a hand-written prompt) or "learned" (context vectors in prompt.safetensors, then ``prompt``).
    prompt_mode: str
    #: The anatomy words of a model with anatomy prompts (empty otherwise).
    anatomies: List[str]
    #: The anatomy the images are conditioned on (None: the prompt alone).
    anatomy: Optional[str]


class QualityModel:
    """A model folder (``ldctq.json``, ``head.safetensors``) or an ensemble folder (``ensemble.json``).

    Args:
        path: the folder.
        device: where the weights live ("cpu", "cuda", "cuda:1" or a ``torch.device``).
        dtype: precision of the weights and the computation (float32, float64, bfloat16, float16).

    Images are ``(N, H, W)`` or ``(N, 1, H, W)`` tensors of any float dtype and size, in the model's
    input space (``info.input``); tensors already on the model's device are read in place (no copy),
    others are moved. The weights are frozen. Calls on one model are serialized; the GIL is released
    while it computes.
    """

    def __init__(self, path: PathLike, device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float32):
        if dtype not in _DTYPES:
            raise errors.InvalidInputError(f"dtype {dtype}: expected one of {', '.join(map(str, _DTYPES))}")
        self._model = _ldctq.Model(os.fspath(path), str(device), _DTYPES[dtype])

    def __reduce__(self):
        """Pickled as what reloads it (folder, device, dtype, prompt, FiLM strength, anatomy): for
        multiprocessing, torch.distributed spawning and Ray."""
        i = self.info
        return (_reload, (i.path, str(i.device), i.dtype, i.prompt, i.film_strength, i.anatomy))

    @property
    def info(self) -> ModelInfo:
        """Input space, window, image size, score range, device, dtype, prompt and FiLM strength."""
        d = self._model.info()
        d["path"] = os.fspath(d["path"])
        d["device"] = torch.device(d["device"])
        d["dtype"] = getattr(torch, d["dtype"])
        return ModelInfo(**d)

    @property
    def prompt(self) -> str:
        """The clinical prompt that conditions the model (FiLM); setting it runs the text tower once."""
        return self._model.info()["prompt"]

    @prompt.setter
    def prompt(self, text: str) -> None:
        self._model.set_prompt(text)

    @property
    def anatomy(self) -> Optional[str]:
        """The anatomy of the images scored, for a model with anatomy prompts (``info.anatomies``): each
        image is then conditioned on the prompt plus this word; None conditions on the prompt alone."""
        return self._model.info()["anatomy"]

    @anatomy.setter
    def anatomy(self, word: Optional[str]) -> None:
        self._model.set_anatomy(word)

    @property
    def film_strength(self) -> float:
        """The FiLM strength s (0 disables the prompt)."""
        return self._model.info()["film_strength"]

    @film_strength.setter
    def film_strength(self, s: float) -> None:
        self._model.set_film_strength(float(s))

    def set_activation_checkpointing(self, layers_per_segment: int) -> None:
        """Recompute the vision tower in segments of this many layers during the backward pass, keeping
        one activation per segment (less memory, one more forward); 0 turns it off."""
        self._model.set_activation_checkpointing(int(layers_per_segment))

    def score(self, images: torch.Tensor) -> torch.Tensor:
        """Scores ``(N,)`` in [0, 4] of ``images`` (float32; float64 for a float64 model).

        Differentiable with respect to ``images`` when they require grad (and grad mode is on), so the
        score can enter a loss; otherwise computed without a graph.
        """
        _check_tensor(images)
        if images.requires_grad and torch.is_grad_enabled():
            return _Score.apply(images, self._model)
        return self._model.score(images)

    def score_and_grad(
        self, images: torch.Tensor, upstream: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Scores ``(N,)`` and the vector-Jacobian product ``d(sum_i u_i score_i)/d images`` with
        ``upstream`` u ``(N,)`` (ones when None): a tensor of the images' shape, dtype and device."""
        _check_tensor(images)
        return self._model.score_and_grad(images.detach(), None if upstream is None else upstream.detach())

    def quality_map(self, images: torch.Tensor, method: str = "intrinsic") -> torch.Tensor:
        """Quality maps ``(N, H, W)`` of ``images`` (as :meth:`score` takes them), high where quality
        is lost: ``"intrinsic"`` (4 - the patch scores, upsampled bilinearly), ``"gradient"`` (the
        smoothed magnitude of d score / d image), ``"occlusion"`` (the score gained if the 3 x 3
        patches around each patch looked like their surroundings) or ``"smoothing"`` (the first-order
        score gained by smoothing each neighbourhood). As ``ldctq map`` writes them; not differentiable."""
        _check_tensor(images)
        return self._model.quality_map(images.detach(), method)

    def read(self, path: PathLike, raw_as: Optional[str] = None) -> torch.Tensor:
        """The frames of an image file, ``(F, H, W)`` float32, in this model's input space (as
        ``ldctq score`` reads them). ``raw_as`` ("unit" or "hu") says what npy and integer TIFF values
        are."""
        info = self._model.info()
        return read_image(path, info["input"], raw_as=raw_as, window=info["window"])

    def __repr__(self) -> str:
        i = self.info
        return f"QualityModel({i.path!r}, device={str(i.device)!r}, dtype={i.dtype}, input={i.input!r})"


def _reload(path, device, dtype, prompt, film_strength, anatomy=None) -> QualityModel:
    model = QualityModel(path, device, dtype)
    if model.prompt != prompt:
        model.prompt = prompt
    model.film_strength = film_strength
    if anatomy is not None:
        model.anatomy = anatomy
    return model


class _Score(torch.autograd.Function):
    """The score as an autograd node. Each image's score depends on that image only, so the forward pass
    computes the scores and their per-image gradients with the library's vector-Jacobian product (ones
    upstream) in one forward and backward pass of the model, and the backward pass scales them by the
    incoming gradient. Not twice differentiable."""

    @staticmethod
    def forward(ctx, images: torch.Tensor, model) -> torch.Tensor:
        scores, grad = model.score_and_grad(images.detach(), None)
        ctx.save_for_backward(grad)
        return scores

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_scores: torch.Tensor):
        (grad,) = ctx.saved_tensors
        u = grad_scores.to(device=grad.device, dtype=grad.dtype).reshape(-1, *([1] * (grad.dim() - 1)))
        return grad * u, None


def _check_tensor(images) -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")


class QualityLoss(torch.nn.Module):
    """``4 - score``: the distance of each image to the best score, reduced; an ``nn.Module`` for a
    denoiser's loss. Differentiable with respect to the images (the model itself is frozen and has no
    parameters here).

    Args:
        model: a :class:`QualityModel`, or a folder to load one from.
        reduction: "mean" (default), "sum" or "none" (per image, ``(N,)``).
        device, dtype: as :class:`QualityModel`, when ``model`` is a folder.

    The loss has the dtype of the scores (float32; float64 for a float64 model), on the model's device.
    """

    def __init__(
        self,
        model: Union[QualityModel, PathLike],
        reduction: str = "mean",
        device: Union[str, torch.device] = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise errors.InvalidInputError(f"reduction {reduction!r}: expected 'mean', 'sum' or 'none'")
        self.model = model if isinstance(model, QualityModel) else QualityModel(model, device, dtype)
        self.reduction = reduction
        self._best = self.model.info.score_range[1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        per_image = self._best - self.model.score(images)
        if self.reduction == "mean":
            return per_image.mean()
        if self.reduction == "sum":
            return per_image.sum()
        return per_image

    def extra_repr(self) -> str:
        return f"model={self.model.info.path!r}, reduction={self.reduction!r}"


def read_image(
    path: PathLike,
    space: Optional[str] = None,
    *,
    raw_as: Optional[str] = None,
    window: Union[str, Tuple[float, float], None] = None,
) -> torch.Tensor:
    """The frames of an image file (DICOM, TIFF, npy, PNG) as an ``(F, H, W)`` float32 tensor.

    Args:
        path: the file.
        space: "hu" or "unit" to convert to Hounsfield units or to [0, 1] through ``window``; None keeps
            the values as stored (HU for DICOM, [0, 1] for float TIFF and PNG, as is for npy and
            integer TIFF).
        raw_as: what npy and integer TIFF values are ("unit" or "hu"); needed to convert them.
        window: (center, width) in HU or a name ("ldctiqa", the default: -300/1400; "abdomen",
            "chest", "neuro").
    """
    pixels, _stored = _ldctq.read_image(os.fspath(path), space, raw_as, _window(window))
    return pixels


_NAMED_WINDOWS = {"ldctiqa": (-300.0, 1400.0), "abdomen": (50.0, 400.0), "chest": (-600.0, 1500.0), "neuro": (40.0, 80.0)}


def _window(window) -> Optional[Tuple[float, float]]:
    if window is None:
        return None
    if isinstance(window, str):
        try:
            return _NAMED_WINDOWS[window.lower()]
        except KeyError:
            raise errors.InvalidInputError(
                f"window {window!r}: expected (center, width) or one of {', '.join(_NAMED_WINDOWS)}"
            ) from None
    center, width = window
    return float(center), float(width)


def list_images(path: PathLike) -> list:
    """The image files of a file or folder (recursively), sorted, as ``ldctq score`` finds them."""
    return [str(p) for p in _ldctq.list_images(os.fspath(path))]


def write_ensemble(folder: PathLike, members: Sequence[PathLike]) -> None:
    """Writes ``folder/ensemble.json`` naming model folders (relative to ``folder``, or absolute); the
    folder then loads as a :class:`QualityModel` whose score is the members' mean."""
    _ldctq.write_ensemble(os.fspath(folder), [os.fspath(m) for m in members])


__all__ = [
    "QualityModel",
    "QualityLoss",
    "ModelInfo",
    "read_image",
    "list_images",
    "write_ensemble",
    "metrics",
    "errors",
    "LdctqError",
]
