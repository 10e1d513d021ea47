r"""One training loop for the chapters' small models: :func:`fit`, :func:`evaluate`, :func:`summarize`.

:func:`fit` minimises a data loss (cross-entropy by default) plus an optional penalty with Adam on
mini-batches drawn by a seeded generator,

.. math:: \min_\theta\ \frac1B\sum_{b} \ell\big(f_\theta(x_b), y_b\big) + \lambda_t\,R_\theta ,

and, given a validation split, evaluates the validation metric after every epoch, stops when it has
not improved for ``patience`` epochs (convergence of the validation metric), and restores the weights
of the best epoch. Hyper-parameters are then chosen on the validation split, never on test labels;
:func:`summarize` reports a measurement over seeds as mean ± spread.

The GPU-scale training system (DDP, AMP, checkpoints, schedules) is :mod:`cscnb.train.loop`; this
loop is the one the chapters use (chapters 4, 5, 7, 8 and 10–13).
"""
from __future__ import annotations

import copy
import math
import statistics
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.validation import check_choice, nonneg_int, nonneg_number, positive_int, positive_number

__all__ = ["fit", "evaluate", "FitResult", "Penalty", "summarize", "SeedSummary"]

METRICS = ("accuracy", "loss")


class Penalty(Protocol):
    """What :func:`fit` needs of a penalty :math:`\\lambda_t R_\\theta`
    (e.g. :class:`cscnb.nn.sparsity.ActivationPenalty`)."""

    def collect(self, model: nn.Module):
        """A context manager active during the forward pass, recording what :meth:`term` needs."""

    def term(self, step: int, total_steps: int) -> torch.Tensor:
        """The penalty of the batch just forwarded, at optimizer step ``step`` of at most ``total_steps``."""


@dataclass
class FitResult:
    """What :func:`fit` measured, epoch by epoch (ready to plot)."""
    train_loss: list = field(default_factory=list)   # mean data loss per epoch (penalty excluded)
    val_metric: list = field(default_factory=list)   # validation metric after each epoch (empty without validation)
    metric: str = "accuracy"                         # "accuracy" (higher is better) or "loss" (lower is better)
    best_epoch: int | None = None                    # 1-based epoch whose weights the model holds (with validation)
    stopped_early: bool = False                      # True: patience ran out (validation metric plateaued)

    @property
    def epochs_run(self) -> int:
        return len(self.train_loss)

    @property
    def best_val_metric(self) -> float | None:
        return None if self.best_epoch is None else self.val_metric[self.best_epoch - 1]


def _check_pair(x, y, name: str) -> None:
    for tensor, what in ((x, f"{name} inputs"), (y, f"{name} targets")):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{what} must be a torch.Tensor, got {type(tensor).__name__}")
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"{name} inputs must be a non-empty batch, got shape {tuple(x.shape)}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{name} inputs and targets must have the same number of samples, "
                         f"got {x.shape[0]} and {y.shape[0]}")


