r"""Feature sparsity: metrics, activation hooks, and training strategies that encourage sparse features.

Chapter 11 measures how sparse the hidden activations of a trained classifier are and what each
strategy below does to the sparsity–accuracy trade-off:

* metrics: :func:`zero_fraction`, :func:`hoyer_sparsity` (Hoyer 2004), per layer through
  :func:`collect_activations` / :func:`feature_sparsity` (forward hooks, always removed);
* penalties on activations: :func:`l1_activation_penalty` (``eq-ch11-l1-penalty``) and
  :func:`hoyer_square_penalty` (DeepHoyer, ``eq-ch11-hoyer-square``);
* activations that build sparsity into the forward pass: :class:`ShiftedReLU` (a bias shift,
  ``eq-ch11-shifted-relu``) and :class:`TopKReLU` (k-winners-take-all, ``eq-ch11-topk``);
* a penalty-weight schedule :func:`linear_warmup` (``eq-ch11-warmup``) and :class:`ActivationPenalty`,
  the scheduled penalty that :func:`cscnb.train.fit` adds to the loss.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn

from ..core.validation import check_number, nonneg_int, nonneg_number

__all__ = ["zero_fraction", "hoyer_sparsity", "collect_activations", "feature_sparsity", "l1_activation_penalty",
           "hoyer_square_penalty", "ShiftedReLU", "TopKReLU", "replace_relus", "linear_warmup",
           "ActivationPenalty", "PENALTIES"]

ACTIVATION_TYPES = (nn.ReLU,)  # extended below by the two sparse activations of this module


def _check_tensor(a, name: str = "a") -> torch.Tensor:
    if not isinstance(a, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(a).__name__}")
    if a.ndim < 1 or a.numel() == 0:
        raise ValueError(f"{name} must be a non-empty tensor with a batch dimension, got shape {tuple(a.shape)}")
    return a


def zero_fraction(a: torch.Tensor) -> float:
    r"""Fraction of exactly-zero entries, :math:`\frac1{|a|}\#\{i : a_i = 0\}` (chapter 11, ``eq-ch11-zero-fraction``).

    Exact zeros are what a ReLU-type activation produces and what sparse inference can skip.
    """
    a = _check_tensor(a)
    return float((a == 0).double().mean())


def hoyer_sparsity(a: torch.Tensor, eps: float = 1e-12) -> float:
    r"""Mean Hoyer sparsity of the samples of ``a`` (first axis = batch) (chapter 11, ``eq-ch11-hoyer-measure``).

    .. math:: \operatorname{hs}(a) = \frac{\sqrt n - \|a\|_1 / \|a\|_2}{\sqrt n - 1} \in [0, 1],

    with :math:`n` the number of entries per sample: 1 for a one-hot vector, 0 for a constant one
    :cite:p:`hoyer2004nonnegative`. An all-zero sample counts as 1 (maximally sparse).
    """
    a = _check_tensor(a).flatten(1) if a.ndim > 1 else _check_tensor(a).unsqueeze(0)
    n = a.shape[1]
    if n < 2:
        raise ValueError(f"a needs at least 2 entries per sample for the Hoyer measure, got {n}")
    l1, l2 = a.abs().sum(1), a.norm(dim=1)
    ratio = torch.where(l2 > eps, l1 / l2.clamp(min=eps), torch.ones_like(l1))
    return float(((math.sqrt(n) - ratio) / (math.sqrt(n) - 1)).mean())


def collect_activations(model: nn.Module, x: torch.Tensor, module_types=None, *, keep_graph: bool = False) -> dict:
    r"""Run ``model(x)`` and return ``{module name: output}`` of every submodule of ``module_types``.

    Defaults to the activation modules (``nn.ReLU`` and this module's :class:`ShiftedReLU`,
    :class:`TopKReLU`). Uses forward hooks that are removed afterwards, even on error. Without
    ``keep_graph`` the outputs are detached and the model runs under ``torch.no_grad()`` in eval mode
    (its mode is restored). Chapter 11, ``eq-ch11-zero-fraction``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    _check_tensor(x, "x")
    module_types = ACTIVATION_TYPES if module_types is None else module_types
    if isinstance(module_types, type):
        module_types = (module_types,)
    if not isinstance(module_types, tuple) or not all(isinstance(t, type) for t in module_types):
        raise TypeError(f"module_types must be a type or a tuple of types, got {module_types!r}")
    outputs, handles = {}, []
    try:
        for name, module in model.named_modules():
            if isinstance(module, module_types):
                def hook(_module, _inputs, output, name=name):
                    outputs[name] = output if keep_graph else output.detach()
                handles.append(module.register_forward_hook(hook))
        if not handles:
            raise ValueError(f"model has no submodule of type {[t.__name__ for t in module_types]}")
        if keep_graph:
            model(x)
        else:
            was_training = model.training
            model.eval()
            try:
                with torch.no_grad():
                    model(x)
            finally:
                model.train(was_training)
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def feature_sparsity(model: nn.Module, x: torch.Tensor, module_types=None) -> dict:
    r"""Per activation layer, :math:`\zeta(a^{(\ell)})` and :math:`\operatorname{hs}(a^{(\ell)})` on inputs ``x``.

    Returns ``{name: {"zero_fraction": ..., "hoyer": ...}}`` with the measures of chapter 11,
    ``eq-ch11-zero-fraction`` and ``eq-ch11-hoyer-measure``, of the activations that
    :func:`collect_activations` records.
    """
    return {name: {"zero_fraction": zero_fraction(a), "hoyer": hoyer_sparsity(a)}
            for name, a in collect_activations(model, x, module_types).items()}


