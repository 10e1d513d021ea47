r"""The stripe (:math:`\ell_{0,\infty}`) norm of convolutional codes and its exhaustive checks (chapters 6, 9, 11).

For a convolutional dictionary with kernels of size :math:`k` (stride 1), the atoms placed at code
positions :math:`q` and :math:`q'` overlap exactly when :math:`|q - q'| \le k - 1` (in every spatial
dimension). The *stripe* at position :math:`q` collects the coefficients of all channels at the
positions :math:`q - (k-1), \dots, q + (k-1)`: every coefficient that can interact with an atom
placed at :math:`q`. The stripe norm counts the non-zeros of the densest stripe,

.. math:: \|\Gamma\|_{0,\infty}^{s} = \max_q \|\gamma_q\|_0 ,

the local sparsity measure of convolutional sparse coding (chapter 9, ``eq-ch9-stripe-norm``). It is
never larger than the global count :math:`\|\Gamma\|_0` and can be much smaller: a code with one
non-zero every :math:`2k - 1` positions has stripe norm 1 whatever its length. It is subadditive,
:math:`\|\Gamma + \Gamma'\|_{0,\infty}^s \le \|\Gamma\|_{0,\infty}^s + \|\Gamma'\|_{0,\infty}^s`.

Besides the norm itself (:func:`stripe_norm`, :func:`stripe_counts`, and :func:`patch_norm`, the
non-zeros under one atom of the *next* layer) the module enumerates the supports of small
convolutional dictionaries by stripe norm (:func:`stripe_supports`), for the exhaustive checks of
chapter 9: the smallest eigenvalue of the Gram matrix over all supports with stripe norm at most
:math:`k` (:func:`stripe_restricted_min_eigenvalue_bruteforce`) and the smallest stripe norm of a
non-zero null vector (:func:`stripe_spark_bruteforce`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core.dictionary import ConvDictionary
from ..core.validation import check_bool, check_int, check_number, int_tuple
from .bruteforce import smallest_gram_eigenvalue

__all__ = ["stripe_norm", "stripe_counts", "patch_norm", "StripeGeometry", "stripe_geometry", "stripe_supports",
           "stripe_restricted_min_eigenvalue_bruteforce", "stripe_spark_bruteforce"]


def _check_code(code) -> int:
    if not isinstance(code, torch.Tensor):
        raise TypeError(f"code must be a torch.Tensor, got {type(code).__name__}")
    if code.ndim not in (3, 4):
        raise ValueError(f"code must have shape (batch, n_atoms, length) or (batch, n_atoms, height, width), "
                         f"got shape {tuple(code.shape)}")
    return code.ndim - 2


def stripe_counts(code: torch.Tensor, kernel_size, *, circular: bool = False, tol: float = 0.0) -> torch.Tensor:
    r"""Non-zeros of the stripe at every code position: shape ``(batch, *spatial)`` (int64).

    ``code`` has shape ``(batch, n_atoms, length)`` or ``(batch, n_atoms, height, width)``; a
    coefficient counts as non-zero when its magnitude exceeds ``tol``. ``kernel_size`` is the atoms'
    spatial size :math:`k` (an int or one int per spatial dimension). With ``circular=True`` stripes
    wrap around the borders (circular convolution); otherwise positions outside the code are empty.
    """
    dim = _check_code(code)
    kernel = int_tuple(kernel_size, dim, "kernel_size", minimum=1)
    tol = check_number(tol, "tol", minimum=0)
    per_position = (code.abs() > tol).sum(dim=1, keepdim=True).to(torch.float64)  # (B, 1, *spatial)
    half = [k - 1 for k in kernel]
    if circular:
        pads = []
        for h in reversed(half):
            pads += [h, h]
        per_position = F.pad(per_position, pads, mode="circular") if any(half) else per_position
        padding = 0
    else:
        padding = tuple(half)
    ones = torch.ones((1, 1, *(2 * h + 1 for h in half)), dtype=torch.float64, device=code.device)
    conv = F.conv1d if dim == 1 else F.conv2d
    counts = conv(per_position, ones, padding=padding)  # window sums: exact small integers in float64
    return counts.squeeze(1).round().to(torch.int64)


def stripe_norm(code: torch.Tensor, kernel_size, *, circular: bool = False, tol: float = 0.0) -> torch.Tensor:
    r""":math:`\|\Gamma\|_{0,\infty}^{s}` per sample (shape ``(batch,)``, int64): the densest stripe's non-zeros.

    See :func:`stripe_counts` for the arguments; chapter 9, ``eq-ch9-stripe-norm``.
    """
    return stripe_counts(code, kernel_size, circular=circular, tol=tol).flatten(1).amax(dim=1)


def patch_norm(code: torch.Tensor, kernel_size, *, circular: bool = False, tol: float = 0.0) -> torch.Tensor:
    r"""Most non-zeros of ``code`` under one atom of a dictionary with kernel ``kernel_size``, per sample.

    An atom of the next layer's dictionary :math:`D_{i+1}` (stride 1, no padding) placed at position
    :math:`p` covers the code positions :math:`p, \dots, p + k - 1` of :math:`\Gamma_i` in every
    channel, so this is the largest number of non-zeros in a window of :math:`k` consecutive positions
    (all channels): the count :math:`q_i` of the layered stability chains of chapter 6
    (``eq-ch6-local-noise``). With ``circular=True`` windows wrap around. Shape ``(batch,)``, int64.
    """
    dim = _check_code(code)
    kernel = int_tuple(kernel_size, dim, "kernel_size", minimum=1)
    tol = check_number(tol, "tol", minimum=0)
    per_position = (code.abs() > tol).sum(dim=1, keepdim=True).to(torch.float64)
    if any(k > n for k, n in zip(kernel, code.shape[2:], strict=True)):
        raise ValueError(f"kernel_size {kernel} is larger than the code's spatial size {tuple(code.shape[2:])}")
    if circular:
        pads = []
        for k in reversed(kernel):
            pads += [0, k - 1]
        per_position = F.pad(per_position, pads, mode="circular")
    ones = torch.ones((1, 1, *kernel), dtype=torch.float64, device=code.device)
    conv = F.conv1d if dim == 1 else F.conv2d
    return conv(per_position, ones).flatten(1).amax(dim=1).round().to(torch.int64)


# ------------------------------------------------------------------------------------------------
# supports of a small convolutional dictionary, by stripe norm (exhaustive checks of chapter 9)
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StripeGeometry:
    """Where the columns of a convolutional dictionary's global matrix sit (``Dictionary.matrix()`` order).

    Column ``j`` is atom ``j // prod(code_size)`` at the code position ``unravel(j % prod(code_size))``
    (C order, as :meth:`torch.Tensor.flatten` lays out a code).
    """
    n_atoms: int
    code_size: tuple
    kernel_size: tuple
    circular: bool

    @property
    def n_columns(self) -> int:
        return self.n_atoms * math.prod(self.code_size)

    def position(self, column: int) -> tuple:
        flat = column % math.prod(self.code_size)
        out = []
        for n in reversed(self.code_size):
            out.append(flat % n)
            flat //= n
        return tuple(reversed(out))

    def stripe_centres(self, column: int) -> list:
        """Flat indices of the stripe centres whose stripe contains ``column``'s position."""
        ranges = []
        for p, n, k in zip(self.position(column), self.code_size, self.kernel_size, strict=True):
            if self.circular:
                ranges.append(sorted({(p + t) % n for t in range(-(k - 1), k)}))
            else:
                ranges.append([q for q in range(p - (k - 1), p + k) if 0 <= q < n])
        centres = [0]
        for r, n in zip(ranges, self.code_size, strict=True):
            centres = [c * n + q for c in centres for q in r]
        return centres

    def stripe_norm(self, support) -> int:
        """The stripe norm of any code whose support is the column set ``support``."""
        counts = [0] * math.prod(self.code_size)
        for j in support:
            for c in self.stripe_centres(j):
                counts[c] += 1
        return max(counts, default=0)


