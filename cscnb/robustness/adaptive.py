r"""SDNet's per-input test-time λ: read the noise off the stem's reconstruction error (chapter 14).

The stem CSC layer of a trained network codes its input :math:`x` by :math:`c(x)` with the dictionary
:math:`A`; its reconstruction error

.. math:: r(x) = \frac{1}{n}\,\|x - A\,c(x)\|_2^2 \qquad (n \text{ entries of } x)

grows with the noise in :math:`x`. The SDNet authors' robust-inference script :cite:p:`sdnet_repository`
records, for every noise level, the accuracy and the mean reconstruction loss of the stem at every λ of
its sweep, the λ with the best accuracy, and fits a straight line between that best λ and the
reconstruction loss — an adaptive rule: estimate the noise from the reconstruction error, read λ off
the line. We implement that rule as follows (the choices of detail are ours):

* the reconstruction error entering the line is the one at the *trained* λ (``reference_lam``) — the only
  one available before λ is chosen — averaged per level over the calibration images (:func:`fit_lam_line`,
  least squares over the levels);
* the line is fitted on *calibration* images (never the images whose accuracy is reported) and applied
  **per input**: :math:`\lambda(x) = a + b\,r(x)`, clipped to the sweep's range and rounded to the nearest
  grid value, so that a batch runs once per distinct λ (:func:`adaptive_logits`).

The error is the mean squared residual per entry (:math:`1/n` makes it comparable across image sizes;
the line absorbs any constant factor).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from ..core.dictionary import ConvDictionary
from .sweeps import csc_layers

__all__ = ["stem_layer", "forward_with_stem_error", "LamLine", "fit_lam_line", "adaptive_logits"]


def stem_layer(model: nn.Module):
    """The first :class:`~cscnb.nn.csc_layer.CSCLayer` of ``model`` (``model.modules()`` order): the stem."""
    layers = csc_layers(model)
    if not layers:
        raise ValueError("model contains no CSCLayer")
    return layers[0]


def forward_with_stem_error(model: nn.Module, x: torch.Tensor) -> tuple:
    r"""``(logits, r)``: the model's output and the stem's reconstruction error :math:`r(x_n)` per input.

    :math:`r` is :math:`\|x_s - A c\|^2` divided by the number of entries of :math:`x_s`, where
    :math:`x_s` is the stem's input, :math:`c` its output and :math:`A` its dictionary (the unit-norm
    atoms the layer uses). One forward pass; run it under ``torch.no_grad()`` in ``eval`` mode.
    Chapter 14, :math:`r(x)` of ``eq-ch14-adaptive``.
    """
    stem = stem_layer(model)
    seen = {}

    def hook(module, inputs, output):
        seen["x"], seen["c"] = inputs[0], output

    handle = stem.register_forward_hook(hook)
    try:
        logits = model(x)
    finally:
        handle.remove()
    if "x" not in seen:
        raise ValueError("the model's forward pass did not run its stem CSC layer")
    stem_input, code = seen["x"], seen["c"]
    dictionary = ConvDictionary(stem.dictionary_weight().detach().to(code.dtype), stride=stem.stride,
                                padding=stem.padding)
    residual = stem_input - dictionary.synthesize(code, output_size=tuple(stem_input.shape[2:])).to(stem_input.dtype)
    return logits, residual.square().flatten(1).mean(dim=1)


@dataclass(frozen=True)
class LamLine:
    r"""The fitted rule :math:`\lambda(r) = a + b\,r`, clipped to ``[low, high]`` and rounded to ``grid``."""
    intercept: float
    slope: float
    grid: tuple
    reference_lam: float
    points: tuple = ()          # (mean error, best λ) of every calibration level the line was fitted to

    def choose(self, errors: torch.Tensor) -> torch.Tensor:
        """The grid value of :math:`\\lambda(r)` nearest to the line, per input (chapter 14, ``eq-ch14-adaptive``)."""
        grid = torch.tensor(self.grid, dtype=torch.float64, device=errors.device)
        raw = (self.intercept + self.slope * errors.to(torch.float64)).clamp(float(grid.min()), float(grid.max()))
        return grid[(raw[:, None] - grid[None, :]).abs().argmin(dim=1)]

    def as_dict(self) -> dict:
        return {"intercept": self.intercept, "slope": self.slope, "grid": list(self.grid),
                "reference_lam": self.reference_lam, "points": [list(p) for p in self.points]}


def fit_lam_line(errors, best_lams, *, grid, reference_lam: float) -> LamLine:
    r"""Least-squares line :math:`\lambda = a + b\,r` through the points ``(errors[k], best_lams[k])``.

    ``errors``: the mean stem reconstruction error at ``reference_lam`` of each calibration level;
    ``best_lams``: the grid λ with the best calibration accuracy at that level. Needs two distinct errors.
    The line :math:`(a, b)` of chapter 14, ``eq-ch14-adaptive``.
    """
    r = np.asarray([float(v) for v in errors], dtype=np.float64)
    lam = np.asarray([float(v) for v in best_lams], dtype=np.float64)
    if r.shape != lam.shape or r.ndim != 1:
        raise ValueError(f"errors and best_lams must be two sequences of equal length, got {r.shape} and {lam.shape}")
    if not (np.isfinite(r).all() and np.isfinite(lam).all()):
        raise ValueError("errors and best_lams must be finite")
    if np.unique(r).size < 2:
        raise ValueError("fitting a line needs at least two distinct reconstruction errors")
    design = np.stack([np.ones_like(r), r], axis=1)
    (intercept, slope), *_ = np.linalg.lstsq(design, lam, rcond=None)
    grid = tuple(sorted(float(g) for g in grid))
    if not grid:
        raise ValueError("grid must hold at least one λ")
    return LamLine(float(intercept), float(slope), grid, float(reference_lam),
                   tuple((float(a), float(b)) for a, b in zip(r, lam, strict=True)))


def adaptive_logits(model: nn.Module, x: torch.Tensor, line: LamLine, *, target: nn.Module | None = None) -> tuple:
    r"""Logits with a per-input λ chosen by ``line`` from the stem error at the reference λ: ``(logits, lams)``.

    The error is measured with the layers of ``target`` (default: the stem) at ``line.reference_lam``;
    each input is then classified with ``target``'s λ set to its chosen grid value (one pass per distinct
    value; the previous λ is restored). Run in ``eval`` mode, under ``torch.no_grad()`` for plain
    evaluation. Chapter 14, ``eq-ch14-adaptive`` applied per input.
    """
    from ..nn.csc_layer import test_time_lam
    target = stem_layer(model) if target is None else target
    with test_time_lam(target, line.reference_lam):
        logits, errors = forward_with_stem_error(model, x)
    lams = line.choose(errors)
    out = logits.clone()
    for value in torch.unique(lams).tolist():
        if value == line.reference_lam:
            continue  # these inputs were classified at the reference λ already
        mask = lams == value
        with test_time_lam(target, value):
            out[mask] = model(x[mask])
    return out, lams
