r"""Keep unfolded sparse-coding blocks inside their step-size bound while training (chapters 7 and 8).

The blocks of :mod:`cscnb.nn.blocks` fix their step :math:`c` when they are built. Training moves the
dictionaries, and once :math:`c > 1/\|D\|_2^2` an unfolded step is no longer a proximal-gradient step
of the layer pursuit: ISTA's descent property (chapter 7, ``eq-ch7-step-bound``) and the bound
:math:`\|cD^\top Dx\| \le \|x\|` of theorem ``thm-ch7-res-csc`` need :math:`c \le 1/\|D\|_2^2`.
:func:`rescale_to_step_bound`, called after every optimizer step
(``cscnb.train.fit(..., after_step=rescale_to_step_bound)``), scales each dictionary that left the
admissible set back onto its boundary (just inside it, by 100 units of the weight's floating-point
precision):

* :class:`~cscnb.nn.blocks.ResCSCBlock`, :class:`~cscnb.nn.unfolded.UnfoldedCSCLayer`: :math:`D \leftarrow
  \alpha D` with :math:`\alpha = (c\,\|D\|_2^2)^{-1/2}` when :math:`c\|D\|_2^2 > 1`, so that
  :math:`c\|\alpha D\|_2^2 = 1`;
* :class:`~cscnb.nn.blocks.MSDCSCBlock`: each :math:`W_\ell \leftarrow \alpha_\ell W_\ell` with
  :math:`\alpha_\ell^2 = (1/c - 1)/\|W_\ell\|_2^2` when :math:`c(1 + \|W_\ell\|_2^2) > 1`
  (``eq-ch8-step-bound``).

The norms are :func:`~cscnb.nn.unfolded.conv_operator_norm`: the bound for every signal size by
default (then ``check_step()`` passes afterwards), or, with ``signal_size``, the bound for signals of
that spatial size (cheaper for 2-D kernels; the steps are then admissible for inputs of that size).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .blocks import MSDCSCBlock, ResCSCBlock
from .unfolded import UnfoldedCSCLayer, conv_operator_norm

__all__ = ["rescale_to_step_bound"]


def _inside(weight) -> float:
    # land just inside the boundary: the norm itself carries rounding errors of a few ulps of the weight's dtype
    return 1.0 - 100 * torch.finfo(weight.dtype).eps


def _norm(weight, dilation, signal_size) -> float:
    return conv_operator_norm(weight, dilation, signal_size=signal_size)


@torch.no_grad()
def rescale_to_step_bound(model: nn.Module, signal_size=None) -> int:
    r"""Rescale every dictionary of ``model`` whose block's step exceeds its bound; return how many were rescaled.

    Args:
        model: a module containing :class:`~cscnb.nn.blocks.ResCSCBlock`,
            :class:`~cscnb.nn.blocks.MSDCSCBlock` or :class:`~cscnb.nn.unfolded.UnfoldedCSCLayer` modules
            (others are left alone).
        signal_size: ``None`` (the bound for every signal size) or the spatial size of the codes the
            blocks see, e.g. ``(8, 8)``.

    Returns:
        The number of dictionaries (:math:`D_i`, or :math:`W_\ell` of an MSD-CSC layer) that were rescaled.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    rescaled = 0
    for module in model.modules():
        if isinstance(module, (ResCSCBlock, UnfoldedCSCLayer)):
            weight = module.dictionary_weight if isinstance(module, ResCSCBlock) else module.weight
            dilation = getattr(module, "dilation", 1)
            excess = module.step * _norm(weight, dilation, signal_size) ** 2
            if excess > 1.0:
                weight.mul_(_inside(weight) / math.sqrt(excess))
                rescaled += 1
        elif isinstance(module, MSDCSCBlock):
            room = 1.0 / module.step - 1.0  # the largest admissible ||W_l||^2
            for weight, rate in zip(module.weights, module.dilations, strict=True):
                norm2 = _norm(weight, rate, signal_size) ** 2
                if norm2 > room:
                    weight.mul_(_inside(weight) * math.sqrt(room / norm2))
                    rescaled += 1
    return rescaled
