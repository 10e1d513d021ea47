"""Network layers that *are* sparse-coding iterations, and the tools to build networks from them.

* :mod:`~cscnb.nn.sparse_coding` — :class:`SparseCodingConv2d` / :class:`SparseCodingLinear`: a few
  non-negative proximal-gradient steps, one step = convolution (or linear map) + bias + ReLU
  (chapters 2–4);
* :mod:`~cscnb.nn.unfolded`, :mod:`~cscnb.nn.blocks` — one ML-CSC layer unfolded into steps, and the
  Res-CSC / MSD-CSC blocks with the ResNet / DenseNet blocks they equal (chapters 7 and 8);
* :mod:`~cscnb.nn.lista` — LISTA, LISTA-CP and ALISTA, unrolled solvers with learned weights (chapter 10);
* :mod:`~cscnb.nn.conv_lista` — convolutional LISTA-CP, its encoders restricted to convolutions (chapter 10);
* :mod:`~cscnb.nn.sparsity` — sparse activations (shifted ReLU, top-k), activation penalties, sparsity
  metrics and the training loop that uses them (chapter 11);
* :mod:`~cscnb.nn.csc_layer`, :mod:`~cscnb.nn.csc_functional`, :mod:`~cscnb.nn.csc_ops`,
  :mod:`~cscnb.nn.csc_implicit`, :mod:`~cscnb.nn.conversion` — SDNet's convolutional sparse-coding layer as a
  drop-in ``nn.Conv2d``, its functional form, fused step, synthesis forms and step-size state, its implicit
  gradient, and the conversion of any CNN (chapters 12 and 13).
"""
from .admissible import rescale_to_step_bound
from .blocks import DenseBlock, MSDCSCBlock, ResCSCBlock, ResidualBlock, conv_operator_norm, dilate_kernel
from .conv_lista import ConvLISTACP
from .conversion import convert
from .csc_layer import (
    ATOM_NORMS,
    BACKWARDS,
    STEP_FACTOR,
    CSCLayer,
    csc_code,
    frozen_step_size,
    test_time_lam,
    unit_norm_atoms,
)
from .csc_ops import (
    SYNTHESES,
    SYNTHESIS_CHOICES,
    FusedProxGrad,
    PowerIterationStep,
    code_shape,
    conv_gram,
    fastest_synthesis,
    flipped_available,
    resolve_synthesis,
    synchronize,
    synthesis_operator,
)
from .lista import (
    ACTIVATIONS,
    ALISTA,
    LISTA,
    LISTACP,
    UnrolledConfig,
    activation_fn,
    empirical_rate,
    firm_threshold,
    hopfield_energy,
    iterate_errors,
    theorem_thresholds,
)
from .sparse_coding import SparseCodingConv2d, SparseCodingLinear
from .unfolded import UnfoldedCSCLayer

__all__ = ["SparseCodingConv2d", "SparseCodingLinear",
           "UnfoldedCSCLayer", "ResCSCBlock", "ResidualBlock", "MSDCSCBlock", "DenseBlock", "conv_operator_norm",
           "dilate_kernel", "rescale_to_step_bound",
           "ACTIVATIONS", "UnrolledConfig", "LISTA", "LISTACP", "ALISTA", "firm_threshold", "activation_fn",
           "theorem_thresholds", "iterate_errors", "empirical_rate", "hopfield_energy",
           "ConvLISTACP",
           "CSCLayer", "csc_code", "test_time_lam", "frozen_step_size", "unit_norm_atoms", "BACKWARDS", "ATOM_NORMS",
           "STEP_FACTOR", "convert", "SYNTHESES", "SYNTHESIS_CHOICES", "code_shape", "flipped_available",
           "synthesis_operator", "resolve_synthesis", "fastest_synthesis", "synchronize", "conv_gram", "FusedProxGrad",
           "PowerIterationStep"]
