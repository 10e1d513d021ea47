r"""Reproduction targets, the loader that fills their table from ``results/``, and our presets vs the authors' recipe.

Every row of chapter 14's GPU-scale table is a :class:`ReproductionTarget`: a figure the SDNet authors
state (the "Pre-trained Models" table of their repository's README, :cite:p:`sdnet_repository`; see
:mod:`cscnb.train.authors_recipe`), the preset and command that reproduce it, and the summary key holding
our value. :func:`reproduction_report` scans a results folder (one sub-folder per run, written by
``python -m cscnb.train``) and gives each row a status computed from the run files only
(chapter 14, ``eq-ch14-status``), comparing the mean final test accuracy :math:`m` of the finished runs
with the paper's figure :math:`p` and the row's stated tolerance :math:`\tau` (0.5 points by default):

* ``reproduced (95.10 % vs 95.34 %, within 0.5 pt; 1 run)`` — :math:`|m - p| \le \tau`;
* ``below the paper (93.20 % vs 95.34 %, 2.14 pt below; tolerance 0.5 pt; 3 runs, std 0.1 pt)`` —
  :math:`m < p - \tau`
  (``above the paper …`` for :math:`m > p + \tau`);
* ``ran: 98.89 % (1 run), no paper figure`` — no figure stated (the ResNet-18 baseline, the book's CPU runs);
* ``failed run (…)``, ``unfinished run (epoch k of n)``, ``not yet run here``, or ``no preset here (…)``.

A run counts only with its preset's recipe unchanged (every field but :data:`NOT_RECIPE`); malformed run
folders are skipped and listed (:mod:`cscnb.train.run_folders`). :func:`recipe_comparison` compares each
reproduction preset, read at run time, with the authors' recipe, fact by fact.
"""
from __future__ import annotations

import dataclasses
import math
import os
import statistics
from dataclasses import dataclass, field

from .authors_recipe import AUTHORS_HARDWARE, IMPLICIT, PAPER_FIGURES, REASONS, RECIPE, show
from .config import PRESETS, TrainConfig, preset_config
from .run_folders import RunFolderError, SkippedRun, read_run_folder

__all__ = ["NOT_STATED", "NOT_RUN", "NOT_RECIPE", "DEFAULT_TOLERANCE", "ReproductionTarget", "TARGETS", "RunValue",
           "SkippedRun", "RunFolderError", "ReproductionRow", "ReproductionReport", "compare_status",
           "recipe_mismatches", "read_run_folder", "reproduction_report", "report_markdown", "RecipeRow",
           "recipe_comparison", "recipe_markdown"]

NOT_STATED = "no figure in the available sources"
NOT_RUN = "not yet run here"
DEFAULT_TOLERANCE = 0.005
#: settings that change where, how fast or how verbosely a run goes (or only the rounding: the synthesis form),
#: or which seed it draws — not what recipe it follows (bf16 autocast and float64 do: the authors use float32)
NOT_RECIPE = frozenset({"preset", "seed", "device", "threads", "workers", "data_dir", "out_dir", "run_name", "resume",
                        "progress", "eval_every", "log_every", "tensorboard", "compile", "channels_last",
                        "cudnn_benchmark", "deterministic", "csc_synthesis"})


@dataclass(frozen=True)
class ReproductionTarget:
    """One stated figure and how to reproduce it: a row of chapter 14's table (``eq-ch14-status``).

    ``reported_value`` is the figure as a fraction (None: no figure stated), cited to ``source`` (a
    bibliography key); ``preset`` the :data:`~cscnb.train.config.PRESETS` entry whose runs count (None, or a
    name this version lacks: "no preset here"); ``command`` the single-process command line; ``tolerance``
    the half-width (fraction) within which our mean counts as reproducing the figure.
    """
    key: str
    paper: str | None
    claim: str
    reported: str
    reported_value: float | None
    preset: str | None
    command: str | None
    data: str
    metric: str = "final_test_accuracy"
    source: str | None = None
    tolerance: float = DEFAULT_TOLERANCE
    missing_reason: str = ""

    def __post_init__(self):
        if self.metric not in ("final_test_accuracy", "best_test_accuracy"):
            raise ValueError(f"metric must be final_test_accuracy or best_test_accuracy, got {self.metric!r}")
        if self.reported_value is not None and not 0 < self.reported_value <= 1:
            raise ValueError(f"reported_value must be a fraction in (0, 1], got {self.reported_value!r}")
        if not 0 < self.tolerance < 1:
            raise ValueError(f"tolerance must be a fraction in (0, 1), got {self.tolerance!r}")
        if self.preset is not None and not isinstance(self.preset, str):
            raise TypeError(f"preset must be a str or None, got {type(self.preset).__name__}")

    @property
    def available(self) -> bool:
        """Whether this version has the row's preset (the "-all" presets may come later)."""
        return self.preset is not None and self.preset in PRESETS