def _data_loss(loss):
    if loss == "cross_entropy":
        return F.cross_entropy
    if callable(loss):
        return loss
    raise ValueError(f"loss must be 'cross_entropy' or a callable (outputs, targets) -> scalar, got {loss!r}")


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, metric: str = "accuracy",
             loss="cross_entropy", batch_size: int = 1024) -> float:
    r"""Accuracy :math:`\frac1N\sum_n \mathbb 1[\argmax_k f(x_n)_k = y_n]` or mean loss of ``model`` on ``(x, y)``.

    Evaluated in ``eval`` mode without gradients, in batches of ``batch_size``; the model's training mode
    is restored afterwards. ``metric="loss"`` averages ``loss(outputs, targets)`` over samples (a loss
    that averages over its batch, as ``F.cross_entropy`` and ``F.mse_loss`` do by default).
    """
    metric = check_choice(metric, "metric", METRICS)
    _check_pair(x, y, "evaluation")
    batch_size = positive_int(batch_size, "batch_size")
    loss_fn = _data_loss(loss)
    was_training = model.training
    model.eval()
    total = 0.0
    try:
        with torch.no_grad():
            for i in range(0, x.shape[0], batch_size):
                outputs, targets = model(x[i:i + batch_size]), y[i:i + batch_size]
                if metric == "accuracy":
                    total += int((outputs.argmax(1) == targets).sum())
                else:
                    total += float(loss_fn(outputs, targets)) * targets.shape[0]
    finally:
        model.train(was_training)
    return total / x.shape[0]


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 5, batch_size: int = 64,
        lr: float = 3e-3, weight_decay: float = 0.0, seed: int = 0, loss="cross_entropy",
        penalty: Penalty | None = None, validation: tuple | None = None, metric: str | None = None,
        patience: int | None = None, min_delta: float = 0.0, restore_best: bool = True,
        after_step: Callable[[nn.Module], None] | None = None) -> FitResult:
    r"""Train ``model`` on ``(x, y)`` with Adam; early stopping on a validation split (chapters 4–13).

    Args:
        model: the module to train in place (its parameters must require gradients).
        x, y: training inputs (batch first) and targets (class indices for cross-entropy).
        epochs: the maximum number of passes over ``(x, y)``.
        batch_size, lr, weight_decay: mini-batch size and Adam's settings (``weight_decay`` is Adam's, coupled).
        seed: seeds the ``torch.Generator`` that draws every epoch's mini-batch order (the model's own
            initialisation is the caller's: seed it before building the model).
        loss: ``"cross_entropy"`` or a callable ``(outputs, targets) -> scalar``.
        penalty: an optional :class:`Penalty` added to the loss (its value is not in ``train_loss``).
        validation: ``(x_val, y_val)``; the metric is evaluated after every epoch.
        metric: ``"accuracy"`` or ``"loss"``; default accuracy for integer targets, else loss.
        patience: stop after this many epochs without an improvement larger than ``min_delta``
            (requires ``validation``); ``None`` runs all ``epochs``.
        min_delta: smallest improvement of the validation metric that resets the patience counter (default 0).
        restore_best: with ``validation``, leave the weights (and buffers) of the best epoch in ``model``.
        after_step: called with the model after every optimizer step (e.g. a projection onto constraints).

    Returns:
        :class:`FitResult`: per-epoch training loss and validation metric, the best epoch, and whether the
        validation metric stopped improving before ``epochs`` (``stopped_early``). A result whose
        ``stopped_early`` is False with ``patience`` set did not converge within ``epochs``.
    """
    _check_pair(x, y, "training")
    epochs, batch_size = positive_int(epochs, "epochs"), positive_int(batch_size, "batch_size")
    lr, weight_decay = positive_number(lr, "lr"), nonneg_number(weight_decay, "weight_decay")
    seed, min_delta = nonneg_int(seed, "seed"), nonneg_number(min_delta, "min_delta")
    loss_fn = _data_loss(loss)
    if validation is not None:
        if not isinstance(validation, (tuple, list)) or len(validation) != 2:
            raise TypeError("validation must be a pair (x_val, y_val)")
        _check_pair(*validation, "validation")
    if patience is not None:
        patience = positive_int(patience, "patience")
        if validation is None:
            raise ValueError("patience needs validation=(x_val, y_val): early stopping watches the validation metric")
    if metric is None:
        metric = "accuracy" if not y.is_floating_point() else "loss"
    metric = check_choice(metric, "metric", METRICS)
    better = (lambda a, b: a > b + min_delta) if metric == "accuracy" else (lambda a, b: a < b - min_delta)

    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    total_steps = epochs * math.ceil(x.shape[0] / batch_size)
    result = FitResult(metric=metric)
    best_state, since_best, step = None, 0, 0
    model.train()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(x.shape[0], generator=generator).to(x.device)
        total = 0.0
        for i in range(0, x.shape[0], batch_size):
            idx = order[i:i + batch_size]
            with penalty.collect(model) if penalty is not None else nullcontext():
                outputs = model(x[idx])
            data_loss = loss_fn(outputs, y[idx])
            objective = data_loss if penalty is None else data_loss + penalty.term(step, total_steps)
            optimizer.zero_grad()
            objective.backward()
            optimizer.step()
            if after_step is not None:
                after_step(model)
            step += 1
            total += float(data_loss.detach()) * idx.numel()
        result.train_loss.append(total / x.shape[0])
        if validation is None:
            continue
        value = evaluate(model, *validation, metric=metric, loss=loss_fn)
        result.val_metric.append(value)
        if result.best_epoch is None or better(value, result.best_val_metric):
            result.best_epoch, since_best = epoch, 0
            if restore_best:
                best_state = copy.deepcopy(model.state_dict())
        else:
            since_best += 1
            if patience is not None and since_best >= patience:
                result.stopped_early = True
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return result


@dataclass(frozen=True)
class SeedSummary:
    """A measurement repeated over seeds: mean, sample standard deviation, range and count."""
    mean: float
    std: float
    min: float
    max: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.std:.3f} (n = {self.n})"


def summarize(values) -> SeedSummary:
    """Mean ± sample standard deviation (``n − 1`` in the denominator; 0 for one value) of ``values``."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("values must hold at least one measurement")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"values must be finite, got {values}")
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return SeedSummary(statistics.fmean(values), std, min(values), max(values), len(values))
