r"""The CSC layer's iteration at the cost of its convolutions: exact synthesis forms, fused step, step-size state.

The layer (:mod:`cscnb.nn.csc_layer`, chapter 12) runs FISTA on
:math:`\min_{z \ge 0} \lambda\|z\|_1 + \tfrac{\mu}{2}\|z\|^2 + \tfrac12\|x - Az\|^2` with
:math:`A^\top` = ``conv2d(·, W)``. From :math:`z_0 = 0`, :math:`K` steps need :math:`K` analyses and
:math:`K - 1` syntheses (chapter 12, ``eq-ch12-floor``); this module keeps everything else small:

* **Synthesis** :math:`Az`: for stride 1 and padding :math:`p \le k - 1`, ``conv_transpose2d(z, W, padding=p)``
  equals ``conv2d(z, W'``, ``padding=k-1-p)`` with :math:`W'` = ``W`` flipped in space and with its two
  channel axes swapped (a transposed convolution is a correlation with the flipped kernel);
  :func:`synthesis_operator` returns either form (exact adjoint of ``ConvDictionary.analyze``; tested
  against ``ConvDictionary.synthesize``). The two forms differ only in rounding, so the choice is a
  fixed rule (:func:`resolve_synthesis`: ``"auto"`` is ``conv_transpose2d``) and timing both
  (:func:`fastest_synthesis`) happens only on request (``synthesis="timed"``): a choice made by timing
  depends on the machine's load, and through the rounding so do trained weights.
* **One fused map** :class:`FusedProxGrad`: the proximal-gradient step written in residual form
  :math:`T(y) = \operatorname{ReLU}\big(y + \texttt{conv2d}(x - Ay,\ \eta W,\ \text{bias}=-\eta\lambda)\big)`
  (chapter 12, ``eq-ch12-fused``), so :math:`\eta`, :math:`\lambda` and :math:`A^\top x` cost no
  extra pass over the code: the bias carries :math:`-\eta\lambda` and the residual :math:`x - Ay` is
  formed in the (often much smaller) signal space. The updates are in place on fresh convolution
  outputs, which autograd allows (a convolution's backward needs its inputs, not its output).
  :math:`\eta` may be a 0-d tensor on the device (no host sync, no recompilation when it changes).
* **Step size** :class:`PowerIterationStep`: the warm-started power iteration
  (:func:`cscnb.core.operator_norm.power_iteration`) for :math:`\hat L \approx \|A\|^2` (chapter 12,
  ``eq-ch12-step``), its state kept in persistent buffers so that a resumed run continues exactly.
"""
from __future__ import annotations

import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.dictionary import conv_code_size
from ..core.operator_norm import power_iteration
from ..core.prox import nonneg_soft_threshold, soft_threshold
from ..core.validation import check_choice, nonneg_number, positive_int

__all__ = ["SYNTHESES", "SYNTHESIS_CHOICES", "code_shape", "flipped_available", "synthesis_operator",
           "resolve_synthesis", "fastest_synthesis", "synchronize", "conv_gram", "FusedProxGrad",
           "PowerIterationStep"]

#: exact forms of the synthesis Az: "conv2d" (flipped, transposed weight; stride 1 only) or "conv_transpose2d"
SYNTHESES = ("conv2d", "conv_transpose2d")
#: what a layer accepts: a form, "auto" (the fixed rule of resolve_synthesis) or "timed" (fastest_synthesis)
SYNTHESIS_CHOICES = ("auto", "timed", *SYNTHESES)
_CHOICES: dict = {}  # (weight shape, code shape, stride, padding, dtype, device, mode) -> the faster synthesis


def code_shape(weight_shape, signal_size, stride, padding, batch: int) -> tuple:
    r"""Shape of the code :math:`A^\top x` = ``conv2d(x, weight, stride, padding)`` of ``batch`` signals.

    :math:`m_i = \lfloor (n_i + 2p_i - k_i)/s_i \rfloor + 1` per spatial axis (chapter 3, ``eq-conv-analysis``).
    """
    return (batch, weight_shape[0], *conv_code_size(signal_size, weight_shape[2:], stride, padding))


