"""Scoring on a Ray cluster with Ray Data: ``map_batches`` over a pool of actors, one per worker, each
loading the model once (a GPU each when ``device`` is CUDA).

:func:`score_dataset` scores image files, as ``ldctq score`` does; :func:`score_benchmark` is the
scoring stage of ``ldctq bench`` (the input and the reference of every image of a data set, and the
outputs of denoisers saved with ``--save-images``). Both give the scores of a single-process run (equal
to rounding: only the batching differs), in the input order, as a pandas DataFrame.

Needs ``ray[data]`` (``pip install 'ray[data]'``; ``make setup`` installs it). Call ``ray.init(...)``
first to join a cluster; otherwise Ray starts a local one.
"""

from __future__ import annotations

import os
from typing import Dict, Iterable, List, Optional, Union

import numpy as np
import torch

import ldctq
from . import _ldctq

_LDCTIQA = (-300.0, 1400.0)


class _Scorer:
    """A Ray Data actor: one model, loaded once; scores the rows of each batch."""

    def __init__(self, model: str, settings, device: str, dtype: torch.dtype, threads: int, raw_as, kind: str):
        if threads > 0:
            torch.set_num_threads(threads)
        if device.startswith("cuda"):
            device = "cuda"  # Ray hands each actor its own GPU (CUDA_VISIBLE_DEVICES)
        self.model = ldctq.QualityModel(model, device=device, dtype=dtype)
        if settings is not None:
            prompt, film_strength = settings
            if self.model.prompt != prompt:
                self.model.prompt = prompt
            self.model.film_strength = film_strength
        self.input = self.model.info.input
        self.raw_as = raw_as
        self.kind = kind

    def _scores(self, images: List[torch.Tensor]) -> List[float]:
        """Scores of (H, W) frames, batched by size (as the CLI batches consecutive frames)."""
        out: List[float] = [0.0] * len(images)
        by_size: Dict[tuple, List[int]] = {}
        for i, x in enumerate(images):
            by_size.setdefault(tuple(x.shape), []).append(i)
        with torch.no_grad():
            for idx in by_size.values():
                scores = self.model.score(torch.stack([images[i] for i in idx]))
                for i, s in zip(idx, scores.double().cpu().tolist()):
                    out[i] = s
        return out

    def _bench_frame(self, path: str, frame: int) -> torch.Tensor:
        """What ``ldctq bench`` scores: the frame in the LDCTIQA [0, 1] space, then in the model's."""
        x = _ldctq.load_frame(path, frame, "unit", self.raw_as, _LDCTIQA)
        return _ldctq.convert(x, "unit", self.input, _LDCTIQA)

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if self.kind == "files":
            return self._files(batch)
        return self._bench(batch)

    def _files(self, batch):
        index, paths, frames, images = [], [], [], []
        for i, path in zip(batch["index"], batch["path"]):
            for f, x in enumerate(self.model.read(str(path), raw_as=self.raw_as)):
                index.append(int(i))
                paths.append(str(path))
                frames.append(f)
                images.append(x)
        return {
            "index": np.array(index, dtype=np.int64),
            "path": np.array(paths, dtype=object),
            "frame": np.array(frames, dtype=np.int64),
            "score": np.array(self._scores(images), dtype=np.float64),
        }

    def _bench(self, batch):
        out: Dict[str, np.ndarray] = {"index": batch["index"]}
        n = len(batch["index"])
        for column in [c for c in batch if c.startswith("source_")]:
            method = column[len("source_"):]
            images, rows = [], []
            for j in range(n):
                path, frame = str(batch[column][j]), int(batch["frame"][j])
                if not path:
                    continue  # an image without a reference
                if method == "reference":
                    try:
                        x = self._bench_frame(path, frame)
                    except ldctq.errors.InvalidInputError:
                        x = self._bench_frame(path, 0)  # one reference for every frame, as bench reads it
                else:
                    # saved outputs are single-frame TIFFs
                    x = self._bench_frame(path, frame if method == "input" else 0)
                images.append(x)
                rows.append(j)
            scores = np.full(n, np.nan)
            scores[rows] = self._scores(images)
            out["score_" + method] = scores
        return out


def _dataset(rows: List[dict]):
    import ray.data

    return ray.data.from_items(rows)


def _run(ds, kind: str, model, num_workers: int, batch_size: int, device: str, dtype, threads: int, raw_as):
    import ray.data

    if num_workers < 1 or batch_size < 1:
        raise ldctq.errors.InvalidInputError("num_workers and batch_size must be at least 1")
    gpu = str(device).startswith("cuda")
    if isinstance(model, ldctq.QualityModel):
        model_path, settings = model.info.path, (model.prompt, model.film_strength)
    else:
        model_path, settings = os.fspath(model), None
    return ds.map_batches(
        _Scorer,
        fn_constructor_kwargs=dict(
            model=os.path.abspath(model_path),
            settings=settings,
            device=str(device),
            dtype=dtype,
            threads=threads,
            raw_as=raw_as,
            kind=kind,
        ),
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=num_workers),
        num_cpus=0 if gpu else max(threads, 1),
        num_gpus=1 if gpu else 0,
    ).to_pandas()


