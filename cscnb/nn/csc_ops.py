r"""The CSC layer's iteration at the cost of its convolutions: fastest exact synthesis, fused step.

The layer (:mod:`cscnb.nn.csc_layer`, chapter 12) runs FISTA on
:math:`\min_{z \ge 0} \lambda\|z\|_1 + \tfrac{\mu}{2}\|z\|^2 + \tfrac12\|x - Az\|^2` with
:math:`A^\top` = ``conv2d(·, W)``. From :math:`z_0 = 0`, :math:`K` steps need :math:`K` analyses and
:math:`K - 1` syntheses (chapter 12, ``eq-ch12-floor``); this module keeps everything else small:

* **Synthesis** :math:`Az`: for stride 1 and padding :math:`p \le k - 1`, ``conv_transpose2d(z, W, padding=p)``
  equals ``conv2d(z, W'``, ``padding=k-1-p)`` with :math:`W'` = ``W`` flipped in space and with its two
  channel axes swapped (a transposed convolution is a correlation with the flipped kernel);
  :func:`synthesis_operator` returns either form (exact adjoint of ``ConvDictionary.analyze``; tested
  against ``ConvDictionary.synthesize``), and :func:`fastest_synthesis` times both once per shape.
* **One fused map** :class:`FusedProxGrad`: the proximal-gradient step written in residual form
  :math:`T(y) = \operatorname{ReLU}\big(y + \texttt{conv2d}(x - Ay,\ \eta W,\ \text{bias}=-\eta\lambda)\big)`
  (chapter 12, ``eq-ch12-fused``), so :math:`\eta`, :math:`\lambda` and :math:`A^\top x` cost no
  extra pass over the code: the bias carries :math:`-\eta\lambda` and the residual :math:`x - Ay` is
  formed in the (often much smaller) signal space. The updates are in place on fresh convolution
  outputs, which autograd allows (a convolution's backward needs its inputs, not its output).
* **Step size** :class:`PowerIterationStep`: the warm-started power iteration for :math:`L \ge \|A\|^2`
  (chapter 12, ``eq-ch12-step``), run only when the weight changed.
"""
from __future__ import annotations

import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.dictionary import conv_code_size
from ..core.validation import check_choice, positive_int

__all__ = ["SYNTHESES", "code_shape", "flipped_available", "synthesis_operator", "fastest_synthesis", "synchronize",
           "FusedProxGrad", "PowerIterationStep"]

#: exact forms of the synthesis Az: "conv2d" (flipped, transposed weight; stride 1 only) or "conv_transpose2d"
SYNTHESES = ("conv2d", "conv_transpose2d")
_CHOICES: dict = {}  # (weight shape, code shape, stride, padding, dtype, device) -> the faster synthesis


def code_shape(weight_shape, signal_size, stride, padding, batch: int) -> tuple:
    r"""Shape of the code :math:`A^\top x` = ``conv2d(x, weight, stride, padding)`` for ``batch`` signals of ``signal_size``.

    :math:`m_i = \lfloor (n_i + 2p_i - k_i)/s_i \rfloor + 1` per spatial axis (chapter 3, ``eq-conv-analysis``).
    """
    return (batch, weight_shape[0], *conv_code_size(signal_size, weight_shape[2:], stride, padding))


def flipped_available(kernel_size, stride, padding) -> bool:
    """Whether the conv2d form of the synthesis :math:`Az` exists: stride 1 and padding ≤ k − 1 in every axis.

    (Chapter 12, ``eq-ch12-floor``: the synthesis whose time :math:`t_s` enters the floor.)
    """
    return tuple(stride) == (1, 1) and all(p <= k - 1 for p, k in zip(padding, kernel_size))


def synthesis_operator(weight: torch.Tensor, stride, padding, signal_size, kind: str = "conv2d"):
    r"""The map :math:`z \mapsto Az`, the exact adjoint of ``conv2d(·, weight, stride, padding)`` for signals of ``signal_size``.

    ``kind="conv2d"``: a correlation with the flipped, channel-transposed weight (stride 1, padding
    :math:`\le k-1`); ``"conv_transpose2d"``: with the ``output_padding`` that returns ``signal_size``.
    Implements chapter 3, ``eq-conv-synthesis``, in the form chapter 12 times (``eq-ch12-floor``).
    """
    stride, padding = tuple(stride), tuple(padding)
    kernel = tuple(weight.shape[2:])
    check_choice(kind, "kind", SYNTHESES)
    if kind == "conv2d":
        if not flipped_available(kernel, stride, padding):
            raise ValueError(f"kind='conv2d' needs stride 1 and padding <= kernel_size - 1, got stride={stride}, "
                             f"padding={padding}, kernel_size={kernel}")
        flipped = weight.flip(2, 3).transpose(0, 1).contiguous()
        pad = tuple(k - 1 - p for k, p in zip(kernel, padding))
        return lambda z: F.conv2d(z, flipped, None, 1, pad)

    def transposed(z):
        # the output_padding that gives back signal_size (several signal sizes share a code size when stride > 1)
        out_pad = tuple(n - ((m - 1) * s + k - 2 * p) for n, m, s, k, p in
                        zip(signal_size, z.shape[2:], stride, kernel, padding))
        return F.conv_transpose2d(z, weight, None, stride, padding, out_pad)
    return transposed