_DATA = {"cifar10": ("cifar-10-batches-bin", "DATA/cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin"),
         "cifar100": ("cifar-100-binary", "DATA/cifar-100-binary/{train,test}.bin"),
         "imagenet": ("imagenet", "DATA/imagenet/{train,val}/<class>/*.JPEG")}
_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet": "ImageNet"}
_NO_SHORTCUT = "ResNets without shortcuts are not implemented here"


def _target(model: str, dataset: str, preset: str | None, missing: str = "") -> ReproductionTarget:
    value = PAPER_FIGURES.get((model, dataset))
    folder, layout = _DATA[dataset]
    command = None if preset is None else f"python -m cscnb.train --preset {preset} --data-dir DATA/{folder}"
    key = preset or f"{model.lower().replace('-', '').replace(' (no shortcut)', '-noshortcut')}-{dataset}"
    return ReproductionTarget(key, "dai2022revisiting" if value is not None else None,
                              f"{model} top-1 accuracy, {_NAMES[dataset]}", NOT_STATED if value is None
                              else f"{100 * value:.2f} %", value, preset, command, layout,
                              source="sdnet_repository" if value is not None else None, missing_reason=missing)


#: the rows of the authors' "Pre-trained Models" table, plus our ResNet-18 baseline (no figure stated there)
TARGETS = (
    _target("SDNet-18", "cifar10", "sdnet18-cifar10"), _target("SDNet-18-all", "cifar10", "sdnet18-all-cifar10"),
    _target("SDNet-18-all (no shortcut)", "cifar10", None, _NO_SHORTCUT),
    _target("ResNet-18", "cifar10", "resnet18-cifar10"),
    _target("SDNet-18", "cifar100", "sdnet18-cifar100"), _target("SDNet-18-all", "cifar100", "sdnet18-all-cifar100"),
    _target("SDNet-18-all (no shortcut)", "cifar100", None, _NO_SHORTCUT),
    _target("SDNet-18", "imagenet", "sdnet18-imagenet"), _target("SDNet-18-all", "imagenet", "sdnet18-all-imagenet"),
    _target("SDNet-18-all (no shortcut)", "imagenet", None, _NO_SHORTCUT),
)


@dataclass(frozen=True)
class RunValue:
    """One finished run of a target: folder, git commit, final and best test accuracy, epochs, processes."""
    name: str
    commit: str
    final: float
    best: float | None
    epochs: int
    end_time: str
    world_size: int = 1
    batch_size: int | None = None


@dataclass(frozen=True)
class ReproductionRow:
    """A target with its status; ``value`` is the mean final test accuracy of ``runs`` (None if none)."""
    target: ReproductionTarget
    status: str
    value: float | None
    runs: tuple = ()            # RunValue of every finished run that counts, newest first
    unfinished: tuple = ()      # (name, epochs done, epochs planned) of runs without summary.json
    ignored: tuple = ()         # (name, "field=value (recipe: value)") of runs that changed the recipe
    failed: tuple = ()          # (name, reason) of runs that stopped with failed.json


@dataclass(frozen=True)
class ReproductionReport:
    """What :func:`reproduction_report` found under ``root``: one row per target and the skipped folders."""
    root: str
    root_exists: bool
    rows: tuple
    skipped: tuple = field(default=())


def _pt(fraction: float) -> str:
    return f"{100 * fraction:.2f}".rstrip("0").rstrip(".")


def _percent(value: float) -> str:
    return f"{100 * value:.2f} %"


