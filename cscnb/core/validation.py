"""Argument checks shared by the whole package: one convention for bad input.

* a value of the wrong **type** raises ``TypeError``; a value of the right type that is not allowed
  (out of range, NaN, wrong length, not among the choices) raises ``ValueError``;
* every message names the argument and says what was expected, e.g.
  ``n_iter must be a positive int, got 0`` or ``mu must be a non-negative number, got str``;
* ``bool`` is never accepted where a number or an int is expected (``True`` is not ``1`` here);
* each check returns the value normalised (``int``, ``float``, ``tuple``), so a constructor can write
  ``self.n_iter = positive_int(n_iter, "n_iter")``.

A value outside a fixed set of choices (:func:`check_choice`), including ``None`` or a non-string,
is a wrong *value* (``ValueError``), as in ``torch.nn``.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import torch

__all__ = ["is_int", "is_number", "check_int", "positive_int", "nonneg_int", "check_number", "positive_number",
           "nonneg_number", "check_bool", "check_choice", "int_tuple", "pair", "conv2d_geometry", "check_threshold",
           "check_float_dtype"]


def is_int(value) -> bool:
    """An integer that is not a ``bool`` (Python ``int`` or any ``numbers.Integral``, e.g. ``numpy.int64``)."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
    """A real number that is not a ``bool`` (``int``, ``float`` or any ``numbers.Real``)."""
    return isinstance(value, Real) and not isinstance(value, bool)


# ------------------------------------------------------------------------------------------------ ints
def _int_expectation(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f"an int in [{minimum}, {maximum}]"
    if minimum is not None:
        return f"an int >= {minimum}"
    if maximum is not None:
        return f"an int <= {maximum}"
    return "an int"


def check_int(value, name: str, *, minimum: int | None = None, maximum: int | None = None,
              expected: str | None = None) -> int:
    """``value`` as an ``int`` in ``[minimum, maximum]`` (either bound optional).

    ``expected`` replaces the generated description (``"an int >= 1"``) in both messages.
    """
    expected = expected or _int_expectation(minimum, maximum)
    if not is_int(value):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {expected}, got {value}")
    return int(value)


def positive_int(value, name: str) -> int:
    """An ``int`` >= 1: ``n_iter must be a positive int, got 0``."""
    return check_int(value, name, minimum=1, expected="a positive int")


def nonneg_int(value, name: str) -> int:
    """An ``int`` >= 0: ``seed must be a non-negative int, got -1``."""
    return check_int(value, name, minimum=0, expected="a non-negative int")


# --------------------------------------------------------------------------------------------- numbers
def check_number(value, name: str, *, minimum: float | None = None, maximum: float | None = None,
                 open_minimum: bool = False, open_maximum: bool = False, expected: str | None = None) -> float:
    """``value`` as a finite ``float`` between ``minimum`` and ``maximum`` (each bound optional, closed by default).

    ``expected`` replaces the generated description (``"a finite number in (0, 1)"``) in both messages.
    """
    if expected is None:
        if minimum is not None and maximum is not None:
            left, right = "(" if open_minimum else "[", ")" if open_maximum else "]"
            expected = f"a finite number in {left}{minimum}, {maximum}{right}"
        elif minimum is not None:
            expected = f"a finite number {'>' if open_minimum else '>='} {minimum}"
        elif maximum is not None:
            expected = f"a finite number {'<' if open_maximum else '<='} {maximum}"
        else:
            expected = "a finite number"
    if not is_number(value):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__}")
    value = float(value)
    too_low = minimum is not None and (value <= minimum if open_minimum else value < minimum)
    too_high = maximum is not None and (value >= maximum if open_maximum else value > maximum)
    if not math.isfinite(value) or too_low or too_high:
        raise ValueError(f"{name} must be {expected}, got {value}")
    return value


def positive_number(value, name: str) -> float:
    """A finite number > 0: ``step must be a positive finite number, got 0.0``."""
    if not is_number(value):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return float(value)


def nonneg_number(value, name: str) -> float:
    """A finite number >= 0: ``mu must be a finite non-negative number, got -0.5``."""
    if not is_number(value):
        raise TypeError(f"{name} must be a non-negative number, got {type(value).__name__}")
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite non-negative number, got {value}")
    return float(value)


# ---------------------------------------------------------------------------------------------- others
def check_bool(value, name: str) -> bool:
    """A ``bool`` (not an int standing in for one): ``nonneg must be a bool, got int``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def check_choice(value, name: str, choices) -> str:
    """One of ``choices``; anything else (also ``None`` or a non-string) is a ``ValueError`` naming them."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def int_tuple(value, n: int, name: str, minimum: int = 0) -> tuple:
    """An int (repeated ``n`` times) or a tuple/list of ``n`` ints, each >= ``minimum``, as a tuple.

    The ``torch.nn.modules.utils._pair``-style argument of convolutions (``kernel_size``, ``stride``, ...).
    """
    expected = f"an int or a tuple of {n} ints >= {minimum}"
    if is_int(value):
        value = (int(value),) * n
    elif isinstance(value, (tuple, list)) and all(is_int(v) for v in value):
        if len(value) != n:
            raise ValueError(f"{name} must be {expected}, got {tuple(value)}")
        value = tuple(int(v) for v in value)
    else:
        raise TypeError(f"{name} must be {expected}, got {value!r}")
    if min(value) < minimum:
        raise ValueError(f"{name} must be {expected}, got {value}")
    return value


def pair(value, name: str, minimum: int = 0) -> tuple:
    """:func:`int_tuple` for 2-D layers: ``3`` → ``(3, 3)``."""
    return int_tuple(value, 2, name, minimum)


def conv2d_geometry(in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1) -> tuple:
    """``nn.Conv2d``'s geometry arguments, checked and normalised as ``nn.Conv2d`` does with ``_pair``.

    Returns ``(in_channels, out_channels, kernel_size, stride, padding, dilation)``: two positive ints and
    four pairs (kernel, stride and dilation >= 1, padding >= 0), for layers with ``nn.Conv2d``'s signature.
    """
    return (positive_int(in_channels, "in_channels"), positive_int(out_channels, "out_channels"),
            pair(kernel_size, "kernel_size", 1), pair(stride, "stride", 1), pair(padding, "padding", 0),
            pair(dilation, "dilation", 1))


def check_threshold(t, name: str = "t") -> None:
    """A threshold: a finite non-negative number, or a tensor of them (any shape that broadcasts)."""
    if isinstance(t, torch.Tensor):
        if not t.dtype.is_floating_point:   # a bool or integer threshold is almost always a mistake
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} must be finite, got a tensor containing NaN or Inf")
        if (t < 0).any():
            raise ValueError(f"{name} must be non-negative, got a tensor with minimum {t.min().item():.3g}")
    elif is_number(t):
        if not math.isfinite(t):
            raise ValueError(f"{name} must be finite, got {t}")
        if t < 0:
            raise ValueError(f"{name} must be non-negative, got {t}")
    else:
        raise TypeError(f"{name} must be a number or a torch.Tensor, got {type(t).__name__}")


def check_float_dtype(dtype, name: str = "dtype") -> torch.dtype:
    """A floating-point ``torch.dtype`` (``torch.float32``, ``torch.float64``, ...)."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point torch.dtype, got {dtype!r}")
    return dtype
