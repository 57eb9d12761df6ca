"""Agreement of predicted scores with labels, as ``ldctq eval`` and the LDCTIQA2023 challenge compute it.

Arguments are sequences of numbers, numpy arrays or tensors of the same length (at least 2, finite,
not constant); an undefined metric raises :class:`ldctq.errors.MetricError`.
"""

from __future__ import annotations

from typing import Dict, Union

from . import _ldctq


def _values(x) -> list:
    if hasattr(x, "detach"):  # torch.Tensor
        x = x.detach().cpu().double().reshape(-1).tolist()
    elif hasattr(x, "tolist"):  # numpy array
        x = x.reshape(-1).tolist()
    return [float(v) for v in x]


def plcc(pred, label) -> float:
    """Pearson linear correlation."""
    return _ldctq.plcc(_values(pred), _values(label))


def srocc(pred, label) -> float:
    """Spearman rank-order correlation (ties take their average rank)."""
    return _ldctq.srocc(_values(pred), _values(label))


def krocc(pred, label) -> float:
    """Kendall rank-order correlation (tau-b)."""
    return _ldctq.krocc(_values(pred), _values(label))


def overall(pred, label) -> float:
    """The challenge score ``|plcc| + |srocc| + |krocc|`` (at most 3)."""
    return evaluate(pred, label)["overall"]


def evaluate(pred, label) -> Dict[str, Union[float, int]]:
    """Every metric at once: plcc, srocc, krocc, overall, mae, rmse and n."""
    return _ldctq.evaluate(_values(pred), _values(label))


__all__ = ["plcc", "srocc", "krocc", "overall", "evaluate"]
