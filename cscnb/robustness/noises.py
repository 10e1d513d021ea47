r"""The synthetic noises of the SDNet authors' robust-inference script, at their levels (chapter 14).

The authors' code :cite:p:`sdnet_repository` corrupts the clean test images (pixel values in
:math:`[0, 1]`) with four noises at ten or so levels :math:`c` each, clips the result to :math:`[0, 1]`
and only then normalizes it for the network:

* ``gaussian``: :math:`x + c\,\varepsilon`, :math:`c = 0.02, 0.04, \dots, 0.20`;
* ``shot``: :math:`\operatorname{Poisson}(c\,x)/c`, :math:`c = 60, 54, \dots, 6` (fewer photons = more noise);
* ``speckle``: :math:`x\,(1 + c\,\varepsilon)`, :math:`c = 0.1, 0.2, \dots, 0.6` (the step 0.1 is our
  reading of the range 0.1–0.6 the script sweeps);
* ``impulse``: salt-and-pepper noise, a fraction :math:`c = 0.03, 0.06, \dots, 0.27` of the entries set to
  0 or 1 (equally likely),

:math:`\varepsilon` standard normal per entry. The formulas are those of
:mod:`cscnb.robustness.corruptions` (the CIFAR-10-C noises, at other levels), which this module calls.
Levels are listed from the mildest to the most severe.
"""
from __future__ import annotations

import torch

from .corruptions import gaussian_noise, impulse_noise, shot_noise, speckle_noise

__all__ = ["SDNET_NOISE_LEVELS", "SDNET_NOISES", "sdnet_noise", "SDNET_LAMS"]

SDNET_NOISE_LEVELS = {
    "gaussian": tuple(round(0.02 * k, 2) for k in range(1, 11)),     # noise standard deviation
    "shot": tuple(float(60 - 6 * k) for k in range(10)),             # photons of a unit-intensity pixel
    "speckle": tuple(round(0.1 * k, 1) for k in range(1, 7)),        # relative noise standard deviation
    "impulse": tuple(round(0.03 * k, 2) for k in range(1, 10)),      # fraction of entries replaced
}
SDNET_NOISES = tuple(SDNET_NOISE_LEVELS)
#: the test-time λ grid of the authors' robust inference: 0.1, 0.2, …, 1.4
SDNET_LAMS = tuple(round(0.1 * k, 1) for k in range(1, 15))

_APPLY = {"gaussian": lambda x, c, g: gaussian_noise(x, c, generator=g),
          "shot": lambda x, c, g: shot_noise(x, c, generator=g),
          "speckle": lambda x, c, g: speckle_noise(x, c, generator=g),
          "impulse": lambda x, c, g: impulse_noise(x, c, generator=g)}


def sdnet_noise(x: torch.Tensor, name: str, level: float, *, generator=None) -> torch.Tensor:
    r"""Images ``x`` (intensities in :math:`[0, 1]`) with the authors' noise ``name`` at level ``level``, clipped.

    ``name`` is one of :data:`SDNET_NOISES`; ``level`` is :math:`c` of the module docstring (any
    non-negative value, not only the listed ones; positive for ``shot``, at most 1 for ``impulse``).
    ``generator`` on ``x.device`` makes the draw reproducible. Chapter 14 (robustness at paper scale).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if name not in _APPLY:
        raise ValueError(f"unknown noise name {name!r}; choose one of {SDNET_NOISES}")
    return _APPLY[name](x, level, generator)
