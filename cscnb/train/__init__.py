"""The training system: ``python -m cscnb.train --preset NAME [--key value ...]`` (chapter 14).

* :mod:`~cscnb.train.fit` — :func:`fit` / :func:`evaluate` / :func:`summarize`: the one training loop of
  the chapters' small models (validation split, early stopping, mean ± spread over seeds);
* :mod:`~cscnb.train.unrolled` — :func:`fit_unrolled`: unrolled solvers (LISTA-CP, ...) trained on planted
  codes through :func:`fit` (chapter 10);
* :mod:`~cscnb.train.config` — :class:`TrainConfig` (every setting of a run), the named presets and the
  command-line parser;
* :mod:`~cscnb.train.data` — every dataset behind one batch interface, reproducible per ``(seed, epoch)``
  and across DDP processes;
* :mod:`~cscnb.train.loop` — the run: one process or DDP, epochs, evaluation, atomic checkpoints, resume;
* :mod:`~cscnb.train.checkpoint` — atomic checkpoints that resume to the same weights;
* :mod:`~cscnb.train.results` — the ``results/<run>/`` folder (config, provenance, metrics, summary) and
  its loaders;
* :mod:`~cscnb.train.reproduction` — the paper-vs-ours table of chapter 14, filled from ``results/``.

The model comes from :func:`cscnb.models.build_model`; cost estimates from :mod:`cscnb.profiling`.
"""
from .checkpoint import atomic_torch_save, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import PRESETS, TrainConfig, build_parser, config_from_argv, preset_config
from .data import TrainData, build_data, epoch_generator
from .fit import FitResult, Penalty, SeedSummary, evaluate, fit, summarize
from .loop import main, run_directory, select_device, train
from .results import RunRecord, load_run, load_runs
from .unrolled import fit_unrolled, unrolled_loss

__all__ = ["fit", "evaluate", "summarize", "FitResult", "Penalty", "SeedSummary", "TrainConfig", "PRESETS", "preset_config", "build_parser", "config_from_argv", "TrainData", "build_data",
           "epoch_generator", "train", "main", "select_device", "run_directory", "save_checkpoint",
           "load_checkpoint", "atomic_torch_save", "rng_state", "set_rng_state", "RunRecord", "load_run",
           "load_runs", "fit_unrolled", "unrolled_loss"]