def l1_activation_penalty(activations) -> torch.Tensor:
    r"""Mean absolute activation, summed over layers (chapter 11, ``eq-ch11-l1-penalty``).

    .. math:: R_1(a^{(1)}, \dots, a^{(L)}) = \sum_{\ell} \frac{1}{|a^{(\ell)}|} \sum_i |a^{(\ell)}_i| .

    A strength :math:`\lambda` on this mean weighs one entry of a layer with :math:`n_\ell` entries per sample by
    :math:`\lambda / n_\ell` against a loss averaged over samples, so its single-unit proximal map is the bias
    shift ``relu(u - λ / n_ℓ)`` (theorem ``thm-ch11-single-unit`` with threshold :math:`\lambda / n_\ell`).
    """
    activations = _as_list(activations)
    return sum(a.abs().mean() for a in activations)


def hoyer_square_penalty(activations, eps: float = 1e-12) -> torch.Tensor:
    r"""DeepHoyer's Hoyer-square :cite:p:`yang2020deephoyer` on activations, per sample, normalised by size
    (``eq-ch11-hoyer-square``).

    .. math:: R_H(a^{(1)}, \dots, a^{(L)}) = \sum_\ell \frac{1}{B}\sum_{b=1}^{B}
              \frac{1}{n_\ell}\,\frac{\|a^{(\ell)}_b\|_1^2}{\|a^{(\ell)}_b\|_2^2} \in [0, L],

    scale-invariant in each sample (chapter 11, theorem ``thm-ch11-hoyer``). All-zero samples contribute 0
    (``eps`` guards the division), while a sample with any non-zero entry contributes at least
    :math:`1/n_\ell` per layer: the penalty jumps down when a sample's activations all vanish.
    """
    total = 0.0
    for a in _as_list(activations):
        flat = a.flatten(1)
        ratio = flat.abs().sum(1) ** 2 / (flat.pow(2).sum(1) + eps)
        total = total + ratio.mean() / flat.shape[1]
    return total


def _as_list(activations) -> list:
    if isinstance(activations, dict):
        activations = list(activations.values())
    if isinstance(activations, torch.Tensor):
        activations = [activations]
    if not isinstance(activations, (list, tuple)) or not activations:
        raise TypeError("activations must be a tensor or a non-empty list/tuple/dict of tensors")
    for a in activations:
        _check_tensor(a, "activations")
    return list(activations)


class ShiftedReLU(nn.Module):
    r"""``relu(u - τ)``: a ReLU whose threshold is shifted by a fixed :math:`\tau \ge 0` (``eq-ch11-shifted-relu``).

    This is ``cscnb.nonneg_soft_threshold(u, τ)``, the prox of :math:`\tau a + \iota_{a\ge0}` (chapter 2),
    i.e. the single-unit optimum of the activation-ℓ1 penalty (chapter 11, ``thm-ch11-single-unit``).
    """

    def __init__(self, threshold: float):
        super().__init__()
        self.threshold = nonneg_number(threshold, "threshold")

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return torch.relu(u - self.threshold)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold:g}"


