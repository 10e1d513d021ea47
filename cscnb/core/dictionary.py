r"""Dictionaries: the linear operator :math:`D` of a sparse-coding model.

Tensor-layout contract (the same for every solver, layer and chapter):

* ``LinearDictionary``: weight ``(n_features, n_atoms)``; signals ``x`` are
  ``(B, n_features)``, codes ``z`` are ``(B, n_atoms)``.
* ``ConvDictionary``: weight ``(n_atoms, in_channels, *kernel)`` exactly as in
  ``nn.Conv1d``/``nn.Conv2d``; signals ``x`` are ``(B, in_channels, *spatial)``,
  codes ``z`` are ``(B, n_atoms, *code_spatial)``.

``analyze(x)`` applies :math:`D^\top` and ``synthesize(z)`` applies :math:`D`;
they are exact adjoints: :math:`\langle D z, x\rangle = \langle z, D^\top x\rangle`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .operator_norm import CONVERGED_MARGIN, power_iteration
from .validation import check_choice, int_tuple

__all__ = ["Dictionary", "LinearDictionary", "ConvDictionary", "conv_code_size", "mutual_coherence",
           "random_orthonormal"]


def conv_code_size(signal_size, kernel_size, stride, padding, dilation=None) -> tuple:
    r"""Spatial size of ``conv2d``'s (or ``conv1d``'s) output, per axis.

    .. math:: m = \left\lfloor \frac{n + 2p - d(k - 1) - 1}{s} \right\rfloor + 1

    for signal size :math:`n`, padding :math:`p`, dilation :math:`d`, kernel size :math:`k` and stride :math:`s`.
    The code size of a convolutional dictionary (chapter 3, ``eq-conv-analysis``); ``dilation``
    defaults to 1 on every axis.
    """
    dilation = dilation if dilation is not None else (1,) * len(signal_size)
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, p, d, k, s in
                 zip(signal_size, padding, dilation, kernel_size, stride, strict=True))


def _check_finite(t: torch.Tensor, name: str) -> None:
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or Inf values")


class Dictionary:
    """Common interface of all dictionaries (see the module docstring for layouts)."""

    weight: torch.Tensor
    #: relative safety margin on the converged power-iteration estimate (:mod:`cscnb.core.operator_norm`)
    lipschitz_margin: float = CONVERGED_MARGIN

    @property
    def n_atoms(self) -> int:
        raise NotImplementedError

    def analyze(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def synthesize(self, z: torch.Tensor, output_size=None) -> torch.Tensor:
        raise NotImplementedError

    def check_signal(self, x, name: str = "x") -> None:
        raise NotImplementedError

    def signal_size(self, x: torch.Tensor):
        """What ``synthesize`` needs to return a signal shaped like ``x``."""
        return None

    # -- Lipschitz constant of the gradient of ½‖x − Dz‖², i.e. ‖DᵀD‖₂ ------------
    def lipschitz_constant(self, signal_size=None, *, n_iter: int = 500, tol: float = 1e-9) -> float:
        r"""Largest eigenvalue of :math:`D^\top D` by power iteration, times ``1 + lipschitz_margin``.

        The estimate is cached per (weight version, signal size, dtype, device): it is
        recomputed only after the weight changed. Power iteration
        (:func:`cscnb.core.operator_norm.power_iteration`, stopped when the Rayleigh quotient changes by
        less than ``tol`` relative, or after ``n_iter`` iterations) approaches :math:`\|D\|_2^2` from
        below, hence the small safety margin of its policy: it makes :math:`L \ge \|D^\top D\|_2` (so the
        step :math:`1/L` is admissible for ISTA/FISTA, chapter 5, ``eq-ista``) whenever the power iteration
        has come within that margin, which is not guaranteed when the top eigenvalues are close.
        """
        key = self._lipschitz_key(signal_size)
        cache = self.__dict__.setdefault("_lipschitz_cache", {})
        if key not in cache:
            cache.clear()
            cache[key] = self._power_iteration(signal_size, n_iter, tol) * (1 + self.lipschitz_margin)
        return cache[key]

    def _lipschitz_key(self, signal_size):
        w = self.weight
        size = None if signal_size is None else tuple(int(s) for s in signal_size)
        return (w.data_ptr(), w._version, tuple(w.shape), w.dtype, str(w.device), size)

    def _random_code(self, signal_size, generator) -> torch.Tensor:
        raise NotImplementedError

    def _power_iteration(self, signal_size, n_iter: int, tol: float) -> float:
        """The power-iteration estimate of :math:`\\|D^\\top D\\|_2` from a seeded random code (no margin)."""
        start = self._random_code(signal_size, torch.Generator(device="cpu").manual_seed(0))

        def gram(v):
            return self.analyze(self.synthesize(v, output_size=signal_size))
        return float(power_iteration(gram, start, n_iter, tol=tol).estimate)

    def matrix(self, signal_shape=None) -> torch.Tensor:
        r"""The synthesis operator :math:`D` as a dense matrix (small problems: chapters and tests).

        Column :math:`j` is :math:`D e_j`, the synthesis of the :math:`j`-th unit code, so
        ``matrix() @ z.flatten()`` equals ``synthesize(z).flatten()`` for one sample and the analysis
        operator is the transpose. ``signal_shape`` is the shape of one signal without the batch
        dimension: ``(in_channels, length)`` or ``(in_channels, height, width)`` for a
        :class:`ConvDictionary` (required there); ignored by a :class:`LinearDictionary`. Codes and
        signals are flattened in C order (channel first, then position), the layout of
        :meth:`torch.Tensor.flatten`. Shape: ``(signal size, code size)``.
        """
        if signal_shape is None:
            x_shape, output_size = self._matrix_signal_shape(None), None
        else:
            x_shape = (1, *(int(s) for s in signal_shape))
            output_size = x_shape[2:] or None
        code_shape = self.code_shape(x_shape)[1:]
        n_code = math.prod(code_shape)
        basis = torch.eye(n_code, dtype=self.weight.dtype, device=self.weight.device).reshape(n_code, *code_shape)
        return self.synthesize(basis, output_size=output_size).reshape(n_code, -1).T

    def _matrix_signal_shape(self, signal_shape) -> tuple:
        raise ValueError("signal_shape is required for a convolutional dictionary: (in_channels, *spatial size)")

    @torch.no_grad()
    def adjoint_check(self, x: torch.Tensor, z: torch.Tensor) -> float:
        r"""Relative error of :math:`\langle Dz, x\rangle = \langle z, D^\top x\rangle` (for tests)."""
        lhs = (self.synthesize(z, output_size=self.signal_size(x)) * x).sum()
        rhs = (z * self.analyze(x)).sum()
        return float((lhs - rhs).abs() / max(lhs.abs(), rhs.abs(), torch.finfo(x.dtype).tiny))


class LinearDictionary(Dictionary):
    r"""A dense dictionary :math:`D \in \mathbb R^{n \times m}`: ``synthesize(z) = z Dᵀ``, ``analyze(x) = x D``.

    Implements chapter 1, equation ``eq-generative-model`` (:math:`x = Dz + \varepsilon`).

    Args:
        weight: :math:`D`, a floating-point tensor ``(n_features, n_atoms)``; its columns are the atoms.
    """

    def __init__(self, weight: torch.Tensor):
        if not isinstance(weight, torch.Tensor):
            raise TypeError("weight must be a torch.Tensor of shape (n_features, n_atoms), "
                            f"got {type(weight).__name__}")
        if weight.ndim != 2:
            raise ValueError(f"weight must have shape (n_features, n_atoms), got shape {tuple(weight.shape)}")
        if not weight.is_floating_point():
            raise TypeError(f"weight must be a floating-point tensor, got dtype {weight.dtype}")
        _check_finite(weight, "weight")
        self.weight = weight

    @property
    def n_features(self) -> int:
        return self.weight.shape[0]

    @property
    def n_atoms(self) -> int:
        return self.weight.shape[1]

    def check_signal(self, x, name: str = "x") -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(
                f"{name} must have shape (batch, n_features={self.n_features}) for this dictionary, "
                f"got shape {tuple(x.shape)}")

    def code_shape(self, x_shape) -> tuple:
        return (x_shape[0], self.n_atoms)

    def analyze(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight  # (B, n) @ (n, m) -> (B, m)

    def synthesize(self, z: torch.Tensor, output_size=None) -> torch.Tensor:
        return z @ self.weight.T  # (B, m) @ (m, n) -> (B, n)

    def _matrix_signal_shape(self, signal_shape) -> tuple:
        return (1, self.n_features)

    def _random_code(self, signal_size, generator):
        v = torch.randn(1, self.n_atoms, generator=generator, dtype=torch.float64)
        return v.to(dtype=self.weight.dtype, device=self.weight.device)

    def __repr__(self) -> str:
        return f"LinearDictionary(n_features={self.n_features}, n_atoms={self.n_atoms}, dtype={self.weight.dtype})"


class ConvDictionary(Dictionary):
    r"""A convolutional dictionary (1-D or 2-D): ``analyze`` is ``conv{1,2}d``, ``synthesize`` its exact adjoint.

    ``weight`` has shape ``(n_atoms, in_channels, k)`` (1-D) or ``(n_atoms, in_channels, kh, kw)`` (2-D),
    as in ``nn.Conv1d``/``nn.Conv2d``. :math:`D^\top x` = ``conv2d(x, weight, stride, padding, dilation)``
    and :math:`D z` = ``conv_transpose2d(z, weight, ...)`` with the ``output_padding`` that returns
    the signal's exact size. With ``padding_mode="circular"`` the signal is padded periodically and
    the synthesis folds the border back (the adjoint of periodic padding).

    With stride > 1 several signal sizes give the same code size; pass ``output_size`` (the
    signal's spatial size) to ``synthesize`` to get the exact adjoint for that size. Without it the
    smallest such size is used.

    Implements chapter 3, equations ``eq-conv-analysis`` and ``eq-conv-synthesis``.
    """

    def __init__(self, weight: torch.Tensor, stride=1, padding=0, dilation=1, padding_mode: str = "zeros"):
        if not isinstance(weight, torch.Tensor):
            raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
        if weight.ndim not in (3, 4):
            raise ValueError(
                "weight must have shape (n_atoms, in_channels, k) or (n_atoms, in_channels, kh, kw), "
                f"got shape {tuple(weight.shape)}")
        if not weight.is_floating_point():
            raise TypeError(f"weight must be a floating-point tensor, got dtype {weight.dtype}")
        _check_finite(weight, "weight")
        self.padding_mode = check_choice(padding_mode, "padding_mode", ("zeros", "circular"))
        self.weight = weight
        self.dim = weight.ndim - 2
        self.stride = int_tuple(stride, self.dim, "stride", minimum=1)
        self.padding = int_tuple(padding, self.dim, "padding", minimum=0)
        self.dilation = int_tuple(dilation, self.dim, "dilation", minimum=1)
        self._conv = F.conv1d if self.dim == 1 else F.conv2d
        self._conv_t = F.conv_transpose1d if self.dim == 1 else F.conv_transpose2d

    @property
    def n_atoms(self) -> int:
        return self.weight.shape[0]

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1]

    @property
    def kernel_size(self) -> tuple:
        return tuple(self.weight.shape[2:])

    def check_signal(self, x, name: str = "x") -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        layout = "(batch, in_channels, length)" if self.dim == 1 else "(batch, in_channels, height, width)"
        if x.ndim != self.dim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{name} must have shape {layout} with in_channels={self.in_channels} for this dictionary, "
                f"got shape {tuple(x.shape)}")
        pad = self._effective_padding()
        for size, p, d, k in zip(x.shape[2:], pad, self.dilation, self.kernel_size, strict=True):
            if size + 2 * p < d * (k - 1) + 1:
                raise ValueError(f"{name} has spatial size {tuple(x.shape[2:])}, smaller than the dilated kernel")
            if self.padding_mode == "circular" and p > size:
                raise ValueError(f"circular padding {p} exceeds the spatial size {size} of {name}")

    def _effective_padding(self) -> tuple:
        return self.padding

    def signal_size(self, x: torch.Tensor):
        return tuple(x.shape[2:])

    def code_size(self, signal_size) -> tuple:
        return conv_code_size(signal_size, self.kernel_size, self.stride, self.padding, self.dilation)

    def code_shape(self, x_shape) -> tuple:
        return (x_shape[0], self.n_atoms, *self.code_size(x_shape[2:]))

    def _circular_pad(self, x):
        pads = []
        for p in reversed(self.padding):  # F.pad lists the last dimension first
            pads += [p, p]
        return F.pad(x, pads, mode="circular")

    def analyze(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding_mode == "circular":
            return self._conv(self._circular_pad(x), self.weight, None, self.stride, 0, self.dilation)
        return self._conv(x, self.weight, None, self.stride, self.padding, self.dilation)

    def synthesize(self, z: torch.Tensor, output_size=None) -> torch.Tensor:
        code_spatial = z.shape[2:]
        circular = self.padding_mode == "circular"
        padding = (0,) * self.dim if circular else self.padding
        out_pad = []
        for i, (m, p, d, k, s) in enumerate(zip(code_spatial, self.padding, self.dilation, self.kernel_size,
                                                self.stride, strict=True)):
            minimal = (m - 1) * s + d * (k - 1) + 1 - 2 * p  # smallest signal size with this code size
            wanted = minimal if output_size is None else int(output_size[i])
            extra = wanted - minimal
            if not 0 <= extra < s:
                raise ValueError(
                    f"output_size {tuple(output_size)} is not a signal size whose code size is {tuple(code_spatial)}")
            out_pad.append(extra)
        y = self._conv_t(z, self.weight, None, self.stride, padding, tuple(out_pad), 1, self.dilation)
        if circular:
            y = self._fold_circular(y)
        return y

    def _fold_circular(self, y):
        # adjoint of periodic padding: add each padded border onto the samples it copied
        for axis, p in enumerate(self.padding):
            if p == 0:
                continue
            dim = 2 + axis
            n = y.shape[dim] - 2 * p
            core = y.narrow(dim, p, n).clone()
            left, right = y.narrow(dim, 0, p), y.narrow(dim, n + p, p)
            core.narrow(dim, 0, p).add_(right)
            core.narrow(dim, n - p, p).add_(left)
            y = core
        return y

    def _random_code(self, signal_size, generator):
        if signal_size is None:
            raise ValueError("signal_size is required for a ConvDictionary's Lipschitz constant "
                             "(the spatial size of the signals it will code)")
        shape = (1, self.n_atoms, *self.code_size(signal_size))
        v = torch.randn(shape, generator=generator, dtype=torch.float64)
        return v.to(dtype=self.weight.dtype, device=self.weight.device)

    def __repr__(self) -> str:
        return (f"ConvDictionary(n_atoms={self.n_atoms}, in_channels={self.in_channels}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, padding_mode={self.padding_mode!r})")


def mutual_coherence(weight: torch.Tensor) -> float:
    r"""Mutual coherence :math:`\mu(D) = \max_{i \ne j} |d_i^\top d_j| / (\|d_i\|\|d_j\|)`.

    ``weight`` is a dense dictionary ``(n_features, n_atoms)``. Implements chapter 1,
    equation ``eq-mutual-coherence``.
    """
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor of shape (n_features, n_atoms), got {type(weight).__name__}")
    if weight.ndim != 2:
        raise ValueError(f"weight must have shape (n_features, n_atoms), got shape {tuple(weight.shape)}")
    if weight.shape[1] < 2:
        raise ValueError("mutual coherence needs at least two atoms")
    norms = weight.norm(dim=0)
    if (norms == 0).any():
        raise ValueError("weight has an all-zero atom; its coherence is undefined")
    normalized = weight / norms
    gram = (normalized.T @ normalized).abs()
    gram.fill_diagonal_(0)
    return float(gram.max())


def random_orthonormal(n: int, *, generator: torch.Generator | None = None, dtype=torch.float64,
                       device=None) -> torch.Tensor:
    r"""A Haar-random orthonormal matrix :math:`Q \in O(n)` (QR of a Gaussian matrix with sign fix).

    Implements chapter 1's orthogonal dictionary :math:`D^\top D = I` (``eq-orthogonal``).
    """
    a = torch.randn(n, n, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r))
    return q.to(dtype=dtype, device=device)
