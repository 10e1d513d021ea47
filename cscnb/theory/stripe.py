r"""The stripe (:math:`\ell_{0,\infty}`) norm of convolutional codes (chapters 6, 9 and 11).

For a convolutional dictionary with kernels of size :math:`k` (stride 1), the atoms placed at code
positions :math:`q` and :math:`q'` overlap exactly when :math:`|q - q'| \le k - 1` (in every spatial
dimension). The *stripe* at position :math:`q` collects the coefficients of all channels at the
positions :math:`q - (k-1), \dots, q + (k-1)`: every coefficient that can interact with an atom
placed at :math:`q`. The stripe norm counts the non-zeros of the densest stripe,

.. math:: \|\Gamma\|_{0,\infty}^{s} = \max_q \|\gamma_q\|_0 ,

the local sparsity measure of Papyan, Sulam and Elad's convolutional sparse coding (chapter 6,
``eq-ch6-stripe``). It is never larger than the global count :math:`\|\Gamma\|_0` and can be much
smaller: a code with one non-zero every :math:`2k - 1` positions has stripe norm 1 whatever its length.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.validation import check_number, int_tuple

__all__ = ["stripe_norm", "stripe_counts"]


def stripe_counts(code: torch.Tensor, kernel_size, *, circular: bool = False, tol: float = 0.0) -> torch.Tensor:
    r"""Non-zeros of the stripe at every code position: shape ``(batch, *spatial)`` (int64).

    ``code`` has shape ``(batch, n_atoms, length)`` or ``(batch, n_atoms, height, width)``; a
    coefficient counts as non-zero when its magnitude exceeds ``tol``. ``kernel_size`` is the atoms'
    spatial size :math:`k` (an int or one int per spatial dimension). With ``circular=True`` stripes
    wrap around the borders (circular convolution); otherwise positions outside the code are empty.
    """
    if not isinstance(code, torch.Tensor):
        raise TypeError(f"code must be a torch.Tensor, got {type(code).__name__}")
    if code.ndim not in (3, 4):
        raise ValueError(f"code must have shape (batch, n_atoms, length) or (batch, n_atoms, height, width), "
                         f"got shape {tuple(code.shape)}")
    dim = code.ndim - 2
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

    See :func:`stripe_counts` for the arguments; chapter 6, ``eq-ch6-stripe``.
    """
    return stripe_counts(code, kernel_size, circular=circular, tol=tol).flatten(1).amax(dim=1)
