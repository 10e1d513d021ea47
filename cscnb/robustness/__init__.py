"""Robustness experiments (chapter 13): common corruptions and gradient attacks.

* :mod:`~cscnb.robustness.corruptions` — Gaussian, shot, impulse and speckle noise at the five CIFAR-10-C
  severities;
* :mod:`~cscnb.robustness.attacks` — FGSM and PGD in the :math:`\\ell_\\infty` and :math:`\\ell_2` balls;
* :mod:`~cscnb.robustness.sweeps` — test-time λ of CSC networks: sweeps and the choice on validation data.
"""
from .attacks import fgsm, pgd, project_to_ball, steepest_ascent_direction
from .corruptions import (CIFAR10C_PARAMETERS, CORRUPTIONS, corrupt, corruption_parameter, gaussian_noise,
                          impulse_noise, shot_noise, speckle_noise)
from .sweeps import csc_layers, lam_sweep, select_lam

__all__ = ["CIFAR10C_PARAMETERS", "CORRUPTIONS", "corruption_parameter", "corrupt", "gaussian_noise", "shot_noise",
           "impulse_noise", "speckle_noise", "fgsm", "pgd", "steepest_ascent_direction", "project_to_ball"]
__all__ += ["csc_layers", "lam_sweep", "select_lam"]
