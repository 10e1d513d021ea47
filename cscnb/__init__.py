"""cscnb: convolutional neural networks as sparse coding — the package behind the book.

The stable public surface (design §3) is re-exported here; submodules:
``prox``, ``dictionary``, ``solvers`` (and its fast path ``fast_solvers``), ``layers``, ``models``,
``data`` and ``symbolic`` (SymPy helpers, imported on first use).
"""
from . import data, dictionary, layers, models, prox, solvers
from .data import DigitsSplit, PlantedCodes, load_digits, planted_sparse_codes
from .dictionary import ConvDictionary, Dictionary, LinearDictionary, mutual_coherence, random_orthonormal
from .layers import SparseCodingConv2d, SparseCodingLinear
from .models import HierarchicalSparseCodingConfig, HierarchicalSparseCodingNet
from .prox import elastic_net_prox, hard_threshold, nonneg_soft_threshold, soft_threshold
from .solvers import SolveHistory, SolveResult, kkt_residual, objective, solve

__version__ = "0.1.0"

__all__ = [
    "ConvDictionary", "Dictionary", "LinearDictionary", "mutual_coherence", "random_orthonormal",
    "elastic_net_prox", "hard_threshold", "nonneg_soft_threshold", "soft_threshold",
    "SolveHistory", "SolveResult", "kkt_residual", "objective", "solve",
    "DigitsSplit", "PlantedCodes", "load_digits", "planted_sparse_codes",
    "SparseCodingConv2d", "SparseCodingLinear",
    "HierarchicalSparseCodingConfig", "HierarchicalSparseCodingNet",
    "symbolic",
]


def __getattr__(name):
    # SymPy is slow to import; load cscnb.symbolic only when a chapter asks for it
    if name == "symbolic":
        import importlib
        return importlib.import_module(".symbolic", __name__)
    raise AttributeError(f"module 'cscnb' has no attribute {name!r}")