def score_dataset(
    paths_or_dataset: Union[Iterable[Union[str, "os.PathLike[str]"]], "ray.data.Dataset"],
    model: Union[str, "os.PathLike[str]", "ldctq.QualityModel"],
    num_workers: int = 1,
    batch_size: int = 16,
    device: str = "cpu",
    *,
    dtype: torch.dtype = torch.float32,
    threads_per_worker: int = 1,
    raw_as: Optional[str] = None,
):
    """Scores every frame of the given image files (folders are searched, as ``ldctq score`` does).

    Args:
        paths_or_dataset: files or folders, or a ``ray.data.Dataset`` with a ``path`` column.
        model: a model or ensemble folder (each actor loads it), or a :class:`ldctq.QualityModel`
            (each actor loads its folder, with its prompt and FiLM strength).
        num_workers: actors, each holding one model (one GPU each when ``device`` is CUDA).
        batch_size: files per batch handed to an actor.
        device: "cpu" or "cuda"; dtype: precision of the weights.
        threads_per_worker: libtorch threads (and Ray CPUs) per CPU actor.
        raw_as: what npy and integer TIFF values are ("unit" or "hu").

    Returns:
        a pandas DataFrame with columns ``path``, ``frame``, ``score``, in the input order (a
        dataset's rows in their order).
    """
    import ray.data

    if isinstance(paths_or_dataset, ray.data.Dataset):
        paths_only = paths_or_dataset.select_columns(["path"])
        paths_only.context.execution_options.preserve_order = True  # the dataset's own row order
        paths = [row["path"] for row in paths_only.iter_rows()]
    else:
        paths = [str(p) for p in paths_or_dataset]
    files: List[str] = []
    for p in paths:
        files.extend(ldctq.list_images(p) if os.path.isdir(p) else [p])
    if not files:
        raise ldctq.errors.InvalidInputError("no image files to score")
    # Workers get absolute paths (their working folder may differ); the result names files as given.
    ds = _dataset([{"index": i, "path": os.path.abspath(f)} for i, f in enumerate(files)])
    df = _run(ds, "files", model, num_workers, batch_size, device, dtype, threads_per_worker, raw_as)
    df = df.sort_values(["index", "frame"]).reset_index(drop=True)
    df["path"] = [files[i] for i in df["index"]]
    return df.drop(columns="index")


def score_benchmark(
    data: Union[str, "os.PathLike[str]"],
    model: Union[str, "os.PathLike[str]", "ldctq.QualityModel"],
    num_workers: int = 1,
    batch_size: int = 16,
    device: str = "cpu",
    *,
    outputs: Optional[Dict[str, Union[str, "os.PathLike[str]"]]] = None,
    limit: Optional[int] = None,
    dtype: torch.dtype = torch.float32,
    threads_per_worker: int = 1,
    raw_as: Optional[str] = None,
):
    """The scoring stage of ``ldctq bench`` on Ray: the score of every image of the data set (LDCTIQA
    layout, CSV manifest or image folder), of its reference when it has one, and of each denoiser's
    output in ``outputs`` (method name -> the folder ``ldctq bench --save-images`` wrote for it,
    ``OUT/images/<method>``). Images are read as the benchmark reads them (the LDCTIQA [0, 1] space,
    then the model's input space).

    Returns:
        a pandas DataFrame with ``file`` (relative to the data set's root), ``frame``, ``label``, then
        ``score_input``, ``score_reference`` (when the set has references) and ``score_<method>``: the
        columns of ``per_image.csv``, unrounded.
    """
    root, samples = _ldctq.open_dataset(os.path.abspath(data))
    root = str(root)
    samples = samples[: len(samples) if limit is None else limit]
    if not samples:
        raise ldctq.errors.InvalidInputError(f"{root}: no images")
    has_refs = any(s[3] is not None for s in samples)
    rows = []
    for i, (path, frame, label, reference) in enumerate(samples):
        path = str(path)
        row = {"index": i, "frame": frame, "source_input": path}
        if has_refs:
            row["source_reference"] = "" if reference is None else str(reference)
        for method, folder in (outputs or {}).items():
            stem = os.path.splitext(os.path.basename(path))[0]
            name = f"{stem}_{frame}.tif" if frame > 0 else f"{stem}.tif"
            row["source_" + method] = os.path.join(os.path.abspath(folder), name)
        rows.append(row)
    df = _run(_dataset(rows), "bench", model, num_workers, batch_size, device, dtype, threads_per_worker, raw_as)
    df = df.sort_values("index").reset_index(drop=True)
    import pandas as pd

    head = pd.DataFrame(
        {
            "file": [_relative(str(s[0]), root) for s in samples],
            "frame": [s[1] for s in samples],
            "label": [s[2] for s in samples],
        }
    )
    scores = df[[c for c in df.columns if c.startswith("score_")]]
    order = ["score_input"] + (["score_reference"] if has_refs else []) + [f"score_{m}" for m in (outputs or {})]
    return pd.concat([head, scores[order]], axis=1)


def _relative(path: str, root: str) -> str:
    """`path` below `root` as the benchmark names it: relative when inside, else as it is."""
    inside = os.path.commonpath([path, root]) == root
    return os.path.relpath(path, root) if inside else path


__all__ = ["score_dataset", "score_benchmark"]
