r"""Reproduction targets and the loader that fills their table from ``results/`` (chapter 14).

Every row of chapter 14's GPU-scale table is a :class:`ReproductionTarget`: a number a paper reports
(as the paper states it — a cited figure, never one of ours), the preset and exact command line that
reproduce it, and the summary key holding our value. :func:`reproduction_report` scans a results folder
(``python -m cscnb.train`` writes one sub-folder per run, see :mod:`cscnb.train.results`) and gives each row a
status computed from the run files only:

* ``reproduced: 95.10 %`` — one or more *finished* runs (``summary.json`` present) of the row's preset
  with the preset's recipe unchanged; the value is the mean of their ``final_test_accuracy``;
* ``unfinished run (epoch k of n)`` — only interrupted or running runs (no ``summary.json`` yet);
* ``not yet run here`` — no run of that preset (or no results folder at all).

**Malformed run folders** (unreadable or invalid JSON, a missing ``config.json`` or ``provenance.json``,
an unparsable ``metrics.csv``) are *skipped*, and every skipped folder is listed with the file and the
reason in :attr:`ReproductionReport.skipped`, which the rendered table prints below the rows: one broken
copy must not hide the other runs. With ``strict=True`` the first malformed folder raises
:class:`RunFolderError` (a ``ValueError``) naming the folder and the file instead.

What a run costs (FLOPs, wall time for an assumed throughput) is estimated by :mod:`cscnb.profiling.cost_models`.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

from . import results
from .config import PRESETS

__all__ = ["NOT_STATED", "NOT_RUN", "ReproductionTarget", "TARGETS", "RunValue", "SkippedRun", "RunFolderError",
           "ReproductionRow", "ReproductionReport", "recipe_mismatches", "read_run_folder", "reproduction_report",
           "report_markdown"]

NOT_STATED = "not stated here (see paper)"
NOT_RUN = "not yet run here"
# settings that change where or how fast a run goes, not what it computes (bf16 autocast is the recipe's
# speed choice; a float32 run of the same recipe still reproduces it)
_NOT_RECIPE = frozenset({"threads", "amp", "device", "compile", "workers", "data_dir", "out_dir", "run_name",
                         "resume", "progress", "eval_every"})


@dataclass(frozen=True)
class ReproductionTarget:
    """One reported number and how to reproduce it: a row of chapter 14's table (``eq-ch14-status``).

    ``reported`` is the figure as the paper states it (or :data:`NOT_STATED` when we could not confirm
    it); ``reported_value`` the same figure as a fraction; ``metric`` the ``summary.json`` key holding
    our value; ``preset`` the :data:`cscnb.train.config.PRESETS` entry whose runs count; ``command`` the
    exact command line; ``data`` the data folder layout the command expects.
    """
    key: str
    paper: str
    claim: str
    reported: str
    reported_value: float | None
    preset: str
    command: str
    data: str
    metric: str = "final_test_accuracy"

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        if self.metric not in ("final_test_accuracy", "best_test_accuracy"):
            raise ValueError(f"metric must be final_test_accuracy or best_test_accuracy, got {self.metric!r}")
        if self.reported_value is not None and not 0 < self.reported_value <= 1:
            raise ValueError(f"reported_value must be a fraction in (0, 1], got {self.reported_value!r}")


_CIFAR10 = "DATA/cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin"
_CIFAR100 = "DATA/cifar-100-binary/{train,test}.bin"
_IMAGENET = "DATA/imagenet/{train,val}/<class>/*.JPEG"

#: The GPU-scale numbers of Dai et al. 2022 (SDNet). 95.34 % and 78.45 % are the SDNet-18 figures of the
#: "Pre-trained Models" table in the README of the authors' repository (github.com/Delay-Xili/SDNet), which
#: states no ResNet-18 baseline; rows without a confirmed figure read NOT_STATED instead of a remembered number.
TARGETS = (
    ReproductionTarget("sdnet18-cifar10", "dai2022revisiting", "SDNet-18 test accuracy, CIFAR-10", "95.34 %",
                       0.9534, "sdnet18-cifar10",
                       "python -m cscnb.train --preset sdnet18-cifar10 --data-dir DATA/cifar-10-batches-bin",
                       _CIFAR10),
    ReproductionTarget("resnet18-cifar10", "dai2022revisiting", "ResNet-18 baseline, CIFAR-10 (same recipe)",
                       NOT_STATED, None, "resnet18-cifar10",
                       "python -m cscnb.train --preset resnet18-cifar10 --data-dir DATA/cifar-10-batches-bin",
                       _CIFAR10),
    ReproductionTarget("sdnet18-cifar100", "dai2022revisiting", "SDNet-18 test accuracy, CIFAR-100", "78.45 %",
                       0.7845, "sdnet18-cifar100",
                       "python -m cscnb.train --preset sdnet18-cifar100 --data-dir DATA/cifar-100-binary",
                       _CIFAR100),
    ReproductionTarget("sdnet18-imagenet", "dai2022revisiting", "SDNet-18 top-1 accuracy, ImageNet", NOT_STATED,
                       None, "sdnet18-imagenet",
                       "torchrun --nproc_per_node=8 -m cscnb.train --preset sdnet18-imagenet "
                       "--data-dir DATA/imagenet --no-progress", _IMAGENET),
)


@dataclass(frozen=True)
class RunValue:
    """One finished run of a target: folder name, git commit, final and best test accuracy, epochs."""
    name: str
    commit: str
    final: float
    best: float | None
    epochs: int
    end_time: str


@dataclass(frozen=True)
class SkippedRun:
    """A run folder the loader could not use, the file at fault and why."""
    folder: str
    file: str
    reason: str


class RunFolderError(ValueError):
    """A malformed run folder (``strict=True``); ``folder`` and ``file`` name the culprit."""

    def __init__(self, folder: str, file: str, reason: str):
        super().__init__(f"run folder {folder!r}: {file}: {reason}")
        self.folder, self.file, self.reason = folder, file, reason


@dataclass(frozen=True)
class ReproductionRow:
    """A target with its status; ``value`` is the mean final test accuracy of ``runs`` (None if none)."""
    target: ReproductionTarget
    status: str
    value: float | None
    runs: tuple = ()            # RunValue of every finished run that counts
    unfinished: tuple = ()      # (name, epochs done, epochs planned) of runs without summary.json
    ignored: tuple = ()         # (name, "field=value (recipe: value)") of runs that changed the recipe


@dataclass(frozen=True)
class ReproductionReport:
    """What :func:`reproduction_report` found under ``root``: one row per target and the skipped folders."""
    root: str
    root_exists: bool
    rows: tuple
    skipped: tuple = field(default=())


def recipe_mismatches(config: dict, preset: str) -> list:
    """The recipe settings of ``preset`` that ``config`` changed, as ``"field=value (recipe: value)"``.

    A run reproduces a row only with the preset's recipe; device, threads, autocast, paths and the like
    are not part of it. Decides which runs enter :math:`R` and :math:`U` of chapter 14, ``eq-ch14-status``.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    return [f"{key}={config.get(key)!r} (recipe: {value!r})" for key, value in sorted(PRESETS[preset].items())
            if key not in _NOT_RECIPE and config.get(key) != value]


