r"""Test-time λ of a CSC network: sweep it, and choose it on validation data (chapter 13).

A :class:`cscnb.nn.csc_layer.CSCLayer` solves
:math:`\min_{z\ge0} \lambda\|z\|_1 + \tfrac{\mu}{2}\|z\|^2 + \tfrac12\|x - Az\|^2` in its forward pass, so its
:math:`\lambda` can be changed after training. :func:`lam_sweep` evaluates a model at every :math:`\lambda` of a
grid (in a ``with`` block that restores the trained values); :func:`select_lam` picks the grid value with the best
score. Chapter 13 chooses the test-time :math:`\lambda` for each corruption on a *corrupted validation split*
(``eq-ch13-map`` motivates it; never on test labels) and reports the test accuracy at the chosen value.

``layers="all"`` changes every CSC layer (:func:`cscnb.nn.csc_layer.test_time_lam`); ``layers="stem"`` changes
only the first one in ``model.modules()`` order, which is what the SDNet authors' robust-inference script does
(it changes the stem's :math:`\lambda` only :cite:p:`sdnet_repository`). The two agree for a network with one
CSC layer.
"""
from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from ..core.validation import check_choice, nonneg_number
from ..nn.csc_layer import CSCLayer, test_time_lam

__all__ = ["csc_layers", "lam_sweep", "select_lam", "LAYER_CHOICES"]

#: which CSC layers a sweep changes: every one, or only the first (the stem)
LAYER_CHOICES = ("all", "stem")


def csc_layers(model: nn.Module) -> list:
    """The :class:`CSCLayer` modules of ``model`` in ``model.modules()`` order (``model`` itself included)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    return [m for m in model.modules() if isinstance(m, CSCLayer)]


def _checked_lams(lams) -> list:
    if isinstance(lams, (str, bytes)) or not hasattr(lams, "__iter__"):
        raise TypeError(f"lams must be a sequence of non-negative numbers, got {type(lams).__name__}")
    values = [nonneg_number(lam, "lams[i]") for lam in lams]
    if not values:
        raise ValueError("lams must hold at least one value")
    return values


def lam_sweep(model: nn.Module, score: Callable[[nn.Module], float], lams, *, layers: str = "all") -> list:
    r"""``score(model)`` with the CSC layers' :math:`\lambda` set to each value of ``lams`` in turn.

    Args:
        model: a network with at least one :class:`CSCLayer`; every layer's :math:`\lambda` is restored
            afterwards, also when ``score`` raises.
        score: called with ``model`` once per value, returns a number, e.g.
            ``lambda m: cscnb.train.evaluate(m, x_val, y_val)`` (accuracy in ``eval`` mode, no gradients).
        lams: the grid of non-negative values.
        layers: ``"all"`` (every CSC layer) or ``"stem"`` (only the first CSC layer, as in the SDNet authors'
            robust inference).

    Returns:
        one score per value of ``lams`` (a list of floats). Chapter 13, test-time :math:`\lambda`.
    """
    values = _checked_lams(lams)
    layers = check_choice(layers, "layers", LAYER_CHOICES)
    if not callable(score):
        raise TypeError(f"score must be a callable model -> number, got {type(score).__name__}")
    found = csc_layers(model)
    if not found:
        raise ValueError("model contains no CSCLayer")
    target = model if layers == "all" else found[0]
    scores = []
    for lam in values:
        with test_time_lam(target, lam):
            scores.append(float(score(model)))
    return scores


def select_lam(lams, scores, *, metric: str = "accuracy") -> float:
    r"""The value of ``lams`` with the best score: highest accuracy, or lowest loss for ``metric="loss"``.

    Ties go to the first of the tied values in the order of ``lams`` (list the training value first to prefer
    it). ``scores`` come from :func:`lam_sweep` on *validation* data: choosing on test labels would report an
    optimistic test accuracy (chapter 13).
    """
    values = _checked_lams(lams)
    metric = check_choice(metric, "metric", ("accuracy", "loss"))
    scores = [float(s) for s in scores]
    if len(scores) != len(values):
        raise ValueError(f"scores must hold one value per lam: got {len(scores)} scores for {len(values)} values")
    sign = 1.0 if metric == "accuracy" else -1.0
    best = max(range(len(values)), key=lambda i: (sign * scores[i], -i))
    return values[best]
