r"""The ML-CSC chain :math:`\Gamma_{i-1} = D_i\Gamma_i` (chapter 6, ``eq-ch6-mlcsc``): argument checks and synthesis.

Every dictionary is a :class:`~cscnb.LinearDictionary` or :class:`~cscnb.ConvDictionary`; layer
:math:`i`'s dictionary must accept layer :math:`i-1`'s code as its signal (a ``ConvDictionary`` with
``in_channels`` equal to the previous dictionary's ``n_atoms``, a ``LinearDictionary`` with
``n_features`` equal to it). The checks of a chain, its signal and its per-layer thresholds are shared
by :mod:`cscnb.mlcsc.pursuits` and :mod:`cscnb.mlcsc.ml_bp`; :func:`synthesize_chain` is re-exported
by :mod:`cscnb.mlcsc`.
"""
from __future__ import annotations

from collections.abc import Sequence
from numbers import Real

import torch

from ..core.dictionary import ConvDictionary, Dictionary

__all__ = ["synthesize_chain"]


# ---------------------------------------------------------------------------------------------
# argument checks shared by the pursuits of cscnb.mlcsc


def check_dictionaries(dictionaries) -> list:
    if isinstance(dictionaries, Dictionary) or not isinstance(dictionaries, (list, tuple)):
        raise TypeError("dictionaries must be a list or tuple of cscnb LinearDictionary/ConvDictionary objects, "
                        f"got {type(dictionaries).__name__}")
    if len(dictionaries) == 0:
        raise ValueError("dictionaries must contain at least one dictionary, got an empty sequence")
    for i, d in enumerate(dictionaries):
        if not isinstance(d, Dictionary):
            raise TypeError(f"dictionaries[{i}] must be a cscnb LinearDictionary or ConvDictionary, "
                            f"got {type(d).__name__}")
    for i in range(1, len(dictionaries)):
        prev, cur = dictionaries[i - 1], dictionaries[i]
        if isinstance(prev, ConvDictionary) != isinstance(cur, ConvDictionary):
            raise ValueError(f"dictionaries[{i - 1}] and dictionaries[{i}] mix dense and convolutional layers; "
                             "flatten or reshape the code explicitly and use one kind per chain")
        expected = cur.in_channels if isinstance(cur, ConvDictionary) else cur.n_features
        if expected != prev.n_atoms:
            kind = "in_channels" if isinstance(cur, ConvDictionary) else "n_features"
            raise ValueError(f"dictionaries[{i}] has {kind}={expected} but dictionaries[{i - 1}] has "
                             f"n_atoms={prev.n_atoms}: layer {i + 1} must code layer {i}'s code")
        if isinstance(cur, ConvDictionary) and cur.dim != prev.dim:
            raise ValueError(f"dictionaries[{i}] is {cur.dim}-D but dictionaries[{i - 1}] is {prev.dim}-D")
        if cur.weight.dtype != prev.weight.dtype:
            raise TypeError(f"dictionaries[{i}] has dtype {cur.weight.dtype} but dictionaries[{i - 1}] has "
                            f"{prev.weight.dtype}")
    return list(dictionaries)


def check_signal(dictionaries, x) -> None:
    first = dictionaries[0]
    first.check_signal(x, "x")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if x.dtype != first.weight.dtype:
        raise TypeError(f"x has dtype {x.dtype} but the dictionaries have dtype {first.weight.dtype}")
    if x.shape[0] == 0:
        raise ValueError("x must contain at least one sample, got an empty batch")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or Inf values")


def per_layer(values, dictionaries, name: str) -> list:
    """One non-negative threshold (scalar or per-atom) per layer, shaped to broadcast over the code."""
    if isinstance(values, (Real, torch.Tensor)) or not isinstance(values, (list, tuple)):
        raise TypeError(f"{name} must be a list or tuple with one entry per layer ({len(dictionaries)}), "
                        f"got {type(values).__name__}")
    if len(values) != len(dictionaries):
        raise ValueError(f"{name} must have one entry per layer: {len(dictionaries)} dictionaries but "
                         f"{len(values)} {name}")
    shaped = []
    for i, (value, d) in enumerate(zip(values, dictionaries, strict=True)):
        label = f"{name}[{i}]"
        if isinstance(value, bool) or not isinstance(value, (Real, torch.Tensor)):
            raise TypeError(f"{label} must be a non-negative number or a per-atom tensor, got {type(value).__name__}")
        t = torch.as_tensor(value, dtype=d.weight.dtype, device=d.weight.device) \
            if not isinstance(value, torch.Tensor) else value.to(dtype=d.weight.dtype, device=d.weight.device)
        if not torch.isfinite(t).all():
            raise ValueError(f"{label} contains NaN or Inf values")
        if (t < 0).any():
            raise ValueError(f"{label} must be non-negative, got minimum {float(t.min()):.3g}")
        if t.ndim == 1:
            if t.shape[0] != d.n_atoms:
                raise ValueError(f"{label} is per-atom, so it must have length n_atoms={d.n_atoms}, "
                                 f"got length {t.shape[0]}")
            # atoms are dimension 1 of the code; broadcast over spatial dimensions of a conv code
            if isinstance(d, ConvDictionary):
                t = t.reshape(d.n_atoms, *([1] * d.dim))
        elif t.ndim != 0:
            raise ValueError(f"{label} must be a scalar or a per-atom tensor of shape ({d.n_atoms},), "
                             f"got shape {tuple(t.shape)}")
        shaped.append(t)
    return shaped


def check_lams(lams, dictionaries) -> list:
    return per_layer(lams, dictionaries, "lams")


def synthesize_chain(dictionaries: Sequence[Dictionary], deepest_code: torch.Tensor, signal_sizes=None) -> list:
    r"""All layers of an ML-CSC signal from its deepest code: :math:`\Gamma_{i-1} = D_i\Gamma_i`.

    .. math:: \Gamma_{L-1} = D_L\Gamma_L,\ \dots,\ \Gamma_0 = x = D_1\Gamma_1
              = D_1 D_2\cdots D_L\,\Gamma_L .

    Implements chapter 6, equation ``eq-ch6-mlcsc``. ``signal_sizes`` (optional, convolutional
    chains with stride > 1) lists the spatial size of :math:`\Gamma_0,\dots,\Gamma_{L-1}` so that
    every ``synthesize`` is the exact adjoint for that size. Returns ``[Γ_0 = x, Γ_1, ..., Γ_L]``.
    """
    dictionaries = check_dictionaries(dictionaries)
    if not isinstance(deepest_code, torch.Tensor):
        raise TypeError(f"deepest_code must be a torch.Tensor, got {type(deepest_code).__name__}")
    last = dictionaries[-1]
    expected_ndim = last.dim + 2 if isinstance(last, ConvDictionary) else 2
    if deepest_code.ndim != expected_ndim or deepest_code.shape[1] != last.n_atoms:
        raise ValueError(f"deepest_code must have {expected_ndim} dimensions with n_atoms={last.n_atoms} "
                         f"in dimension 1, got shape {tuple(deepest_code.shape)}")
    if signal_sizes is not None and (not isinstance(signal_sizes, (list, tuple))
                                     or len(signal_sizes) != len(dictionaries)):
        raise ValueError(f"signal_sizes must list one spatial size per layer ({len(dictionaries)})")
    layers = [deepest_code]
    for i in range(len(dictionaries) - 1, -1, -1):
        size = None if signal_sizes is None else signal_sizes[i]
        layers.append(dictionaries[i].synthesize(layers[-1], output_size=size))
    return layers[::-1]
