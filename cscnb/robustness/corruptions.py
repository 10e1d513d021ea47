r"""Common noise corruptions of images at five severities, in torch (chapter 13).

Four of the noise corruptions of CIFAR-10-C :cite:p:`hendrycks2019benchmarking`, written in torch so they run
on the input's device and are reproducible from a ``torch.Generator``. The severity parameters are those of the
benchmark authors' CIFAR-10-C generation script ``make_cifar_c.py`` :cite:p:`hendrycks2019code`:

* ``gaussian``: :math:`x + \sigma\varepsilon`, :math:`\sigma` = 0.04, 0.06, 0.08, 0.09, 0.10;
* ``shot``: :math:`\operatorname{Poisson}(c\,x)/c`, photons :math:`c` = 500, 250, 100, 75, 50;
* ``impulse``: a fraction :math:`p` of the entries set to 0 or 1 (equally likely), :math:`p` = 0.01, 0.02, 0.03,
  0.05, 0.07;
* ``speckle``: :math:`x + x\,\sigma\varepsilon`, :math:`\sigma` = 0.06, 0.10, 0.12, 0.16, 0.20 (severities 1..5),

with :math:`\varepsilon` standard normal, independent per entry; every result is clipped to :math:`[0, 1]`.
Unlike the published data set, the result is not quantized to 8 bits (the book's data are not 8-bit images).

**Inputs must be pixel intensities in [0, 1].** For standardized data :math:`\tilde x = (x - m)/s` (e.g.
:func:`cscnb.load_digits`, whose pixels run from 0 to 16) corrupt in pixel space and standardize again:
``corrupt((x_std * s + m) / 16, ...) * 16`` then ``(… - m) / s``; the noise depends on the pixel value
(shot, speckle) and on the box :math:`[0, 1]` (clipping, impulse), so it cannot be applied after standardizing.

**Random numbers.** ``generator`` must live on ``x.device`` (``torch.Generator(device=x.device)``); with the same
seed, the same input gives the same corruption.
"""
from __future__ import annotations

import torch

from ..core.validation import check_int, check_number, nonneg_number

__all__ = ["CIFAR10C_PARAMETERS", "CORRUPTIONS", "corruption_parameter", "corrupt", "gaussian_noise", "shot_noise",
           "impulse_noise", "speckle_noise"]

# Published CIFAR-10-C severity parameters (Hendrycks & Dietterich 2019), severities 1..5.
CIFAR10C_PARAMETERS = {
    "gaussian": (0.04, 0.06, 0.08, 0.09, 0.10),   # noise standard deviation
    "shot": (500.0, 250.0, 100.0, 75.0, 50.0),     # photon count of a unit-intensity pixel
    "impulse": (0.01, 0.02, 0.03, 0.05, 0.07),     # fraction of entries replaced by 0 or 1
    "speckle": (0.06, 0.10, 0.12, 0.16, 0.20),     # relative noise standard deviation
}
CORRUPTIONS = tuple(CIFAR10C_PARAMETERS)


def _check_images(x) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"x must have a floating-point dtype, got {x.dtype}")
    if x.numel() and (not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1):
        raise ValueError("x must hold pixel intensities in [0, 1]; un-standardize first (see the module docstring)")


def _check_generator(generator, x: torch.Tensor) -> None:
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator.device.type != x.device.type:
        raise ValueError(f"generator is on {generator.device} but x is on {x.device}; create it on x's device")