def flipped_available(kernel_size, stride, padding) -> bool:
    """Whether the conv2d form of the synthesis :math:`Az` exists: stride 1 and padding ≤ k − 1 in every axis.

    (Chapter 12, ``eq-ch12-floor``: the synthesis whose time :math:`t_s` enters the floor.)
    """
    return tuple(stride) == (1, 1) and all(p <= k - 1 for p, k in zip(padding, kernel_size, strict=True))


def synthesis_operator(weight: torch.Tensor, stride, padding, signal_size, kind: str = "conv2d"):
    r"""The map :math:`z \mapsto Az`, the exact adjoint of ``conv2d(·, weight, stride, padding)`` on ``signal_size``.

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
        pad = tuple(k - 1 - p for k, p in zip(kernel, padding, strict=True))
        return lambda z: F.conv2d(z, flipped, None, 1, pad)

    def transposed(z):
        # the output_padding that gives back signal_size (several signal sizes share a code size when stride > 1)
        out_pad = tuple(n - ((m - 1) * s + k - 2 * p) for n, m, s, k, p in
                        zip(signal_size, z.shape[2:], stride, kernel, padding, strict=True))
        return F.conv_transpose2d(z, weight, None, stride, padding, out_pad)
    return transposed


def resolve_synthesis(choice: str, weight: torch.Tensor, stride, padding, signal_size, code_shape,
                      backward: bool = False) -> str:
    """The synthesis form a layer runs: ``choice`` itself, or for ``"auto"`` the fixed rule, for ``"timed"`` the timing.

    ``"auto"`` is ``"conv_transpose2d"``: it exists for every stride and padding, and a fixed form makes the
    rounding, hence a trained model, independent of the machine's load (the conv2d form is faster at some
    shapes and slower at others on the CPU we measured, ``benchmarks/README.md``). ``"timed"`` asks
    :func:`fastest_synthesis` (timed once per shape and mode, then cached; never inside ``torch.compile``).
    Chapter 12, ``eq-ch12-floor``.
    """
    if choice == "auto":
        return "conv_transpose2d"
    if choice == "timed":
        return fastest_synthesis(weight, stride, padding, signal_size, code_shape, backward=backward)
    return check_choice(choice, "synthesis", SYNTHESES)


@torch.compiler.disable
def fastest_synthesis(weight: torch.Tensor, stride, padding, signal_size, code_shape, backward: bool = False,
                      repeats: int = 3) -> str:
    r"""The faster exact synthesis :math:`z \mapsto Az` for this shape (timed once per shape, dtype, device and mode).

    Chapter 12, ``eq-ch12-floor``: :math:`t_s` is the time of the fastest exact synthesis.

    ``backward=True`` times forward+backward (the layer asks for it when autograd is on; which form is
    faster can differ between the two modes). The answer is cached. Both forms are exact adjoints; they differ
    only in rounding. Without the conv2d form (stride > 1, large padding) the answer is ``"conv_transpose2d"``.
    So is it under ``torch.use_deterministic_algorithms(True)``: a choice made by timing can differ between
    processes, and with it the rounding of every code, so bit-reproducible runs use one fixed form.
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


def conv_gram(weight: torch.Tensor, stride, padding, signal_size):
    r"""The map :math:`v \mapsto A^\top A v` with :math:`A^\top` = ``conv2d(·, weight, stride, padding)``.

    Plain ``conv_transpose2d`` and ``conv2d`` (no argument checks, no device sync): the operator whose norm
    :class:`PowerIterationStep` estimates (chapter 12, ``eq-ch12-step``).
    """
    synthesize = synthesis_operator(weight, stride, padding, signal_size, "conv_transpose2d")
    stride, padding = tuple(stride), tuple(padding)
    return lambda v: F.conv2d(synthesize(v), weight, None, stride, padding)


