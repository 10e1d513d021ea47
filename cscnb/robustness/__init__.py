"""Robustness experiments: the sparse prior (chapter 5), corruptions and attacks (chapter 13), test-time λ at
paper scale (chapter 14).

* :mod:`~cscnb.robustness.sparse_prior` — codes and trained networks that keep the sparse prior, under noise
  (chapter 5);
* :mod:`~cscnb.robustness.corruptions` — Gaussian, shot, impulse and speckle noise at the five CIFAR-10-C
  severities;
* :mod:`~cscnb.robustness.attacks` — FGSM and PGD in the :math:`\\ell_\\infty` and :math:`\\ell_2` balls;
* :mod:`~cscnb.robustness.sweeps` — test-time λ of CSC networks: sweeps and the choice on validation data;
* :mod:`~cscnb.robustness.noises` — the SDNet authors' synthetic noises at their levels (chapter 14);
* :mod:`~cscnb.robustness.adaptive` — SDNet's per-input λ read off the stem's reconstruction error (chapter 14);
* :mod:`~cscnb.robustness.evaluate` and ``python -m cscnb.robustness RUN_DIR`` (:mod:`~cscnb.robustness.cli`) —
  a trained run's accuracy under noises, CIFAR-10-C and attacks for a sweep of test-time λ, as JSON
  (chapter 14). Imported on first use: ``import cscnb.robustness`` does not load the training system.
"""
from .attacks import fgsm, pgd, project_to_ball, steepest_ascent_direction
from .corruptions import (
    CIFAR10C_PARAMETERS,
    CORRUPTIONS,
    corrupt,
    corruption_parameter,
    gaussian_noise,
    impulse_noise,
    shot_noise,
    speckle_noise,
)
from .noises import SDNET_LAMS, SDNET_NOISE_LEVELS, SDNET_NOISES, sdnet_noise
from .sparse_prior import CODE_METHODS, TRAINING_VARIANTS, code_problem, code_sets, code_sweep, train_variant
from .sweeps import csc_layers, lam_sweep, recalibrate_batchnorm, select_lam

__all__ = ["CIFAR10C_PARAMETERS", "CORRUPTIONS", "corruption_parameter", "corrupt", "gaussian_noise", "shot_noise",
           "impulse_noise", "speckle_noise", "fgsm", "pgd", "steepest_ascent_direction", "project_to_ball"]
__all__ += ["csc_layers", "lam_sweep", "select_lam", "recalibrate_batchnorm",
            "SDNET_LAMS", "SDNET_NOISE_LEVELS", "SDNET_NOISES", "sdnet_noise"]
__all__ += ["CODE_METHODS", "TRAINING_VARIANTS", "code_problem", "code_sets", "code_sweep", "train_variant"]