def fastest_synthesis(weight: torch.Tensor, stride, padding, signal_size, code_shape, backward: bool = False,
                      repeats: int = 3) -> str:
    r"""The faster exact synthesis :math:`z \mapsto Az` for this shape (timed once per shape, dtype, device and mode, then cached).

    Chapter 12, ``eq-ch12-floor``: :math:`t_s` is the time of the fastest exact synthesis.

    ``backward=True`` times forward+backward (the layer asks for it when autograd is on: at a
    3-channel stem the conv2d form is faster forward but slower backward). Both forms are exact
    adjoints; they differ only in rounding. Without the conv2d form (stride > 1, large padding) the
    answer is ``"conv_transpose2d"``. So is it under ``torch.use_deterministic_algorithms(True)``: a
    choice made by timing can differ between processes, and with it the rounding of every code, so
    bit-reproducible runs use one fixed form.
    """
    kernel = tuple(weight.shape[2:])
    if not flipped_available(kernel, stride, padding) or torch.are_deterministic_algorithms_enabled():
        return "conv_transpose2d"
    key = (tuple(weight.shape), tuple(code_shape), tuple(stride), tuple(padding), weight.dtype, str(weight.device),
           bool(backward))
    if key not in _CHOICES:
        w = weight.detach().requires_grad_(backward)
        z = torch.zeros(code_shape, dtype=w.dtype, device=w.device, requires_grad=backward)
        best = {kind: float("inf") for kind in SYNTHESES}
        with torch.set_grad_enabled(backward):
            for _ in range(repeats + 1):  # the first round warms up both
                for kind in SYNTHESES:
                    synchronize(w.device)
                    start = time.perf_counter()
                    out = synthesis_operator(w, stride, padding, signal_size, kind)(z)
                    if backward:
                        torch.autograd.grad(out, (z, w), torch.ones_like(out))
                    synchronize(w.device)
                    best[kind] = min(best[kind], time.perf_counter() - start)
        _CHOICES[key] = min(SYNTHESES, key=best.__getitem__)
    return _CHOICES[key]