class FusedProxGrad:
    r"""The proximal-gradient map :math:`T` of chapter 12 (``eq-ch12-prox-grad``) in residual form (``eq-ch12-fused``).

    .. math:: T(y) = \frac{\operatorname{ReLU}\big(y + \eta A^\top(x - Ay) - \eta\lambda\big)}{1 + \eta\mu}
              = \operatorname{prox}_{\eta g}\big(y - \eta A^\top(Ay - x)\big),

    (soft threshold instead of ReLU when ``nonneg=False``). ``first()`` is :math:`T(0)`, one convolution
    with bias and no synthesis. ``weight`` is used as given; ``lam`` is a scalar, per-channel ``(m,)``
    or code-broadcastable tensor, already validated; ``eta`` a number or a 0-d tensor (read on the
    device: no host sync); ``mu`` a number. Differentiable (plain autograd operations).
    """

    def __init__(self, x, weight, lam, eta, mu: float, nonneg: bool, stride, padding, synthesis: str):
        self.x, self.nonneg = x, nonneg
        self.stride, self.padding = tuple(stride), tuple(padding)
        # ReLU(u)/(1+s) = ReLU(u/(1+s)): the elastic-net shrink is folded into the weights and into y's coefficient
        self.y_scale = 1.0 / (1.0 + eta * mu) if mu else None
        coefficient = eta * self.y_scale if mu else eta
        self.analysis_weight = coefficient * weight
        m = weight.shape[0]
        self.bias, self.threshold = None, None
        per_channel = lam.ndim <= 1 or (lam.ndim == 3 and tuple(lam.shape[1:]) == (1, 1))
        if nonneg and per_channel:
            self.bias = (-coefficient * lam).reshape(-1).expand(m).contiguous()  # −ηλ per channel, in the conv
        elif nonneg:
            self.threshold = coefficient * lam  # a spatially varying λ: one subtraction per step
        else:
            self.threshold = coefficient * (lam.reshape(-1, 1, 1) if lam.ndim == 1 else lam)
        # −A: the residual x − Ay is then one in-place addition on the synthesis output
        self.negative_synthesis = synthesis_operator(-weight, stride, padding, tuple(x.shape[2:]), synthesis)

    def _prox(self, u):
        if self.nonneg:  # in place on a fresh convolution output; the threshold is in the bias unless spatial
            return nonneg_soft_threshold(u, 0.0 if self.threshold is None else self.threshold, out=u, check=False)
        return soft_threshold(u, self.threshold, check=False)  # not in place: its backward needs u

    def first(self) -> torch.Tensor:
        """:math:`T(0) = \\operatorname{prox}_{\\eta g}(\\eta A^\\top x)` (chapter 12, ``eq-ch12-one-step``)."""
        return self._prox(F.conv2d(self.x, self.analysis_weight, self.bias, self.stride, self.padding))

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        residual = self.negative_synthesis(y).add_(self.x)  # x − Ay, in signal space
        u = F.conv2d(residual, self.analysis_weight, self.bias, self.stride, self.padding)
        if self.y_scale is None:
            return self._prox(u.add_(y))
        if isinstance(self.y_scale, torch.Tensor):
            return self._prox(u.addcmul_(y, self.y_scale))
        return self._prox(u.add_(y, alpha=self.y_scale))


