r"""Convolutional LISTA-CP: the unrolled solver of chapter 10 with every matrix restricted to a convolution.

For a convolutional dictionary :math:`D` (:class:`cscnb.ConvDictionary`: :math:`Dz` is ``conv_transpose``,
:math:`D^\top x` is ``conv``) the layer

.. math:: z_{k+1} = \eta_{\theta_k}\big(z_k + W_k^\top (x - D z_k)\big), \qquad z_0 = 0,

(chapter 10, ``eq-ch10-lista-cp``) is a convolutional layer when :math:`W_k^\top` is a convolution: the
correlation with filters :math:`w^{(k)}_a` of the dictionary's shape, with the dictionary's stride, padding
and boundary. Then :math:`W_k^\top x` is a ``conv`` of the input, :math:`I - W_k^\top D` is a convolution of
the code with the filters' cross-correlations (chapter 10, ``eq-ch10-conv-layer``), and
:math:`-\theta_k` is the bias inside the activation. Learning :math:`W_k` means learning these filters only.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..core.dictionary import ConvDictionary
from .lista import UnrolledConfig, activation_fn

__all__ = ["ConvLISTACP"]


class ConvLISTACP(nn.Module):
    r"""LISTA-CP for a convolutional dictionary, with convolutional encoders :math:`W_k` (chapter 10).

    .. math:: z_{k+1} = \eta_{\theta_k}\big(z_k + W_k^\top (x - D z_k)\big), \qquad z_0 = 0 .

    Args:
        dictionary: the :class:`cscnb.ConvDictionary` :math:`D` (kept fixed, as a buffer).
        config: depth :math:`K`, activation :math:`\eta` and initial thresholds (:class:`cscnb.nn.UnrolledConfig`).
        encoder: filters of :math:`W` with the dictionary's weight shape ``(n_atoms, in_channels, *kernel)``,
            copied into every layer. For ISTA use ``dictionary.weight / L`` with
            ``L = dictionary.lipschitz_constant(signal_size)``; for the rate theorem the minimax filters of
            :func:`cscnb.theory.rates.conv_generalized_coherence_weights`.

    Shape:
        - Input: :math:`(B, C, *S)` signals, in the dictionary's dtype.
        - Output: :math:`(B, m, *S')` codes (the dictionary's code shape); with ``return_iterates=True``
          :math:`(K + 1, B, m, *S')`, the iterates :math:`z_0 = 0, z_1, \dots, z_K`.

    Implements chapter 10, equation ``eq-ch10-lista-cp`` with the convolutional layer ``eq-ch10-conv-layer``.
    """

    def __init__(self, dictionary: ConvDictionary, config: UnrolledConfig, encoder: torch.Tensor):
        super().__init__()
        if not isinstance(dictionary, ConvDictionary):
            raise TypeError(f"dictionary must be a cscnb.ConvDictionary, got {type(dictionary).__name__}")
        if not isinstance(config, UnrolledConfig):
            raise TypeError(f"config must be an UnrolledConfig, got {type(config).__name__}")
        if not isinstance(encoder, torch.Tensor):
            raise TypeError(f"encoder must be a torch.Tensor of filters shaped like the dictionary's weight "
                            f"{tuple(dictionary.weight.shape)}, got {type(encoder).__name__}")
        weight = dictionary.weight.detach()
        if tuple(encoder.shape) != tuple(weight.shape):
            raise ValueError(f"encoder must have the dictionary's weight shape {tuple(weight.shape)}, "
                             f"got {tuple(encoder.shape)}")
        if not torch.isfinite(encoder).all():
            raise ValueError("encoder contains NaN or Inf values")
        self.config = config
        self._layout = dict(stride=dictionary.stride, padding=dictionary.padding, dilation=dictionary.dilation,
                            padding_mode=dictionary.padding_mode)
        self.register_buffer("dictionary_weight", weight.clone())
        w = encoder.detach().to(dtype=weight.dtype, device=weight.device)
        self.encoders = nn.Parameter(w.expand(config.n_layers, *w.shape).clone())          # (K, m, C, *kernel)
        self.threshold_param = nn.Parameter(config.initial_thresholds().to(dtype=weight.dtype, device=weight.device))
        self._activation = activation_fn(config.activation, config.firm_gamma)

    @property
    def dictionary(self) -> ConvDictionary:
        """The dictionary :math:`D` as a :class:`cscnb.ConvDictionary` (same layout, the stored filters)."""
        return ConvDictionary(self.dictionary_weight, **self._layout)

    def encoder_dictionary(self, k: int) -> ConvDictionary:
        r"""Layer ``k``'s encoder as a :class:`cscnb.ConvDictionary`: its ``analyze`` is :math:`W_k^\top`."""
        return ConvDictionary(self.encoders[k], **self._layout)

    @property
    def thresholds(self) -> torch.Tensor:
        r"""Per-layer thresholds :math:`\theta_k = |\rho_k| \ge 0`, shape ``(n_layers,)``."""
        return self.threshold_param.abs()

    def forward(self, x: torch.Tensor, *, return_iterates: bool = False) -> torch.Tensor:
        D = self.dictionary
        D.check_signal(x)
        if x.dtype != self.dictionary_weight.dtype:
            raise TypeError(f"x has dtype {x.dtype} but the model has dtype {self.dictionary_weight.dtype}; "
                            "convert one of them")
        size = D.signal_size(x)
        z = x.new_zeros(D.code_shape(x.shape))
        iterates = [z]
        thresholds = self.thresholds
        for k in range(self.config.n_layers):
            residual = x - D.synthesize(z, output_size=size)
            z = self._activation(z + self.encoder_dictionary(k).analyze(residual), thresholds[k])
            iterates.append(z)
        return torch.stack(iterates) if return_iterates else z

    def extra_repr(self) -> str:
        w = self.dictionary_weight
        return (f"n_atoms={w.shape[0]}, in_channels={w.shape[1]}, kernel_size={tuple(w.shape[2:])}, "
                f"n_layers={self.config.n_layers}, activation={self.config.activation!r}")
