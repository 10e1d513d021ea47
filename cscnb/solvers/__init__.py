"""Sparse coding by proximal gradient: :func:`solve`, the one loop behind it, and the fast paths.

* :mod:`~cscnb.solvers.engine` — the package's one proximal-gradient loop (pluggable momentum: none,
  FISTA, adaptive restart; step map; monitor; in place or differentiable), the FISTA step and momentum
  sequence, the restart test; used by :func:`solve`, the CSC layer, ML-FISTA, the unfolded blocks and
  LISTA (chapters 5, 6, 7, 8, 10 and 12);
* :mod:`~cscnb.solvers.lasso` — :func:`solve` (ISTA, FISTA and the fast methods below behind one
  call), the objective and the KKT residual (chapters 1–10, 12–14; ISTA/FISTA and their rates in chapter 5);
* :mod:`~cscnb.solvers.restart` — restarted FISTA with batch shrinking, a working-set pass and an exact
  support polish (``method="fista_restart"``);
* :mod:`~cscnb.solvers.fourier` — the Fourier-domain operator of a circular convolutional dictionary and
  FISTA with it (chapter 3's model with periodic boundary);
* :mod:`~cscnb.solvers.admm` — ADMM with per-frequency Woodbury solves (``method="admm_fourier"``).
"""
from .admm import fourier_admm
from .engine import (
    MOMENTA,
    extrapolate,
    fista_momentum,
    fista_step,
    fista_steps,
    forward_backward,
    gradient_restart,
    proximal_gradient,
)
from .fourier import DOMAINS, FourierConvOperator, fourier_applicable, fourier_fista, prefer_fourier, use_fourier
from .lasso import METHODS, SolveHistory, SolveResult, kkt_residual, objective, solve
from .restart import restarted_fista

__all__ = ["solve", "objective", "kkt_residual", "SolveResult", "SolveHistory", "METHODS", "DOMAINS",
           "proximal_gradient", "forward_backward", "fista_step", "fista_steps", "fista_momentum", "gradient_restart",
           "extrapolate", "MOMENTA", "restarted_fista", "FourierConvOperator", "fourier_applicable", "prefer_fourier",
           "use_fourier", "fourier_fista", "fourier_admm"]