class PowerIterationStep(nn.Module):
    r"""The CSC layer's step-size state: :math:`\hat L \approx \|A\|_2^2` by warm-started power iteration.

    Chapter 12, ``eq-ch12-step``.

    Buffers (persistent, in ``state_dict``): ``vector``, the top-eigenvector estimate :math:`v` of
    :math:`A^\top A` (shape ``(1, m, *code size)``; empty until the first input), and ``estimate``, the
    :math:`\hat L` of the last stored refresh. The rules (:class:`cscnb.nn.CSCLayer` picks one per forward):

    ``make_gram`` (a callable returning :math:`v \\mapsto A^\\top A v`, :func:`conv_gram`) is called only when
    iterations run.

    * :meth:`ensure` — a *cold start* when ``vector`` does not fit the input's code size (first input, a new
      size): ``INITIAL_ITERS`` iterations from a seeded random vector, stored;
    * :meth:`refresh` — ``power_iters`` iterations from ``vector`` with the current weight, stored (every
      training step, as the SDNet authors' ``update_stepsize()`` before every training iteration);
    * :meth:`peek` — the same ``power_iters`` iterations, *not* stored: a pure function of the weight and
      ``vector``, cached while ``token`` (weight storage and version, input size) and ``vector`` are unchanged.

    Every decision depends on the buffers and the input size only, so a run resumed from a ``state_dict``
    repeats the straight run's iterations exactly. Iterations run on the device with ``power_tol`` evaluated
    there (:func:`cscnb.core.operator_norm.power_iteration`, ``on_device=True``): no host sync.
    ``power_iterations`` counts applications of :math:`A^\top A` (for tests and benchmarks). Loading a
    ``state_dict`` without these buffers (saved before they were persistent) leaves a cold start to come.
    """
    INITIAL_ITERS = 50

    def __init__(self, power_iters: int = 2, power_tol: float = 0.0):
        super().__init__()
        self.power_iters = positive_int(power_iters, "power_iters")
        self.power_tol = nonneg_number(power_tol, "power_tol")
        self.register_buffer("vector", torch.zeros(0))
        self.register_buffer("estimate", torch.zeros(()))
        self.size, self.power_iterations, self._cache = None, 0, None

    def reset(self) -> None:
        """Forget the estimate: the next input starts cold."""
        self.vector = self.vector.new_zeros(0)
        with torch.no_grad():
            self.estimate.zero_()
        self.size, self._cache = None, None

    def _run(self, gram, start, n_iter: int) -> tuple:
        result = power_iteration(gram, start, n_iter, tol=self.power_tol, on_device=True)
        self.power_iterations += result.n_iter
        return result.vector, result.estimate

    def _store(self, vector, estimate) -> None:
        with torch.no_grad():
            if self.vector.shape == vector.shape and self.vector.dtype == vector.dtype:
                self.vector.copy_(vector)
            else:
                self.vector = vector.clone()
            self.estimate = self.estimate.to(estimate)
            self.estimate.copy_(estimate)
        self._cache = None

    def ensure(self, make_gram, code_shape, like: torch.Tensor, n_iter: int | None = None) -> None:
        """A cold start (seeded random vector, ``n_iter`` or ``INITIAL_ITERS`` iterations) unless ``vector`` fits.

        ``vector`` fits when it has the shape of one code of ``code_shape``; it is moved to ``like``'s dtype and device.
        """
        shape = (1, *code_shape[1:])
        if tuple(self.vector.shape) == shape and n_iter is None:
            if self.vector.dtype != like.dtype or self.vector.device != like.device:
                self._store(self.vector.to(like), self.estimate.to(like))
            return
        generator = torch.Generator().manual_seed(0)
        start = torch.randn(shape, generator=generator, dtype=torch.float64).to(like)
        self._store(*self._run(make_gram(), start, self.INITIAL_ITERS if n_iter is None else n_iter))

    def refresh(self, make_gram) -> torch.Tensor:
        """``power_iters`` warm iterations from ``vector``, stored; returns :math:`\\hat L` (0-d tensor)."""
        self._store(*self._run(make_gram(), self.vector, self.power_iters))
        return self.estimate

    def peek(self, make_gram, token) -> torch.Tensor:
        """What :meth:`refresh` would return now, without storing it (cached while ``token`` and ``vector`` hold)."""
        key = (token, self.vector.data_ptr(), self.vector._version)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._run(make_gram(), self.vector, self.power_iters)[1])
        return self._cache[1]

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        vector_key, estimate_key = prefix + "vector", prefix + "estimate"
        if vector_key in state_dict and estimate_key in state_dict:
            incoming = state_dict[vector_key]
            if isinstance(incoming, torch.Tensor) and incoming.shape != self.vector.shape:
                self.vector = self.vector.new_empty(incoming.shape)  # a saved estimate for another input size
            super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                          error_msgs)
        else:  # a state_dict from before these buffers were persistent: start cold at the next input
            stripped = {k: v for k, v in state_dict.items() if k not in (vector_key, estimate_key)}
            super()._load_from_state_dict(stripped, prefix, local_metadata, False, [], unexpected_keys, error_msgs)
            self.reset()
        self._cache = None

    def extra_repr(self) -> str:
        return f"power_iters={self.power_iters}, power_tol={self.power_tol}"