def _read_json(folder: str, name: str, required: bool = True):
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        if required:
            raise RunFolderError(folder, name, "missing")
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunFolderError(folder, name, f"unreadable JSON ({err})") from None
    if not isinstance(data, dict):
        raise RunFolderError(folder, name, f"expected a JSON object, got {type(data).__name__}")
    return data


def read_run_folder(folder: str) -> results.RunRecord:
    """Read one run folder, raising :class:`RunFolderError` (naming the file) when it is malformed.

    Checks what the table needs: ``config.json`` and ``provenance.json`` are JSON objects, ``config``
    names a preset and its epochs, ``summary.json`` (if present) holds a numeric ``final_test_accuracy``,
    and ``metrics.csv`` parses. Supplies the run files of chapter 14, ``eq-ch14-status``.
    """
    config = _read_json(folder, "config.json")
    for key in ("preset", "epochs"):
        if key not in config:
            raise RunFolderError(folder, "config.json", f"no {key!r} field")
    provenance = _read_json(folder, "provenance.json")
    summary = _read_json(folder, "summary.json", required=False)
    if summary is not None:
        for key, optional in (("final_test_accuracy", False), ("best_test_accuracy", True)):
            value = summary.get(key)
            if optional and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise RunFolderError(folder, "summary.json", f"{key} is not a finite number: {value!r}")
    try:
        metrics = results.load_run(folder).metrics
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RunFolderError(folder, "metrics.csv", f"unparsable ({err})") from None
    return results.RunRecord(path=folder, config=config, provenance=provenance, metrics=metrics, summary=summary)


