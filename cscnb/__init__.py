"""cscnb: convolutional neural networks as sparse coding — the package behind the book.

The stable public surface (design §3) is re-exported here. Submodules by role:

* ``prox``, ``dictionary``, ``solvers`` (+ ``fast_solvers``, ``fft_solvers``, ``fourier_admm``): proximal maps,
  dictionaries, ISTA/FISTA, and fast paths (restart + polish; Fourier-domain FISTA and ADMM for circular convolutions)
* ``layers``, ``models``: one-step sparse-coding layers and the hierarchical CNN of Part I
* ``mlcsc``, ``ml_bp``, ``mlcsc_bounds``: multi-layer CSC pursuits and bounds (chapter 6)
* ``blocks``, ``unfolding``, ``networks``: Res-CSC / MSD-CSC blocks and classifiers (chapters 7–8)
* ``theory``, ``bruteforce``: coherence, uniqueness and stability bounds (chapter 9)
* ``lista``: unrolled solvers LISTA / LISTA-CP / ALISTA (chapter 10); ``sparsity``: sparse-feature metrics
  and regularisers (chapter 11)
* ``csc_layer`` (+ ``csc_steps``), ``convert``: SDNet's CSC layer as a drop-in ``nn.Conv2d`` (chapter 12);
  ``costs``: its time against its cost floor; ``corruptions``, ``attacks``: robustness experiments (chapter 13)
* ``resnet``, ``presets``, ``results``, ``cifar``: models and the training system (``python -m cscnb.train``);
  ``reproduction``: the paper-vs-ours table of chapter 14, filled from ``results/``
* ``data``: digits, MNIST-1D, planted sparse codes; ``symbolic``: SymPy helpers (imported on first use)
"""
from . import (attacks, blocks, bruteforce, cifar, corruptions, costs, csc_layer, csc_steps, data, dictionary, layers,
               lista, mlcsc, models, networks, presets, prox, reproduction, resnet, results, solvers, sparsity,
               theory, unfolding)
from .convert import convert
from .csc_layer import CSCLayer, test_time_lam
from .presets import PRESETS, TrainConfig
from .resnet import resnet18, resnet34, sdnet18, sdnet18_all, sdnet34, sdnet34_all
from .results import load_run, load_runs
from .blocks import DenseBlock, MSDCSCBlock, ResCSCBlock, ResidualBlock, UnfoldedCSCLayer
from .data import DigitsSplit, MNIST1DSplit, PlantedCodes, load_digits, load_mnist1d, planted_sparse_codes
from .dictionary import ConvDictionary, Dictionary, LinearDictionary, mutual_coherence, random_orthonormal
from .layers import SparseCodingConv2d, SparseCodingLinear
from .lista import ALISTA, LISTA, LISTACP, UnrolledConfig
from .mlcsc import layered_basis_pursuit, layered_thresholding, ml_fista
from .models import HierarchicalSparseCodingConfig, HierarchicalSparseCodingNet
from .networks import DenseNetCNN, MLCSCNet, MSDCSCNet, NetworkConfig, PlainCNN, ResCSCNet, ResNetCNN
from .prox import elastic_net_prox, hard_threshold, nonneg_soft_threshold, soft_threshold
from .solvers import SolveHistory, SolveResult, kkt_residual, objective, solve

__version__ = "0.1.0"

__all__ = [
    "ConvDictionary", "Dictionary", "LinearDictionary", "mutual_coherence", "random_orthonormal",
    "elastic_net_prox", "hard_threshold", "nonneg_soft_threshold", "soft_threshold",
    "SolveHistory", "SolveResult", "kkt_residual", "objective", "solve",
    "DigitsSplit", "MNIST1DSplit", "PlantedCodes", "load_digits", "load_mnist1d", "planted_sparse_codes",
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


def __getattr__(name):
    # SymPy is slow to import; load cscnb.symbolic only when a chapter asks for it
    if name == "symbolic":
        import importlib
        return importlib.import_module(".symbolic", __name__)
    raise AttributeError(f"module 'cscnb' has no attribute {name!r}")
