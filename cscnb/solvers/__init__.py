"""Sparse coding by proximal gradient: :func:`solve` and the iterations behind it.

* :mod:`~cscnb.solvers.proximal_gradient` — :func:`solve` (ISTA, FISTA and the fast methods below behind one
  call), the objective, the KKT residual and the FISTA step shared with the CSC layer (chapters 1–10,
  12–14; ISTA/FISTA and their rates in chapter 5, the step in chapter 12);
* :mod:`~cscnb.solvers.restart` — restarted FISTA with batch shrinking, a working-set pass and an exact
  support polish (``method="fista_restart"``);
* :mod:`~cscnb.solvers.fourier` — the Fourier-domain operator of a circular convolutional dictionary and
  FISTA with it (chapter 3's model with periodic boundary);
* :mod:`~cscnb.solvers.admm` — ADMM with per-frequency Woodbury solves (``method="admm_fourier"``).
"""
from .admm import fourier_admm
from .fourier import DOMAINS, FourierConvOperator, fourier_applicable, fourier_fista, prefer_fourier, use_fourier
from .restart import restarted_fista
from .proximal_gradient import (METHODS, SolveHistory, SolveResult, fista_step, fista_steps, kkt_residual, objective,
                                solve)

__all__ = ["solve", "objective", "kkt_residual", "fista_step", "fista_steps", "SolveResult", "SolveHistory",
           "METHODS", "DOMAINS", "restarted_fista", "FourierConvOperator", "fourier_applicable", "prefer_fourier",
           "use_fourier", "fourier_fista", "fourier_admm"]
