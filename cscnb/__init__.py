"""cscnb: convolutional neural networks as sparse coding — the package behind the book.

The stable public surface (design §3) is re-exported here.
"""
from .dictionary import ConvDictionary, Dictionary, LinearDictionary, mutual_coherence, random_orthonormal
from .prox import elastic_net_prox, hard_threshold, nonneg_soft_threshold, soft_threshold
from .solvers import SolveHistory, SolveResult, kkt_residual, objective, solve

__version__ = "0.1.0"

__all__ = [
    "ConvDictionary", "Dictionary", "LinearDictionary", "mutual_coherence", "random_orthonormal",
    "elastic_net_prox", "hard_threshold", "nonneg_soft_threshold", "soft_threshold",
    "SolveHistory", "SolveResult", "kkt_residual", "objective", "solve",
]
