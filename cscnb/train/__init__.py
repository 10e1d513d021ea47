"""The training system: ``python -m cscnb.train --preset NAME [--key value ...]`` (chapter 14).

* :mod:`~cscnb.train.fit` — :func:`fit` / :func:`evaluate` / :func:`summarize`: the one training loop of
  the chapters' small models (validation split, early stopping, mean ± spread over seeds);
* :mod:`~cscnb.train.config` — :class:`TrainConfig` (every setting of a run, checked) and the
  command-line parser; :mod:`~cscnb.train.presets` — the named presets (the SDNet recipe and how each
  reproduction preset differs from it, :data:`PRESET_NOTES`);
* :mod:`~cscnb.train.unrolled` — :func:`fit_unrolled`: unrolled solvers (LISTA-CP, ...) trained on planted
  codes through :func:`fit` (chapter 10);
* :mod:`~cscnb.train.data` — every dataset behind one batch interface, reproducible per ``(seed, epoch)``
  and across DDP processes;
* :mod:`~cscnb.train.loop` — the run: one process or DDP, epochs, evaluation, atomic checkpoints, resume,
  failure on a non-finite loss; :mod:`~cscnb.train.step` — one training step and evaluation without host
  syncs, the learning-rate schedule, the per-step log; :mod:`~cscnb.train.distributed` — DDP set-up and
  batch norm over the global batch;
* :mod:`~cscnb.train.gpu_check` — ``python -m cscnb.train.gpu_check`` (``make gpu-check``): a GPU
  machine's self-check in minutes;
* :mod:`~cscnb.train.checkpoint` — atomic checkpoints that resume to the same weights;
* :mod:`~cscnb.train.results` — the ``results/<run>/`` folder (config, provenance, metrics, summary) and
  its loaders;
* :mod:`~cscnb.train.reproduction` — the paper-vs-ours table of chapter 14, filled from ``results/``.

The model comes from :func:`cscnb.models.build_model`; cost estimates from :mod:`cscnb.profiling`.
"""
from .checkpoint import atomic_torch_save, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import PRESET_NOTES, PRESETS, TrainConfig, build_parser, config_from_argv, preset_config
from .data import TrainData, build_data, epoch_generator
from .fit import FitResult, Penalty, SeedSummary, evaluate, fit, summarize
from .loop import main, run_directory, select_device, train
from .results import RunRecord, load_run, load_runs, load_steps
from .step import TrainingFailed
from .unrolled import fit_unrolled, unrolled_loss

__all__ = ["fit", "evaluate", "summarize", "FitResult", "Penalty", "SeedSummary", "TrainConfig", "PRESETS",
           "PRESET_NOTES", "preset_config", "build_parser", "config_from_argv", "TrainData", "build_data",
           "epoch_generator", "train", "main", "select_device", "run_directory", "TrainingFailed",
           "save_checkpoint", "load_checkpoint", "atomic_torch_save", "rng_state", "set_rng_state", "RunRecord",
           "load_run", "load_runs", "load_steps", "fit_unrolled", "unrolled_loss"]