def compare_status(values, reported_value: float | None, tolerance: float = DEFAULT_TOLERANCE) -> str:
    r"""The status of finished runs with final accuracies ``values`` against the figure (``eq-ch14-status``).

    :math:`m` = mean of ``values``; reproduced when :math:`|m - p| \le \tau`, else below or above the
    paper; "ran: …, no paper figure" when ``reported_value`` is None. The run count (and with two or more
    runs the sample standard deviation) is part of the status.
    """
    values = [float(v) for v in values]
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"values must be a non-empty list of finite accuracies, got {values}")
    mean = statistics.fmean(values)
    runs = "1 run" if len(values) == 1 else f"{len(values)} runs, std {_pt(statistics.stdev(values))} pt"
    if reported_value is None:
        return f"ran: {_percent(mean)} ({'mean of ' if len(values) > 1 else ''}{runs}), no paper figure"
    versus, gap = f"{_percent(mean)} vs {_percent(reported_value)}", mean - reported_value
    if abs(gap) <= tolerance + 1e-12:
        return f"reproduced ({versus}, within {_pt(tolerance)} pt; {runs})"
    side = "below" if gap < 0 else "above"
    return f"{side} the paper ({versus}, {_pt(abs(gap))} pt {side}; tolerance {_pt(tolerance)} pt; {runs})"


def recipe_mismatches(config: dict, preset: str) -> list:
    """The settings of ``preset`` that a run's ``config`` changed, as ``"field=value (recipe: value)"``.

    Every :class:`TrainConfig` field is compared except :data:`NOT_RECIPE`; a field missing from
    ``config`` (written by an older version) counts as its default. Decides which runs enter :math:`R`
    and :math:`U` of chapter 14, ``eq-ch14-status``.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    needs_data = PRESETS[preset].get("dataset") in ("cifar10", "cifar100", "imagenet")
    recipe = dataclasses.asdict(preset_config(preset, **({"data_dir": "DATA"} if needs_data else {})))
    return [f"{key}={config.get(key, _default(key))!r} (recipe: {value!r})" for key, value in sorted(recipe.items())
            if key not in NOT_RECIPE and config.get(key, _default(key)) != value]


def _default(key: str):
    return {f.name: f.default for f in dataclasses.fields(TrainConfig)}.get(key)


def _row(target: ReproductionTarget, runs: list) -> ReproductionRow:
    if not target.available:
        why = target.missing_reason or f"preset {target.preset!r} is not in this version"
        return ReproductionRow(target, f"no preset here ({why})", None)
    finished, unfinished, ignored, failed = [], [], [], []
    for run in runs:
        changed = recipe_mismatches(run.config, target.preset)
        if changed:
            ignored.append((run.name, "; ".join(changed)))
        elif run.summary is not None and run.summary.get(target.metric) is None:
            ignored.append((run.name, f"no {target.metric} in summary.json"))
        elif run.summary is not None:
            best = run.summary.get("best_test_accuracy")
            finished.append(RunValue(run.name, str(run.provenance.get("git_commit", "unknown")),
                                     float(run.summary[target.metric]), None if best is None else float(best),
                                     int(run.summary.get("epochs", len(run.metrics))),
                                     str(run.provenance.get("end_time") or ""),
                                     int(run.provenance.get("world_size", 1)), run.config.get("batch_size")))
        elif getattr(run, "failure", None) is not None:
            failed.append((run.name, str(run.failure.get("reason", "no reason given"))))
        else:
            unfinished.append((run.name, len(run.metrics), int(run.config["epochs"])))
    finished.sort(key=lambda r: (r.end_time, r.name), reverse=True)  # newest first
    unfinished.sort(key=lambda r: r[0], reverse=True)
    value = None
    if finished:
        value = statistics.fmean(r.final for r in finished)
        status = compare_status([r.final for r in finished], target.reported_value, target.tolerance)
    elif unfinished:
        _, done, planned = unfinished[0]
        status = f"unfinished run (epoch {done} of {planned})"
    elif failed:
        status = f"failed run ({failed[0][1]})"
    else:
        status = NOT_RUN
    return ReproductionRow(target, status, value, tuple(finished), tuple(unfinished), tuple(ignored), tuple(failed))


def reproduction_report(root: str = "results", targets=TARGETS, *, strict: bool = False) -> ReproductionReport:
    r"""Fill the reproduction table from the run folders directly under ``root`` (chapter 14, ``eq-ch14-status``).

    A run counts for a target when its ``config.json`` names the target's preset and keeps the preset's
    recipe (:func:`recipe_mismatches`); the status compares the mean of the finished runs with the figure
    (:func:`compare_status`). A missing ``root`` means nothing has run. Malformed folders are skipped and
    listed (``strict=False``) or raise :class:`RunFolderError` (``strict=True``).
    """
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path, got {type(root).__name__}")
    root = os.fspath(root)
    targets = tuple(targets)
    if not all(isinstance(t, ReproductionTarget) for t in targets):
        raise TypeError("targets must be ReproductionTarget instances")
    runs, skipped = [], []
    exists = os.path.isdir(root)
    for name in sorted(os.listdir(root)) if exists else []:
        folder = os.path.join(root, name)
        if not os.path.isdir(folder):
            continue
        try:
            runs.append(read_run_folder(folder))
        except RunFolderError as err:
            if strict:
                raise
            skipped.append(SkippedRun(name, err.file, err.reason))
    rows = tuple(_row(t, [r for r in runs if r.config.get("preset") == t.preset]) for t in targets)
    return ReproductionReport(root, exists, rows, tuple(skipped))


def _batch_text(row: ReproductionRow) -> str:
    if row.runs:
        run = row.runs[0]
        batch = run.batch_size
        return (f"{batch} on 1 process" if run.world_size == 1 else
                f"{batch} = {run.world_size} × {batch // run.world_size}" if batch else f"{run.world_size} processes")
    if not row.target.available:
        return "—"
    return f"{PRESETS[row.target.preset].get('batch_size', _default('batch_size'))} (authors: {AUTHORS_HARDWARE})"


def report_markdown(report: ReproductionReport, paper_names: dict | None = None) -> str:
    """The report as a Markdown table (the stated figure beside ours), skipped and ignored runs listed below it.

    ``paper_names`` maps bibliography keys to the text shown in the source column (default: the key).
    """
    if not isinstance(report, ReproductionReport):
        raise TypeError(f"report must be a ReproductionReport, got {type(report).__name__}")
    paper_names = paper_names or {}
    lines = ["| claim | source | stated | global batch (split) | ours | run (commit) |", "|---|---|---|---|---|---|"]
    for row in report.rows:
        t = row.target
        latest = f"`{row.runs[0].name}` ({row.runs[0].commit[:10]})" if row.runs else "—"
        source = paper_names.get(t.source, f"`{t.source}`") if t.source else "—"
        lines.append(f"| {t.claim} | {source} | {t.reported} | {_batch_text(row)} | {row.status} | {latest} |")
    if not report.root_exists:
        lines.append(f"\nNo results folder at `{report.root}`.")
    for skip in report.skipped:
        lines.append(f"\nSkipped `{skip.folder}`: {skip.file}: {skip.reason}.")
    for row in report.rows:
        for name, why in row.ignored:
            lines.append(f"\nNot counted for {row.target.key}: `{name}` changed the recipe ({why}).")
    return "\n".join(lines)


@dataclass(frozen=True)
class RecipeRow:
    """One fact of the authors' recipe against one preset: ``verdict`` is "matches" or "differs: why"."""
    preset: str
    item: str
    authors: str
    ours: str
    verdict: str