def synchronize(device) -> None:
    """Wait for queued CUDA work before reading a clock (no-op elsewhere); ``device`` a device or its name."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


class FusedProxGrad:
    r"""The proximal-gradient map :math:`T` of chapter 12 (``eq-ch12-prox-grad``) in fused residual form (``eq-ch12-fused``).

    .. math:: T(y) = \frac{\operatorname{ReLU}\big(y + \eta A^\top(x - Ay) - \eta\lambda\big)}{1 + \eta\mu}
              = \operatorname{prox}_{\eta g}\big(y - \eta A^\top(Ay - x)\big),

    (soft threshold instead of ReLU when ``nonneg=False``). ``first()`` is :math:`T(0)`, one convolution
    with bias and no synthesis. ``weight`` is used as given; ``lam`` is a scalar, per-channel ``(m,)``
    or code-broadcastable tensor, already validated. Differentiable (plain autograd operations).
    """

    def __init__(self, x, weight, lam, eta: float, mu: float, nonneg: bool, stride, padding, synthesis: str):
        self.x, self.nonneg = x, nonneg
        self.stride, self.padding = tuple(stride), tuple(padding)
        scale = 1.0 / (1.0 + eta * mu)  # ReLU(u)/(1+s) = ReLU(u/(1+s)): fold the elastic-net shrink into the weights
        self.y_scale = scale
        self.analysis_weight = (eta * scale) * weight
        m = weight.shape[0]
        self.bias, self.threshold = None, None
        per_channel = lam.ndim <= 1 or (lam.ndim == 3 and tuple(lam.shape[1:]) == (1, 1))
        if nonneg and per_channel:
            self.bias = (-(eta * scale) * lam).reshape(-1).expand(m).contiguous()  # −ηλ per channel, in the conv
        elif nonneg:
            self.threshold = (eta * scale) * lam  # a spatially varying λ: one subtraction per step
        else:
            self.threshold = (eta * scale) * (lam.reshape(-1, 1, 1) if lam.ndim == 1 else lam)
        # −A: the residual x − Ay is then one in-place addition on the synthesis output
        self.negative_synthesis = synthesis_operator(-weight, stride, padding, tuple(x.shape[2:]), synthesis)

    def _prox(self, u):
        if self.nonneg:
            if self.threshold is not None:
                u = u.sub_(self.threshold)
            return u.relu_()
        return u - torch.clamp(u, -self.threshold, self.threshold)  # soft threshold (needs u for its backward)

    def first(self) -> torch.Tensor:
        """:math:`T(0) = \\operatorname{prox}_{\\eta g}(\\eta A^\\top x)` (chapter 12, ``eq-ch12-one-step``)."""
        return self._prox(F.conv2d(self.x, self.analysis_weight, self.bias, self.stride, self.padding))

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        residual = self.negative_synthesis(y).add_(self.x)  # x − Ay, in signal space
        u = F.conv2d(residual, self.analysis_weight, self.bias, self.stride, self.padding)
        u = u.add_(y, alpha=self.y_scale) if self.y_scale != 1.0 else u.add_(y)
        return self._prox(u)


class PowerIterationStep(nn.Module):
    r"""Warm-started estimate of :math:`L = (1 + \text{margin})\|A\|_2^2` (chapter 12, ``eq-ch12-step``).

    Keeps the top-eigenvector estimate :math:`v` of :math:`A^\top A` in a buffer. ``get`` returns the
    cached :math:`L` when the weight token (storage, ``_version``) and the input size are unchanged,
    runs ``steady_iters`` power iterations from :math:`v` when only the weight changed, and recomputes
    from a seeded random vector (``INITIAL_ITERS`` iterations) for a new size. ``power_iterations``
    counts every application of :math:`A^\top A` (for tests and benchmarks).
    """
    INITIAL_ITERS = 50

    def __init__(self, steady_iters: int, margin: float):
        super().__init__()
        self.steady_iters = positive_int(steady_iters, "steady_iters")
        self.margin = margin
        self.register_buffer("vector", torch.zeros(0), persistent=False)
        self.register_buffer("rayleigh", torch.zeros(()), persistent=False)
        self.size, self.token, self.power_iterations = None, None, 0

    def _iterate(self, dictionary, v, n_iter: int, size) -> torch.Tensor:
        tiny = torch.finfo(v.dtype).tiny
        with torch.no_grad(), torch.autocast(device_type=v.device.type, enabled=False):
            v = v / v.norm().clamp_min(tiny)
            for _ in range(n_iter):
                w = dictionary.analyze(dictionary.synthesize(v, output_size=size))
                # ‖AᵀA v‖ with ‖v‖ = 1 is a lower bound on ‖AᵀA‖ = ‖A‖² (and ≥ the Rayleigh quotient vᵀAᵀAv by
                # Cauchy–Schwarz); it comes free with the normalisation, no extra synthesis
                estimate = w.norm()
                v = w / estimate.clamp_min(tiny)
                self.power_iterations += 1
        self.vector, self.rayleigh = v, estimate
        return estimate

    def refresh(self, dictionary, size, n_iter: int, token) -> float:
        """Recompute from a seeded random vector with ``n_iter`` iterations; returns the new :math:`L`."""
        w = dictionary.weight
        generator = torch.Generator().manual_seed(0)
        v = torch.randn((1, dictionary.n_atoms, *dictionary.code_size(size)), generator=generator,
                        dtype=torch.float64).to(dtype=w.dtype, device=w.device)
        self._iterate(dictionary, v, n_iter, size)
        self.size, self.token = size, token
        return self.value()

    def value(self) -> float:
        return float(self.rayleigh) * (1 + self.margin)

    def get(self, dictionary_factory, size, token) -> float:
        if size == self.size and token == self.token:
            return self.value()
        dictionary = dictionary_factory()
        w = dictionary.weight
        if size != self.size or self.vector.dtype != w.dtype or self.vector.device != w.device \
                or self.vector.numel() == 0:
            return self.refresh(dictionary, size, self.INITIAL_ITERS, token)
        self._iterate(dictionary, self.vector, self.steady_iters, size)
        self.token = token
        return self.value()