class TopKReLU(nn.Module):
    r"""k-winners-take-all: keep the ``k`` largest of ``relu(u)`` per sample (``eq-ch11-topk``), a variant of the
    top-k of the k-sparse autoencoder :cite:p:`makhzani2013ksparse` (which keeps the k largest of a linear layer).

    .. math:: \operatorname{top}_k(u) = \argmin_{a \ge 0,\ \|a\|_0 \le k} \|a - u\|_2^2,

    with :math:`k = \lceil \text{fraction}\cdot n\rceil` of the :math:`n` entries of each sample (all
    channels and positions). The output equals this argmin when the k-th and (k+1)-th largest values of
    ``relu(u)`` differ; a tie at the k-th value keeps every tied entry (then more than k non-zeros). Chapter 11.
    """

    def __init__(self, fraction: float):
        super().__init__()
        self.fraction = check_number(fraction, "fraction", minimum=0, maximum=1, open_minimum=True)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        flat = torch.relu(u).flatten(1)
        k = max(1, math.ceil(self.fraction * flat.shape[1]))
        kth_largest = flat.topk(k, dim=1).values[:, -1:]
        # the mask is constant a.e., so gradients flow only through the kept entries
        return (flat * (flat >= kth_largest)).view_as(u)

    def extra_repr(self) -> str:
        return f"fraction={self.fraction:g}"


ACTIVATION_TYPES = (nn.ReLU, ShiftedReLU, TopKReLU)


def replace_relus(model: nn.Module, make_activation) -> int:
    r"""Replace every ``nn.ReLU`` :math:`a = \max(u, 0)` of ``model`` in place by ``make_activation()``.

    Builds the networks of chapter 11 whose activations are ``eq-ch11-shifted-relu`` or
    ``eq-ch11-topk``; returns how many modules were replaced. Functional ReLUs (``torch.relu`` inside a
    ``forward``) are not modules and stay. Chapter 11.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not callable(make_activation):
        raise TypeError("make_activation must be callable, returning an nn.Module")
    count = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) is nn.ReLU:
                replacement = make_activation()
                if not isinstance(replacement, nn.Module):
                    raise TypeError(f"make_activation must return an nn.Module, got {type(replacement).__name__}")
                setattr(parent, child_name, replacement)
                count += 1
    return count


def linear_warmup(step: int, warmup_steps: int, strength: float) -> float:
    r"""Penalty weight :math:`\lambda_t = \lambda \min(1, t / T_{\text{warm}})` (chapter 11, ``eq-ch11-warmup``).

    Ramping λ up lets the network first fit the data with dense features before the penalty prunes
    them; ``warmup_steps = 0`` means the full weight from the start.
    """
    step, warmup_steps = nonneg_int(step, "step"), nonneg_int(warmup_steps, "warmup_steps")
    strength = nonneg_number(strength, "strength")
    return strength if warmup_steps == 0 else strength * min(1.0, step / warmup_steps)


PENALTIES = {"l1": l1_activation_penalty, "hoyer": hoyer_square_penalty}


class ActivationPenalty:
    r"""The scheduled activation penalty :math:`\lambda_t R(a^{(1)}, \dots, a^{(L)})` of chapter 11
    (``eq-ch11-training-loss``).

    For :func:`cscnb.train.fit` (``penalty=``): :meth:`collect` records, through forward hooks that are
    always removed, the outputs of the model's activation modules (``nn.ReLU``, :class:`ShiftedReLU`,
    :class:`TopKReLU`) during the forward pass, and :meth:`term` returns ``PENALTIES[kind]`` of them
    weighted by :func:`linear_warmup` over the first ``warmup_fraction`` of the (at most ``total_steps``)
    optimizer steps. ``strength = 0`` adds nothing.
    """

    def __init__(self, kind: str, strength: float, warmup_fraction: float = 0.25):
        if kind not in PENALTIES:
            raise ValueError(f"kind must be one of {sorted(PENALTIES)}, got {kind!r}")
        self.kind = kind
        self.strength = nonneg_number(strength, "strength")
        self.warmup_fraction = check_number(warmup_fraction, "warmup_fraction", minimum=0, maximum=1)
        self._activations: list = []

    @contextlib.contextmanager
    def collect(self, model: nn.Module):
        self._activations = []
        if self.strength == 0:
            yield
            return
        handles = [module.register_forward_hook(lambda _m, _i, output: self._activations.append(output))
                   for module in model.modules() if isinstance(module, ACTIVATION_TYPES)]
        try:
            if not handles:
                raise ValueError("model has no activation module (nn.ReLU, ShiftedReLU, TopKReLU) to penalise")
            yield
        finally:
            for handle in handles:
                handle.remove()

    def term(self, step: int, total_steps: int) -> torch.Tensor:
        if self.strength == 0 or not self._activations:
            return torch.zeros(())
        warmup_steps = int(self.warmup_fraction * total_steps)
        return linear_warmup(step, warmup_steps, self.strength) * PENALTIES[self.kind](self._activations)

    def __repr__(self) -> str:
        return f"ActivationPenalty({self.kind!r}, strength={self.strength}, warmup_fraction={self.warmup_fraction})"
