"""The ``results/<run>/`` folder of a training run, written by ``python -m cscnb.train``.

A run folder holds ``config.json`` (the :class:`~cscnb.train.config.TrainConfig`), ``provenance.json``
(git commit, versions, device, seed, world size, global and per-process batch, times, host),
``metrics.csv`` (one row per epoch), ``steps.jsonl`` (one JSON object per optimizer step: epoch, step,
loss, lr, images/s), ``checkpoint.pt``, optionally ``tensorboard/``, and at the end either
``summary.json`` (``"status": "finished"``) or ``failed.json`` (``"status": "failed"``, the reason, epoch
and step; the last good checkpoint is kept). :attr:`RunRecord.status` is ``"finished"``, ``"failed"`` or
``"unfinished"`` (interrupted or running). Every file is replaced atomically (temporary file, then
``os.replace``) or appended to; JSON is strict (no NaN). Chapters read runs back with :func:`load_run` /
:func:`load_runs`.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import torch

__all__ = ["RunRecord", "METRIC_FIELDS", "git_commit", "provenance", "write_json", "append_metrics",
           "truncate_metrics", "append_steps", "truncate_steps", "load_steps", "load_run", "load_runs"]

METRIC_FIELDS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_top5", "test_loss",
                 "test_accuracy", "test_top5", "lr", "samples_per_second", "epoch_seconds")


@dataclass
class RunRecord:
    """One run folder read back: its config, provenance, per-epoch metrics and summary (None if unfinished)."""
    path: str
    config: dict
    provenance: dict
    metrics: list          # list of dicts with the METRIC_FIELDS keys, numbers as float (epoch as int)
    summary: dict | None   # summary.json of a finished run, else None
    failure: dict | None = None  # failed.json of a failed run (reason, epoch, step), else None

    @property
    def status(self) -> str:
        """``"finished"`` (summary.json), ``"failed"`` (failed.json) or ``"unfinished"`` (interrupted or running)."""
        return "finished" if self.summary is not None else "failed" if self.failure is not None else "unfinished"

    @property
    def name(self) -> str:
        return os.path.basename(os.path.normpath(self.path))

    def column(self, key: str) -> list:
        """One metric over the epochs, e.g. ``run.column("test_accuracy")``."""
        if key not in METRIC_FIELDS:
            raise ValueError(f"key must be one of {METRIC_FIELDS}, got {key!r}")
        return [row.get(key) for row in self.metrics]  # None where a row lacks it (older runs, no validation)


def git_commit(folder: str | None = None) -> str:
    """The commit hash of the git checkout holding ``folder`` (this package by default), or ``"unknown"``."""
    folder = folder or os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def provenance(*, device: str, seed: int, world_size: int, start_time: str, **extra) -> dict:
    """Where and with what a run was made (end time and wall time are added when it finishes); ``extra`` is added."""
    return {**extra,
        "git_commit": git_commit(), "torch": torch.__version__, "cuda": torch.version.cuda or "none",
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": device,
        "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda")
        else platform.processor() or "cpu",
        "world_size": int(world_size), "seed": int(seed), "start_time": start_time, "end_time": None,
        "wall_seconds": None, "hostname": socket.gethostname(), "python": sys.version.split()[0],
        "platform": platform.platform(), "argv": list(sys.argv),
    }


def _atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, flush it to disk, then ``os.replace`` it into place."""
    handle, temp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp",
                                    dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise


def write_json(path: str, data) -> None:
    """Write ``data`` as indented, strict JSON (a NaN or infinity is a ``ValueError``) atomically."""
    if dataclasses.is_dataclass(data):
        data = dataclasses.asdict(data)
    _atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


def append_metrics(path: str, row: dict) -> None:
    """Append one epoch's row to ``metrics.csv`` (writing the header first if the file is new)."""
    unknown = set(row) - set(METRIC_FIELDS)
    if unknown:
        raise ValueError(f"row has unknown metric keys {sorted(unknown)}; allowed: {METRIC_FIELDS}")
    new = not os.path.exists(path)
    with open(path, "a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=METRIC_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({key: row.get(key, "") for key in METRIC_FIELDS})


def truncate_metrics(path: str, epochs_done: int) -> None:
    """Keep only the rows of the first ``epochs_done`` epochs (a resumed run re-does the later ones), atomically."""
    if not os.path.exists(path):
        return
    with open(path, newline="", encoding="utf-8") as handle:
        fields = csv.DictReader(handle).fieldnames
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for row in _read_metrics(path):
        if row["epoch"] <= epochs_done:  # floats are written back with repr: the same values
            writer.writerow({key: "" if row.get(key) is None else row[key] for key in fields})
    _atomic_write_text(path, buffer.getvalue())


def append_steps(path: str, rows: list) -> None:
    """Append rows (dicts: epoch, step, loss, lr, images_per_second) to ``steps.jsonl``, one JSON object a line."""
    if rows:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(row, allow_nan=False) + "\n" for row in rows))


def load_steps(path: str) -> list:
    """The rows of a ``steps.jsonl`` (a run folder or the file); a torn last line (killed mid-write) is dropped."""
    if os.path.isdir(path):
        path = os.path.join(path, "steps.jsonl")
    rows = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    break
    return rows


def truncate_steps(path: str, steps_done: int) -> None:
    """Keep only the rows of the first ``steps_done`` optimizer steps of ``steps.jsonl``, atomically."""
    if os.path.exists(path):
        kept = [row for row in load_steps(path) if row["step"] <= steps_done]
        _atomic_write_text(path, "".join(json.dumps(row, allow_nan=False) + "\n" for row in kept))


def _read_metrics(path: str) -> list:
    """The rows of ``metrics.csv`` (numbers as float, epoch as int, missing values None); a last line without its
    newline (torn by a kill mid-append) is dropped, any other malformed row is a ``ValueError`` naming it."""
    with open(path, newline="", encoding="utf-8") as handle:
        text = handle.read()
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    rows = []
    for number, raw in enumerate(csv.DictReader(io.StringIO(text, newline="")), start=2):
        if None in raw.values() or None in raw:
            raise ValueError(f"{path}: line {number} does not have the header's {len(raw) - (None in raw)} fields")
        row = {key: (float(value) if value != "" else None) for key, value in raw.items()}
        row["epoch"] = int(row["epoch"])
        rows.append(row)
    return rows


def _read_json(path: str):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def load_run(path: str) -> RunRecord:
    """Read one ``results/<run>/`` folder."""
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"{path!r} is not a run folder (no config.json)")
    metrics_path = os.path.join(path, "metrics.csv")
    summary_path = os.path.join(path, "summary.json")
    failed_path = os.path.join(path, "failed.json")
    return RunRecord(path=os.fspath(path), config=_read_json(os.path.join(path, "config.json")),
                     provenance=_read_json(os.path.join(path, "provenance.json")),
                     metrics=_read_metrics(metrics_path) if os.path.exists(metrics_path) else [],
                     summary=_read_json(summary_path) if os.path.exists(summary_path) else None,
                     failure=_read_json(failed_path) if os.path.exists(failed_path) else None)


def load_runs(root: str = "results") -> list:
    """Every run folder directly under ``root``, sorted by name."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"no results folder at {root!r}")
    names = sorted(n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n, "config.json")))
    return [load_run(os.path.join(root, n)) for n in names]