def stripe_geometry(dictionary: ConvDictionary, signal_shape) -> StripeGeometry:
    r"""The :class:`StripeGeometry` of ``dictionary`` acting on signals of shape ``signal_shape``.

    The stripe theory of chapter 9 needs every column of the global matrix to be a whole atom: stride
    1, dilation 1, and either no padding (``padding_mode="zeros"``, padding 0) or periodic signals
    (``padding_mode="circular"`` with :math:`2p = k - 1`, so there is one atom per signal position,
    and signals of length at least :math:`2k - 1`, so a stripe never wraps onto itself).
    ``signal_shape`` is ``(in_channels, *spatial)``, as for :meth:`~cscnb.Dictionary.matrix`.
    """
    if not isinstance(dictionary, ConvDictionary):
        raise TypeError(f"dictionary must be a cscnb ConvDictionary, got {type(dictionary).__name__}")
    if set(dictionary.stride) != {1} or set(dictionary.dilation) != {1}:
        raise ValueError("stripe geometry needs stride=1 and dilation=1 (every column a shifted atom)")
    if not isinstance(signal_shape, (tuple, list)):
        raise TypeError(f"signal_shape must be a tuple (in_channels, *spatial), got {type(signal_shape).__name__}")
    if len(signal_shape) != dictionary.dim + 1:
        raise ValueError(f"signal_shape must be (in_channels, *spatial) with {dictionary.dim} spatial sizes, "
                         f"got {tuple(signal_shape)}")
    spatial = tuple(check_int(s, "signal_shape", minimum=1) for s in signal_shape[1:])
    kernel = dictionary.kernel_size
    circular = dictionary.padding_mode == "circular"
    if circular:
        if any(2 * p != k - 1 for p, k in zip(dictionary.padding, kernel, strict=True)):
            raise ValueError("a circular dictionary needs padding (k - 1) / 2 per dimension (one atom per position)")
        if any(n < 2 * k - 1 for n, k in zip(spatial, kernel, strict=True)):
            raise ValueError(f"circular signals must be at least 2k - 1 long, got {spatial} for kernel {kernel}")
    elif set(dictionary.padding) != {0}:
        raise ValueError("a zero-padded dictionary must have padding=0 (border columns would be truncated atoms)")
    dictionary.check_signal(torch.empty(1, dictionary.in_channels, *spatial), "a signal of signal_shape")
    return StripeGeometry(dictionary.n_atoms, tuple(dictionary.code_size(spatial)), kernel, circular)