def corruption_parameter(name: str, severity: int) -> float:
    r"""The published CIFAR-10-C parameter :math:`\theta_{\text{name}}(k)` of corruption ``name`` at severity
    :math:`k \in \{1, \dots, 5\}`.

    :math:`\sigma` (gaussian, speckle), photons :math:`c` (shot) or fraction :math:`p` (impulse); table in the module
    docstring :cite:p:`hendrycks2019benchmarking`. Chapter 13 (noise model ``eq-ch13-noise``).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if name not in CIFAR10C_PARAMETERS:
        raise ValueError(f"unknown corruption name {name!r}; choose one of {CORRUPTIONS}")
    severity = check_int(severity, "severity", minimum=1, maximum=5)
    return CIFAR10C_PARAMETERS[name][severity - 1]


def gaussian_noise(x: torch.Tensor, sigma: float, *, generator=None) -> torch.Tensor:
    r"""Additive Gaussian noise :math:`\operatorname{clip}_{[0,1]}(x + \sigma\varepsilon)`,
    :math:`\varepsilon \sim N(0, I)`.

    The noise model of chapter 13, ``eq-ch13-noise`` (before clipping). ``x`` in :math:`[0, 1]`.
    """
    _check_images(x)
    sigma = nonneg_number(sigma, "sigma")
    _check_generator(generator, x)
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return (x + sigma * noise).clamp(0, 1)


def shot_noise(x: torch.Tensor, photons: float, *, generator=None) -> torch.Tensor:
    r"""Shot (Poisson) noise :math:`\operatorname{clip}_{[0,1]}(k / c)`, :math:`k \sim \operatorname{Poisson}(c\,x)`.

    A pixel of intensity :math:`x` collects on average :math:`c\,x` photons, so the relative noise falls as
    :math:`1/\sqrt{c x}` (fewer photons = more severe). Chapter 13 (noise model ``eq-ch13-noise``).
    ``x`` in :math:`[0, 1]`.
    """
    _check_images(x)
    photons = nonneg_number(photons, "photons")
    if photons == 0:
        raise ValueError("photons must be positive (c = 0 collects no light)")
    _check_generator(generator, x)
    return (torch.poisson(x * photons, generator=generator) / photons).clamp(0, 1)


def impulse_noise(x: torch.Tensor, amount: float, *, generator=None) -> torch.Tensor:
    r"""Salt-and-pepper noise: each entry independently, with probability :math:`p`, becomes 0 or 1 (equally likely).

    :math:`\tilde x_i = x_i` with probability :math:`1 - p`, else :math:`b_i \in \{0, 1\}` uniform. Chapter 13,
    ``eq-ch13-noise``. ``x`` in :math:`[0, 1]`, ``amount`` :math:`= p \in [0, 1]`.
    """
    _check_images(x)
    amount = check_number(amount, "amount", minimum=0, maximum=1)
    _check_generator(generator, x)
    flipped = torch.rand(x.shape, generator=generator, device=x.device) < amount
    salt = (torch.rand(x.shape, generator=generator, device=x.device) < 0.5).to(x.dtype)
    return torch.where(flipped, salt, x)


def speckle_noise(x: torch.Tensor, sigma: float, *, generator=None) -> torch.Tensor:
    r"""Multiplicative (speckle) noise :math:`\operatorname{clip}_{[0,1]}(x + x\,\sigma\varepsilon)`,
    :math:`\varepsilon \sim N(0, I)`.

    Zero pixels stay zero; the noise standard deviation is proportional to the intensity. Chapter 13,
    ``eq-ch13-noise``. ``x`` in :math:`[0, 1]`.
    """
    _check_images(x)
    sigma = nonneg_number(sigma, "sigma")
    _check_generator(generator, x)
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return (x + x * sigma * noise).clamp(0, 1)


_APPLY = {"gaussian": gaussian_noise, "shot": shot_noise, "impulse": impulse_noise, "speckle": speckle_noise}


def corrupt(x: torch.Tensor, name: str, severity: int, *, generator=None) -> torch.Tensor:
    r"""Corrupt images ``x`` (intensities in :math:`[0, 1]`) with CIFAR-10-C noise ``name`` at ``severity`` 1..5.

    ``name`` is one of ``"gaussian"``, ``"shot"``, ``"impulse"``, ``"speckle"``; the parameters are the
    published CIFAR-10-C ones :cite:p:`hendrycks2019benchmarking` (module docstring). Chapter 13
    (noise model ``eq-ch13-noise``).
    """
    parameter = corruption_parameter(name, severity)
    return _APPLY[name](x, parameter, generator=generator)
