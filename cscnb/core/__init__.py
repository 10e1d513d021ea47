"""The building blocks every other subpackage uses: dictionaries, proximal maps and argument checks.

* :mod:`~cscnb.core.dictionary` — :class:`LinearDictionary` and :class:`ConvDictionary`, the operator
  :math:`D` (``synthesize``) and its adjoint :math:`D^\\top` (``analyze``), the Lipschitz constant, the
  mutual coherence and Haar-random orthonormal matrices (chapters 1 and 3; used by every chapter);
* :mod:`~cscnb.core.operator_norm` — the power iteration for :math:`\\|A\\|_2^2` and the safety-margin policy
  of every step size (chapters 5 and 12);
* :mod:`~cscnb.core.prox` — the prox family: soft, non-negative soft (ReLU with bias), elastic-net and hard
  thresholds, with ``out=`` variants (chapters 1, 2, 10 and 12);
* :mod:`~cscnb.core.validation` — the package's one convention for bad input (wrong type:
  ``TypeError``, wrong value: ``ValueError``, the message names the argument).
"""
from .dictionary import (
    ConvDictionary,
    Dictionary,
    LinearDictionary,
    conv_code_size,
    mutual_coherence,
    random_orthonormal,
)
from .operator_norm import CONVERGED_MARGIN, PowerIteration, power_iteration
from .prox import elastic_net_prox, hard_threshold, nonneg_soft_threshold, soft_threshold

__all__ = ["Dictionary", "LinearDictionary", "ConvDictionary", "conv_code_size", "mutual_coherence",
           "random_orthonormal", "power_iteration", "PowerIteration", "CONVERGED_MARGIN", "soft_threshold",
           "nonneg_soft_threshold", "elastic_net_prox", "hard_threshold"]