def _training_crop() -> str:
    """What the trainer's ImageNet path does, read from its source: the authors' crop or the central square."""
    import inspect

    from . import data
    source = inspect.getsource(data)
    if "build_imagenet_loaders" in source or "RandomResizedCropFlip" in source:
        return "RandomResizedCrop(224) + flip"
    return "random 224 crop of the central 256 square + flip"


def _model_settings(config) -> dict:
    """The CSC-layer settings and the stem of the network the trainer's factory builds for ``config``."""
    from types import SimpleNamespace

    import torch.nn as nn

    from ..models.factory import build_model
    from ..nn.csc_layer import CSCLayer
    classes = {"cifar10": 10, "cifar100": 100, "imagenet": 1000}[config.dataset]
    model = build_model(config, SimpleNamespace(in_channels=3, n_classes=classes, dim=2))
    layers = [m for m in model.modules() if isinstance(m, CSCLayer)]
    per_layer = {
        "csc_lam": lambda m: float(f"{float(m.lam.mean()):.6g}"), "csc_mu": lambda m: float(m.mu),
        "csc_nonneg": lambda m: bool(m.nonneg), "csc_n_iter": lambda m: int(m.n_iter),
        "csc_atom_norm": lambda m: getattr(m, "atom_norm", "reparametrize"),
        "csc_power_iters": lambda m: int(getattr(m.step_size, "power_iters", getattr(m.step_size, "steady_iters", 0))),
        "csc_power_tol": _stopping_rule,
        "csc_synthesis": lambda m: {"auto": "conv_transpose2d"}.get(m.synthesis, m.synthesis),
        "csc_step_factor": lambda m: float(getattr(m, "step_factor", 1 / (1 + getattr(m.step_size, "margin", 0.0)))),
    }
    settings = {}
    for key, read in per_layer.items():
        values = {read(m) for m in layers}
        settings[key] = values.pop() if len(values) == 1 else f"mixed {sorted(values)}"
    settings["stem_relu"] = "on" if any(isinstance(m, nn.ReLU) for m in getattr(model, "stem", [])) else "off"
    settings["stem"] = _stem_geometry(getattr(model, "stem", []))
    return settings


