r"""What a training run costs: FLOPs counted on the model, a CSC layer's closed-form count, wall time (chapter 14).

:func:`training_flops` counts the multiply-accumulates of a training step with
:class:`torch.utils.flop_counter.FlopCounterMode` (convolutions and matrix products, forward and
backward), :func:`csc_layer_macs` is the closed-form count of a CSC layer (chapter 14,
``eq-ch14-csc-macs``) and :func:`training_hours` turns a count into wall time for an *assumed*
throughput (``eq-ch14-walltime``).
"""
from __future__ import annotations

import contextlib

import torch

from ..core.validation import nonneg_int, nonneg_number, positive_int, positive_number

__all__ = ["csc_layer_macs", "training_flops", "training_hours"]


def csc_layer_macs(conv_macs: int, n_iter: int) -> int:
    r"""Multiply-accumulates of a CSC layer's forward pass: :math:`(2K - 1)\,M` (chapter 14, ``eq-ch14-csc-macs``).

    :math:`K` FISTA steps from :math:`z_0 = 0` in residual form compute :math:`K` analyses (:math:`A^\top x`,
    then :math:`A^\top(x - Ay_k)` per further step) and :math:`K - 1` syntheses :math:`Ay_k`, each costing the
    :math:`M` MACs of the ``Conv2d`` it replaces — for the ``conv_transpose2d`` synthesis (the layer's
    ``synthesis="auto"``); the ``conv2d`` form of the synthesis costs :math:`M` only with "same" padding.
    """
    conv_macs, n_iter = nonneg_int(conv_macs, "conv_macs"), positive_int(n_iter, "n_iter")
    return (2 * n_iter - 1) * conv_macs


def _warm_up(model: torch.nn.Module, x: torch.Tensor) -> None:
    # the CSC layers' first call at a new input size runs their power iterations, and a layer may time its
    # implementations (synthesis="timed") on its first call in each grad mode; neither may be counted
    with torch.no_grad():
        model(x)
    model(x).sum().backward()


def training_flops(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    r"""FLOPs (2 per multiply-accumulate) of one training step on the batch ``(x, y)``, and of evaluation.

    Counted by ``FlopCounterMode``: convolutions (including transposed ones) and matrix products of the
    forward pass, the cross-entropy loss and the backward pass; elementwise work (batch norm, ReLU,
    prox) is not counted. Returns ``{"forward", "train_step"}`` per image. The model's CSC layers count with
    their step size frozen (:func:`cscnb.nn.csc_layer.frozen_step_size`): the warm power iterations a
    training step runs at batch size 1 (``power_iters`` analyses and syntheses per layer) are left out.
    Feeds chapter 14, ``eq-ch14-walltime``.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from ..nn.csc_layer import CSCLayer, frozen_step_size
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or not isinstance(y, torch.Tensor) or len(y) != len(x):
        raise ValueError("x must be a batch tensor and y a label tensor of the same length")
    was_training = model.training
    try:
        model.train()
        _warm_up(model, x)
        model.zero_grad(set_to_none=True)
        frozen = frozen_step_size(model) if any(isinstance(m, CSCLayer) for m in model.modules()) \
            else contextlib.nullcontext()
        with frozen:
            model.eval()
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                model(x)
            forward = counter.get_total_flops()
            model.train()
            with FlopCounterMode(display=False) as counter:
                torch.nn.functional.cross_entropy(model(x), y).backward()
            step = counter.get_total_flops()
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return {"forward": forward / len(x), "train_step": step / len(x)}


def training_hours(train_step_flops: float, forward_flops: float, *, train_images: int, test_images: int,
                   epochs: int, flops_per_second: float) -> float:
    r"""Wall time in hours of ``epochs`` epochs (train + test pass) at an assumed sustained throughput.

    .. math:: T = \frac{E\,(N_{\text{train}} F_{\text{step}} + N_{\text{test}} F_{\text{fwd}})}{R}

    (chapter 14, ``eq-ch14-walltime``); :math:`R` = ``flops_per_second`` is an assumption, not a measurement.
    """
    values = dict(train_step_flops=train_step_flops, forward_flops=forward_flops, train_images=train_images,
                  test_images=test_images, epochs=epochs, flops_per_second=flops_per_second)
    for name, value in values.items():
        if name == "flops_per_second":
            positive_number(value, name)
        else:
            nonneg_number(value, name)
    total = epochs * (train_images * train_step_flops + test_images * forward_flops)
    return total / flops_per_second / 3600.0
