r"""Training unrolled sparse-coding networks on planted codes, with :func:`cscnb.train.fit` (chapter 10).

An unrolled network (:class:`cscnb.nn.LISTACP`, :class:`cscnb.nn.ConvLISTACP`, ...) maps a signal
:math:`x = Dz^\star + e` to iterates :math:`z_1, \dots, z_K`. :func:`fit_unrolled` trains it with Adam
on one of two objectives (chapter 10, ``eq-ch10-training-loss``),

.. math:: \mathcal L_{\text{layerwise}} = \frac1K\sum_{k=1}^{K} \operatorname{mean}_b
          \frac{\|z_k(x_b) - z_b^\star\|_2^2}{\|z_b^\star\|_2^2}, \qquad
          \mathcal L_{\text{last}} = \operatorname{mean}_b \frac{\|z_K(x_b) - z_b^\star\|_2^2}{\|z_b^\star\|_2^2},

through the chapters' one training loop :func:`cscnb.train.fit`: mini-batches drawn by a seeded
generator, the same objective evaluated on held-out validation codes after every epoch, early stopping
when it has not improved for ``patience`` epochs, and the weights of the best validation epoch restored.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..core.validation import check_choice, nonneg_int, positive_int, positive_number
from .fit import FitResult, fit

__all__ = ["OBJECTIVES", "fit_unrolled", "unrolled_loss"]

OBJECTIVES = ("layerwise", "last")


def unrolled_loss(iterates: torch.Tensor, z_star: torch.Tensor, objective: str = "layerwise") -> torch.Tensor:
    r"""The training objective of chapter 10, ``eq-ch10-training-loss``, on a batch.

    ``iterates`` is ``(K + 1, B, *code)`` (:math:`z_0, \dots, z_K` as the networks return them with
    ``return_iterates=True``), ``z_star`` is ``(B, *code)`` with no all-zero code. ``objective="layerwise"``
    averages the relative squared error over layers :math:`1..K`, ``"last"`` uses layer :math:`K` only.
    """
    objective = check_choice(objective, "objective", OBJECTIVES)
    if not isinstance(iterates, torch.Tensor) or not isinstance(z_star, torch.Tensor):
        raise TypeError("iterates and z_star must be torch.Tensors")
    if iterates.ndim != z_star.ndim + 1 or iterates.shape[1:] != z_star.shape or iterates.shape[0] < 2:
        raise ValueError(f"iterates must be (K + 1, *z_star.shape) with K >= 1; got {tuple(iterates.shape)} "
                         f"and z_star {tuple(z_star.shape)}")
    scale = z_star.flatten(1).square().sum(dim=1)                                    # (B,)
    layers = iterates[1:] if objective == "layerwise" else iterates[-1:]             # (K or 1, B, *code)
    squared = (layers - z_star).flatten(2).square().sum(dim=2)                       # (K or 1, B)
    return (squared / scale).mean()


class _Iterates(nn.Module):
    """Wraps an unrolled network so that ``forward(x)`` returns all its iterates (what the loss needs)."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x, return_iterates=True)


def _pair(data, name: str) -> tuple:
    if hasattr(data, "x") and hasattr(data, "z"):         # cscnb.data.PlantedCodes
        data = (data.x, data.z)
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(f"{name} must be a cscnb PlantedCodes or a pair (x, z_star)")
    x, z = data
    if not isinstance(x, torch.Tensor) or not isinstance(z, torch.Tensor):
        raise TypeError(f"{name} must hold torch.Tensors")
    if x.shape[0] != z.shape[0] or x.shape[0] == 0:
        raise ValueError(f"{name}: x and z_star must hold the same non-zero number of samples, "
                         f"got {x.shape[0]} and {z.shape[0]}")
    if bool((z.flatten(1).abs().sum(dim=1) == 0).any()):
        raise ValueError(f"{name}: every code must have a non-zero entry (the loss is relative to ||z*||)")
    return x, z


def fit_unrolled(network: nn.Module, train, val, *, objective: str = "layerwise", epochs: int = 300,
                 patience: int = 20, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                 min_delta: float = 0.0) -> FitResult:
    r"""Train an unrolled network in place on planted codes; early stopping on validation codes (chapter 10).

    Args:
        network: a module whose ``forward(x, return_iterates=True)`` returns the iterates
            ``(K + 1, B, *code)`` (:class:`cscnb.nn.LISTA`, :class:`cscnb.nn.LISTACP`, :class:`cscnb.nn.ALISTA`,
            :class:`cscnb.nn.ConvLISTACP`).
        train, val: training and validation codes, each a :class:`cscnb.data.PlantedCodes` or a pair
            ``(x, z_star)`` with the batch first.
        objective: ``"layerwise"`` or ``"last"`` (:func:`unrolled_loss`, ``eq-ch10-training-loss``); the same
            objective on ``val`` is the validation metric.
        epochs: the maximum number of passes over ``train``.
        patience: stop after this many epochs without an improvement of the validation objective larger than
            ``min_delta`` (default 20).
        min_delta: smallest improvement of the validation objective that resets the patience counter (default 0).
        batch_size, lr, seed: Adam's mini-batch size and learning rate; ``seed`` seeds the mini-batch order.

    Returns:
        :class:`cscnb.train.FitResult` with the mean training objective and the validation objective per epoch.
        The network holds the weights of the best validation epoch; ``stopped_early`` is False when the
        validation objective was still improving after ``epochs`` (not converged).

    A network with the ReLU activation outputs codes :math:`\ge 0`, so it needs non-negative training codes.
    """
    if not isinstance(network, nn.Module):
        raise TypeError(f"network must be an nn.Module (an unrolled solver), got {type(network).__name__}")
    objective = check_choice(objective, "objective", OBJECTIVES)
    x_train, z_train = _pair(train, "train")
    x_val, z_val = _pair(val, "val")
    config = getattr(network, "config", None)
    if getattr(config, "activation", None) == "relu" and bool((z_train < 0).any() or (z_val < 0).any()):
        raise ValueError("activation='relu' needs non-negative codes (planted_sparse_codes(..., nonneg=True)): "
                         "a ReLU network only outputs codes >= 0")
    epochs, patience = positive_int(epochs, "epochs"), positive_int(patience, "patience")
    batch_size, seed = positive_int(batch_size, "batch_size"), nonneg_int(seed, "seed")
    lr = positive_number(lr, "lr")

    def loss(iterates, z_star):
        return unrolled_loss(iterates, z_star, objective)

    return fit(_Iterates(network), x_train, z_train, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
               loss=loss, validation=(x_val, z_val), metric="loss", patience=patience, min_delta=min_delta)
