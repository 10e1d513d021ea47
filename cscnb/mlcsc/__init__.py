"""Multi-layer convolutional sparse coding (ML-CSC): the model, its pursuits and its bounds (chapter 6).

The ML-CSC model of :cite:t:`papyan2017convolutional` chains sparse-coding models: a signal is
:math:`x = \\Gamma_0 = D_1\\Gamma_1`, and every code is itself a sparse combination of the next
dictionary's atoms, :math:`\\Gamma_{i-1} = D_i\\Gamma_i` (chapter 6, ``eq-ch6-mlcsc``).

* :mod:`~cscnb.mlcsc.chain` — the chain :math:`\\Gamma_{i-1} = D_i\\Gamma_i` and its argument checks;
* :mod:`~cscnb.mlcsc.pursuits` — layered thresholding (a CNN's forward pass) and layered basis pursuit;
* :mod:`~cscnb.mlcsc.ml_bp` — the multi-layer basis pursuit problem, ML-ISTA/ML-FISTA, a computable
  optimality gap and a primal-dual reference solver;
* :mod:`~cscnb.mlcsc.bounds` — coherence of a convolutional dictionary, uniqueness, thresholding and
  stability bounds of the chain;
* :mod:`~cscnb.mlcsc.stripe_bounds` — local (stripe) chains of layered thresholding and layered basis pursuit,
  and the Lasso's support and error bounds;
* :mod:`~cscnb.mlcsc.certificate` — an independent ADMM solver and a duality certificate for the
  multi-layer basis pursuit.

Also used by chapter 14 (the reproduction of chapter 6's claims).
"""
from .bounds import (
    conv_mutual_coherence,
    stability_chain,
    stripe_uniqueness_bound,
    thresholding_interval,
    thresholding_success_bound,
)
from .certificate import ml_bp_admm, ml_bp_dual_bound, ml_bp_matrices
from .chain import synthesize_chain
from .ml_bp import MLFistaResult, ml_bp_objective, ml_bp_primal_dual, ml_fista, ml_fista_gap_bound
from .pursuits import layered_basis_pursuit, layered_thresholding
from .stripe_bounds import ChainCertificate, lasso_entry_error, lasso_min_lambda, layered_bp_chain, thresholding_chain

__all__ = ["layered_thresholding", "synthesize_chain", "layered_basis_pursuit",
           "ml_bp_objective", "ml_fista", "MLFistaResult", "ml_fista_gap_bound", "ml_bp_primal_dual",
           "conv_mutual_coherence", "stripe_uniqueness_bound", "thresholding_success_bound", "thresholding_interval",
           "stability_chain", "ChainCertificate", "lasso_min_lambda", "lasso_entry_error", "thresholding_chain",
           "layered_bp_chain", "ml_bp_admm", "ml_bp_dual_bound", "ml_bp_matrices"]