def stripe_supports(geometry: StripeGeometry, max_stripe: int, *, maximal: bool = False,
                    max_supports: int = 2_000_000) -> list:
    r"""Every support (sorted tuple of global column indices) with stripe norm at most ``max_stripe``.

    Depth-first enumeration that adds columns in increasing order and prunes as soon as a stripe would
    hold more than ``max_stripe`` non-zeros (the stripe norm only grows when columns are added). With
    ``maximal=True`` only the supports to which no column can be added are returned: every other
    support is contained in one of them. The empty support is included unless ``maximal``. Raises
    ``ValueError`` beyond ``max_supports`` supports.
    """
    if not isinstance(geometry, StripeGeometry):
        raise TypeError(f"geometry must be a StripeGeometry (see stripe_geometry), got {type(geometry).__name__}")
    max_stripe = check_int(max_stripe, "max_stripe", minimum=1)
    maximal = check_bool(maximal, "maximal")
    max_supports = check_int(max_supports, "max_supports", minimum=1)
    n = geometry.n_columns
    centres = [geometry.stripe_centres(j) for j in range(n)]
    counts = [0] * math.prod(geometry.code_size)
    found, current = [], []

    def fits(j):
        return all(counts[c] < max_stripe for c in centres[j])

    def visit(start):
        if not maximal or not any(fits(j) for j in range(n) if j not in current):
            found.append(tuple(current))
            if len(found) > max_supports:
                raise ValueError(f"more than max_supports={max_supports} supports: use a shorter signal, fewer "
                                 "atoms or a smaller max_stripe")
        for j in range(start, n):
            if fits(j):
                for c in centres[j]:
                    counts[c] += 1
                current.append(j)
                visit(j + 1)
                current.pop()
                for c in centres[j]:
                    counts[c] -= 1

    visit(0)
    return found