def _stopping_rule(layer) -> str:
    """The stopping rule of a CSC layer's power iteration, read off its step-size state."""
    tol = float(getattr(layer.step_size, "power_tol", 0.0))
    if tol == 0:
        return "none: every iteration runs"
    return f"relative change of the Rayleigh quotient <= {tol:g}, tested on the device; every iteration runs"


def _stem_geometry(stem) -> str:
    """A network's stem as ``CSC k×k, stride s, padding p → BatchNorm [→ MaxPool(k, s, p)]`` (ReLU left out)."""
    import torch.nn as nn

    from ..nn.csc_layer import CSCLayer
    parts = []
    for m in stem:
        if isinstance(m, (CSCLayer, nn.Conv2d)):
            (k, _), (s, _), (p, _) = (v if isinstance(v, tuple) else (v, v)
                                      for v in (m.kernel_size, m.stride, m.padding))
            parts.append(f"{'CSC' if isinstance(m, CSCLayer) else 'Conv'} {k}×{k}, stride {s}, padding {p}")
        elif isinstance(m, nn.BatchNorm2d):
            parts.append("BatchNorm")
        elif isinstance(m, nn.MaxPool2d):
            parts.append(f"MaxPool({m.kernel_size}, {m.stride}, {m.padding})")
    return " → ".join(parts)


def _drop_last() -> str:
    """Whether the trainer's data code drops the incomplete last batch: 10 samples in batches of 4."""
    from types import SimpleNamespace

    from . import data
    steps = {cls.steps_per_epoch(SimpleNamespace(n_train=10), 4) for cls in (data.TrainData, data.FolderData)}
    return "dropped" if steps == {2} else "kept" if steps == {3} else f"mixed {sorted(steps)}"


def recipe_comparison(presets=None) -> list:
    """Each reproduction preset, as this version builds it, against the authors' recipe, fact by fact.

    ``presets``: names (default: the presets of :data:`TARGETS` that exist here and carry a figure). The
    presets are read from :data:`~cscnb.train.config.PRESETS` when this is called; CSC-layer settings and
    the stem are read off the network the trainer's factory builds (what a run would train, whatever the
    config says); a training setting this version lacks reads as what the trainer does without it
    (:data:`~cscnb.train.authors_recipe.IMPLICIT`). A difference is explained from
    :data:`~cscnb.train.authors_recipe.REASONS`.
    """
    if presets is None:
        presets = [t.preset for t in TARGETS if t.available and t.paper is not None]
    rows = []
    for name in presets:
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
        config = preset_config(name, data_dir="DATA")
        if config.dataset not in RECIPE:
            raise ValueError(f"preset {name!r} trains on {config.dataset!r}; "
                             f"the authors' recipe covers {sorted(RECIPE)}")
        model = _model_settings(config) if str(config.model).startswith("sdnet") else {}
        for fact in RECIPE[config.dataset]:
            if not fact.applies(config):
                continue
            if fact.source == "trainer":
                value, note = (_drop_last() if fact.key == "drop_last" else _training_crop()), ""
            elif fact.source == "model":
                value, note = model[fact.key], ""
            elif hasattr(config, fact.key):
                value, note = getattr(config, fact.key), ""
            else:
                value, note = IMPLICIT[fact.key], " (no setting here)"
            ok = fact.matches(value, config)
            why = REASONS.get(fact.key, f"the preset sets {show(value)}")
            rows.append(RecipeRow(name, fact.item, fact.authors, show(value) + note,
                                  "matches" if ok else f"differs: {why}"))
    return rows


def recipe_markdown(rows) -> str:
    """:func:`recipe_comparison` as a Markdown table; rows equal but for the preset are merged (presets listed)."""
    merged = {}
    for r in rows:
        merged.setdefault((r.item, r.authors, r.ours, r.verdict), []).append(r.preset)
    lines = ["| setting | presets | authors | ours | verdict |", "|---|---|---|---|---|"]
    lines += [f"| {item} | {', '.join(presets)} | {authors} | {ours} | {verdict} |"
              for (item, authors, ours, verdict), presets in merged.items()]
    return "\n".join(lines)
