r"""cscnb: convolutional neural networks as sparse coding — the package behind the book.

Every derivation of a chapter is implemented in one module and tested against an independent
computation, in ``tests/`` and in the chapter itself::

    chapter (derivation, labelled equation) → one module of cscnb (docstring names the equation) → its test

Subpackages by role (lower layers never import higher ones):

* ``core`` — dictionaries :math:`D` / :math:`D^\top`, proximal maps, argument checks (used everywhere);
* ``solvers`` — :func:`solve`: ISTA, FISTA, restarted FISTA with support polish, Fourier-domain FISTA
  and ADMM for circular convolutions (chapters 1–10, 12–14);
* ``theory`` — coherence, uniqueness and stability bounds, brute-force checks, SymPy helpers
  (``cscnb.symbolic``, loaded on first use; chapters 1, 2, 6, 9–12, 14);
* ``data`` — digits, MNIST-1D, planted sparse codes, CIFAR and ImageNet folders (all local or generated);
* ``mlcsc`` — multi-layer CSC: the chain, layered and multi-layer pursuits, bounds (chapter 6);
* ``nn`` — layers that are sparse-coding iterations: one-step layers (chapters 2–4), unfolded
  Res-CSC / MSD-CSC blocks (7–8), LISTA (10), sparse activations (11), SDNet's CSC layer and
  ``convert`` (12–13);
* ``models`` — whole networks: the hierarchical sparse-coding net (4), the chapters' classifiers (7–8,
  11–13), ResNet/SDNet (14) and the training model factory;
* ``profiling`` — the CSC layer against its cost floor (chapter 12), training cost models (chapter 14);
* ``train`` — ``python -m cscnb.train``: configs and presets, data batches, the loop, checkpoints,
  results and the reproduction table of chapter 14;
* ``robustness`` — corruptions, attacks and test-time λ (chapter 13), and ``python -m cscnb.robustness``,
  the robustness report of a trained run (chapter 14; it rebuilds runs with ``train``).

The names below are the stable public surface. ``import cscnb`` is cheap: each name is imported from
its module on first use (PEP 562), so neither the training system nor SymPy nor scikit-learn is loaded
until a chapter or a script asks for it.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> the module (relative to this package) that defines it
_EXPORTS = {
    **dict.fromkeys(["ConvDictionary", "Dictionary", "LinearDictionary", "mutual_coherence", "random_orthonormal"],
                    ".core.dictionary"),
    **dict.fromkeys(["elastic_net_prox", "hard_threshold", "nonneg_soft_threshold", "soft_threshold"], ".core.prox"),
    **dict.fromkeys(["SolveHistory", "SolveResult", "kkt_residual", "objective", "solve"],
                    ".solvers.lasso"),
    **dict.fromkeys(["load_digits"], ".data.digits"),
    **dict.fromkeys(["Split"], ".data.split"),
    **dict.fromkeys(["load_mnist1d"], ".data.mnist1d"),
    **dict.fromkeys(["PlantedCodes", "planted_sparse_codes"], ".data.planted"),
    **dict.fromkeys(["SparseCodingConv2d", "SparseCodingLinear"], ".nn.sparse_coding"),
    **dict.fromkeys(["HierarchicalSparseCodingConfig", "HierarchicalSparseCodingNet"], ".models.hierarchical"),
    **dict.fromkeys(["DenseBlock", "MSDCSCBlock", "ResCSCBlock", "ResidualBlock"], ".nn.blocks"),
    "UnfoldedCSCLayer": ".nn.unfolded",
    **dict.fromkeys(["DenseNetCNN", "MLCSCNet", "MSDCSCNet", "NetworkConfig", "PlainCNN", "ResCSCNet", "ResNetCNN"],
                    ".models.classifiers"),
    **dict.fromkeys(["ALISTA", "LISTA", "LISTACP", "UnrolledConfig"], ".nn.lista"),
    **dict.fromkeys(["layered_basis_pursuit", "layered_thresholding"], ".mlcsc.pursuits"),
    "ml_fista": ".mlcsc.ml_bp",
    **dict.fromkeys(["CSCLayer", "test_time_lam"], ".nn.csc_layer"),
    "convert": ".nn.conversion",
    **dict.fromkeys(["resnet18", "resnet34", "sdnet18", "sdnet18_all", "sdnet34", "sdnet34_all"], ".models.resnet"),
    **dict.fromkeys(["PRESETS", "TrainConfig"], ".train.config"),
    **dict.fromkeys(["load_run", "load_runs"], ".train.results"),
}
#: modules exported as names (SymPy is slow to import: ``cscnb.symbolic`` loads it on first use)
_MODULES = {"symbolic": ".theory.symbolic"}
_SUBPACKAGES = ("core", "data", "mlcsc", "models", "nn", "profiling", "robustness", "solvers", "theory", "train")

__all__ = [
    "ConvDictionary", "Dictionary", "LinearDictionary", "mutual_coherence", "random_orthonormal",
    "elastic_net_prox", "hard_threshold", "nonneg_soft_threshold", "soft_threshold",
    "SolveHistory", "SolveResult", "kkt_residual", "objective", "solve",
    "Split", "PlantedCodes", "load_digits", "load_mnist1d", "planted_sparse_codes",
    "SparseCodingConv2d", "SparseCodingLinear",
    "HierarchicalSparseCodingConfig", "HierarchicalSparseCodingNet",
    "DenseBlock", "MSDCSCBlock", "ResCSCBlock", "ResidualBlock", "UnfoldedCSCLayer",
    "DenseNetCNN", "MLCSCNet", "MSDCSCNet", "NetworkConfig", "PlainCNN", "ResCSCNet", "ResNetCNN",
    "ALISTA", "LISTA", "LISTACP", "UnrolledConfig",
    "layered_basis_pursuit", "layered_thresholding", "ml_fista",
    "CSCLayer", "test_time_lam", "convert",
    "resnet18", "resnet34", "sdnet18", "sdnet18_all", "sdnet34", "sdnet34_all",
    "PRESETS", "TrainConfig", "load_run", "load_runs",
    "symbolic",
]


def __getattr__(name: str):
    """Import a public name's module on first use and cache the name in this module (PEP 562)."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    elif name in _MODULES:
        value = importlib.import_module(_MODULES[name], __name__)
    elif name in _SUBPACKAGES:
        value = importlib.import_module("." + name, __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__) | set(_SUBPACKAGES))