def _percent(value: float) -> str:
    return f"{100 * value:.2f} %"


def _row(target: ReproductionTarget, runs: list) -> ReproductionRow:
    finished, unfinished, ignored = [], [], []
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
                                     str(run.provenance.get("end_time") or "")))
        else:
            unfinished.append((run.name, len(run.metrics), int(run.config["epochs"])))
    # newest first: the status names the most recent run
    finished.sort(key=lambda r: (r.end_time, r.name), reverse=True)
    unfinished.sort(key=lambda r: r[0], reverse=True)
    if finished:
        value = sum(r.final for r in finished) / len(finished)
        if len(finished) == 1:
            status = f"reproduced: {_percent(value)}"
        else:
            low, high = min(r.final for r in finished), max(r.final for r in finished)
            status = (f"reproduced: {_percent(value)} (mean of {len(finished)} runs, "
                      f"{_percent(low)} to {_percent(high)})")
    elif unfinished:
        value, (_, done, planned) = None, unfinished[0]
        status = f"unfinished run (epoch {done} of {planned})"
    else:
        value, status = None, NOT_RUN
    return ReproductionRow(target, status, value, tuple(finished), tuple(unfinished), tuple(ignored))


def reproduction_report(root: str = "results", targets=TARGETS, *, strict: bool = False) -> ReproductionReport:
    r"""Fill the reproduction table from the run folders directly under ``root`` (chapter 14, ``eq-ch14-status``).

    Each row's status is :math:`\text{reproduced: } \frac{1}{|R|}\sum_{r\in R}\mathrm{acc}_r` for the finished runs
    :math:`R`, else "unfinished run (epoch k of n)" for the newest unfinished run, else :data:`NOT_RUN`.
    A run counts for a target when its ``config.json`` names the target's preset and keeps the preset's
    recipe (:func:`recipe_mismatches`); runs that changed it are listed in ``ignored``. A missing ``root``
    means nothing has run: every row reads :data:`NOT_RUN`. Malformed folders are skipped and listed
    (``strict=False``) or raise :class:`RunFolderError` (``strict=True``).
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


def report_markdown(report: ReproductionReport, paper_names: dict | None = None) -> str:
    """The report as a Markdown table (paper's figure beside ours), skipped folders listed below it.

    ``paper_names`` maps bibliography keys to the text shown (default: the key). Renders the statuses of
    chapter 14, ``eq-ch14-status``; pandas is not in the pinned environment, so this is plain text.
    """
    if not isinstance(report, ReproductionReport):
        raise TypeError(f"report must be a ReproductionReport, got {type(report).__name__}")
    paper_names = paper_names or {}
    lines = ["| claim | paper | reported | ours | run (commit) |", "|---|---|---|---|---|"]
    for row in report.rows:
        t = row.target
        latest = f"`{row.runs[0].name}` ({row.runs[0].commit[:10]})" if row.runs else "—"
        paper = paper_names.get(t.paper, f"`{t.paper}`")
        lines.append(f"| {t.claim} | {paper} | {t.reported} | {row.status} | {latest} |")
    if not report.root_exists:
        lines.append(f"\nNo results folder at `{report.root}`.")
    for skip in report.skipped:
        lines.append(f"\nSkipped `{skip.folder}`: {skip.file}: {skip.reason}.")
    for row in report.rows:
        for name, why in row.ignored:
            lines.append(f"\nNot counted for {row.target.key}: `{name}` changed the recipe ({why}).")
    return "\n".join(lines)