def _grouped(supports):
    by_size = {}
    for s in supports:
        if s:
            by_size.setdefault(len(s), []).append(s)
    for size, group in sorted(by_size.items()):
        yield size, torch.tensor(group, dtype=torch.long).reshape(len(group), size)


def stripe_restricted_min_eigenvalue_bruteforce(dictionary: ConvDictionary, signal_shape, k: int, *,
                                                return_vector: bool = False, supports=None,
                                                max_supports: int = 2_000_000):
    r"""Smallest eigenvalue of :math:`D_T^\top D_T` over every support :math:`T` with stripe norm at most ``k``:

    .. math:: \lambda_k^{s}(D) = \min_{\|v\|_{0,\infty}^{s} \le k,\ v \ne 0} \|Dv\|_2^2 / \|v\|_2^2 ,

    by enumerating the maximal such supports (a sub-support cannot have a smaller eigenvalue, by
    Cauchy interlacing) of the global matrix :meth:`~cscnb.Dictionary.matrix`. Chapter 9 proves
    :math:`\lambda_k^{s} \ge 1 - \mu(k - 1)` for unit-norm atoms (``eq-ch9-stripe-eigenvalue``). With
    ``return_vector`` also returns a unit vector attaining it (flattened code, global column order).
    ``supports`` may pass the maximal supports already enumerated (:func:`stripe_supports` with
    ``maximal=True``) to skip the enumeration.
    """
    geometry = stripe_geometry(dictionary, signal_shape)
    k = check_int(k, "k", minimum=1)
    D = dictionary.matrix(tuple(signal_shape)).detach()
    if supports is None:
        supports = stripe_supports(geometry, k, maximal=True, max_supports=max_supports)
    elif any(geometry.stripe_norm(s) > k for s in supports):
        raise ValueError(f"supports holds a support with stripe norm above k={k}")
    smallest, vector = smallest_gram_eigenvalue(D, (group for _, group in _grouped(supports)))
    return (smallest, vector) if return_vector else smallest


def stripe_spark_bruteforce(dictionary: ConvDictionary, signal_shape, *, max_stripe: int | None = None,
                            rtol: float | None = None, max_supports: int = 2_000_000):
    r"""The stripe spark :math:`\min\{\|z\|_{0,\infty}^{s} : Dz = 0,\ z \ne 0\}`, by enumeration.

    The smallest :math:`k` for which some support with stripe norm at most :math:`k` has linearly
    dependent columns (rank by SVD, tolerance ``rtol`` as in ``torch.linalg.matrix_rank``). Returns
    ``inf`` if no support up to ``max_stripe`` (default: the number of columns) is dependent. Chapter 9
    proves it is at least :math:`1 + 1/\mu` (``thm-ch9-stripe``).
    """
    geometry = stripe_geometry(dictionary, signal_shape)
    largest = geometry.n_columns if max_stripe is None else check_int(max_stripe, "max_stripe", minimum=1)
    D = dictionary.matrix(tuple(signal_shape)).detach()
    for k in range(1, largest + 1):
        for size, supports in _grouped(stripe_supports(geometry, k, maximal=True, max_supports=max_supports)):
            ranks = torch.linalg.matrix_rank(D[:, supports].permute(1, 0, 2), rtol=rtol)
            if (ranks < size).any():
                return k
    return math.inf
