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

A BatchNorm layer after a CSC layer keeps the running statistics of training, computed at the training
:math:`\lambda`; a new :math:`\lambda` rescales and sparsifies the codes it normalises. ``lam_sweep(...,
recalibrate_on=images)`` separates the two effects (chapter 13): at each :math:`\lambda` it scores a copy of
the model whose BatchNorm statistics :func:`recalibrate_batchnorm` recomputed on ``images`` (no labels).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.nn as nn

from ..core.validation import check_choice, nonneg_number
from ..nn.csc_layer import CSCLayer, test_time_lam

__all__ = ["csc_layers", "lam_sweep", "select_lam", "recalibrate_batchnorm", "LAYER_CHOICES"]

#: which CSC layers a sweep changes: every one, or only the first (the stem)
LAYER_CHOICES = ("all", "stem")

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


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


def lam_sweep(model: nn.Module, score: Callable[[nn.Module], float], lams, *, layers: str = "all",
              recalibrate_on: torch.Tensor | None = None) -> list:
    r"""``score(model)`` with the CSC layers' :math:`\lambda` set to each value of ``lams`` in turn.

    Args:
        model: a network with at least one :class:`CSCLayer`; every layer's :math:`\lambda` is restored
            afterwards, also when ``score`` raises.
        score: called with ``model`` once per value, returns a number, e.g.
            ``lambda m: cscnb.train.evaluate(m, x_val, y_val)`` (accuracy in ``eval`` mode, no gradients).
        lams: the grid of non-negative values.
        layers: ``"all"`` (every CSC layer) or ``"stem"`` (only the first CSC layer, as in the SDNet authors'
            robust inference).
        recalibrate_on: ``None`` (default: the model as trained), or a batch of inputs: then each value is
            scored on a copy of ``model`` whose BatchNorm running statistics were recomputed on these inputs
            at that :math:`\lambda` (:func:`recalibrate_batchnorm`; label-free). ``model`` itself is not
            changed.

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
    if recalibrate_on is not None:
        _check_inputs(recalibrate_on, "recalibrate_on")
        if not any(isinstance(m, _BATCH_NORMS) for m in model.modules()):
            raise ValueError("recalibrate_on was given but model contains no BatchNorm layer")
    scores = []
    for lam in values:
        subject = model if recalibrate_on is None else copy.deepcopy(model)
        target = subject if layers == "all" else csc_layers(subject)[0]
        with test_time_lam(target, lam):
            if recalibrate_on is not None:
                recalibrate_batchnorm(subject, recalibrate_on)
            scores.append(float(score(subject)))
    return scores


def _check_inputs(inputs, name: str) -> None:
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor batch of inputs, got {type(inputs).__name__}")
    if inputs.dim() < 2 or inputs.shape[0] < 2:
        raise ValueError(f"{name} must be a batch of at least 2 inputs (BatchNorm needs a variance), "
                         f"got shape {tuple(inputs.shape)}")


def recalibrate_batchnorm(model: nn.Module, inputs: torch.Tensor) -> nn.Module:
    r"""Recompute the running statistics of every BatchNorm layer of ``model`` on ``inputs``, in place.

    Label-free: one forward pass of the whole batch ``inputs`` with the BatchNorm layers in training mode and
    ``momentum=None`` (a cumulative average, here over one batch), so every layer's running mean and variance
    become the batch mean and (unbiased) variance of *its* inputs (the layers before it normalise with the
    batch statistics, which for one batch are their new running means and, up to the factor
    :math:`n/(n-1)`, variances). Every other module runs in ``eval`` mode; afterwards the whole model is
    in ``eval`` mode and the momenta are restored. Layers with ``track_running_stats=False`` are left alone.
    Chapter 13 uses it to separate a test-time :math:`\lambda` from the BatchNorm statistics trained at
    another :math:`\lambda`.

    Args:
        model: a network with at least one BatchNorm layer.
        inputs: a batch of at least 2 inputs (no labels), e.g. corrupted validation images.

    Returns:
        ``model`` (changed in place), in ``eval`` mode.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    _check_inputs(inputs, "inputs")
    norms = [m for m in model.modules() if isinstance(m, _BATCH_NORMS) and m.track_running_stats]
    if not norms:
        raise ValueError("model contains no BatchNorm layer that tracks running statistics")
    momenta = [m.momentum for m in norms]
    model.eval()
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        with torch.no_grad():
            model(inputs)
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.eval()
    return model


def select_lam(lams, scores, *, metric: str = "accuracy") -> float:
    r"""The value of ``lams`` with the best score: highest accuracy, or lowest loss for ``metric="loss"``.

    Ties go to the first of the tied values in the order of ``lams`` (list the training value first to prefer
    it). ``scores`` come from :func:`lam_sweep` on *validation* data: choosing on test labels would report an
    optimistic test accuracy (chapter 13). Every score must be a finite number: a NaN or infinite score (say a
    diverging loss at some :math:`\lambda`) is a ``ValueError``, never a silent choice.
    """
    values = _checked_lams(lams)
    metric = check_choice(metric, "metric", ("accuracy", "loss"))
    if isinstance(scores, (str, bytes)) or not hasattr(scores, "__iter__"):
        raise TypeError(f"scores must be a sequence of numbers, got {type(scores).__name__}")
    scores = list(scores)
    if len(scores) != len(values):
        raise ValueError(f"scores must hold one value per lam: got {len(scores)} scores for {len(values)} values")
    for i, score in enumerate(scores):
        if isinstance(score, (str, bytes, bool)) or not hasattr(score, "__float__"):
            raise TypeError(f"scores must be numbers, got {type(score).__name__} at index {i}")
        scores[i] = float(score)
        if not math.isfinite(scores[i]):
            raise ValueError(f"scores must be finite, got {scores[i]} at index {i} (lam = {values[i]})")
    sign = 1.0 if metric == "accuracy" else -1.0
    best = max(range(len(values)), key=lambda i: (sign * scores[i], -i))
    return values[best]
