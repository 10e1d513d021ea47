"""The ``results/<run>/`` folder of a training run, written by ``python -m cscnb.train``.

A run folder holds ``config.json`` (the :class:`~cscnb.train.config.TrainConfig`), ``provenance.json``
(git commit, versions, device, seed, times, host), ``metrics.csv`` (one row per epoch) and, once the
run has finished, ``summary.json``. Chapters read runs back with :func:`load_run` / :func:`load_runs`.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
from dataclasses import dataclass

import torch

__all__ = ["RunRecord", "METRIC_FIELDS", "git_commit", "provenance", "write_json", "append_metrics",
           "truncate_metrics", "load_run", "load_runs"]

METRIC_FIELDS = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "lr",
                 "samples_per_second", "epoch_seconds")


@dataclass
class RunRecord:
    """One run folder read back: its config, provenance, per-epoch metrics and summary (None if unfinished)."""
    path: str
    config: dict
    provenance: dict
    metrics: list          # list of dicts with the METRIC_FIELDS keys, numbers as float (epoch as int)
    summary: dict | None

    @property
    def name(self) -> str:
        return os.path.basename(os.path.normpath(self.path))

    def column(self, key: str) -> list:
        """One metric over the epochs, e.g. ``run.column("test_accuracy")``."""
        if key not in METRIC_FIELDS:
            raise ValueError(f"key must be one of {METRIC_FIELDS}, got {key!r}")
        return [row[key] for row in self.metrics]


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


def provenance(*, device: str, seed: int, world_size: int, start_time: str) -> dict:
    """Where and with what a run was made (end time and wall time are added when it finishes)."""
    return {
        "git_commit": git_commit(), "torch": torch.__version__, "cuda": torch.version.cuda or "none",
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": device,
        "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else platform.processor() or "cpu",
        "world_size": int(world_size), "seed": int(seed), "start_time": start_time, "end_time": None,
        "wall_seconds": None, "hostname": socket.gethostname(), "python": sys.version.split()[0],
        "platform": platform.platform(), "argv": list(sys.argv),
    }


def write_json(path: str, data) -> None:
    """Write ``data`` as indented JSON atomically (temporary file, then ``os.replace``)."""
    if dataclasses.is_dataclass(data):
        data = dataclasses.asdict(data)
    temp = path + ".tmp"
    with open(temp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(temp, path)


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
    """Keep only the rows of the first ``epochs_done`` epochs (a resumed run re-does the later ones)."""
    if not os.path.exists(path):
        return
    rows = [r for r in _read_metrics(path) if r["epoch"] <= epochs_done]
    os.remove(path)
    for row in rows:
        append_metrics(path, row)


def _read_metrics(path: str) -> list:
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        for raw in csv.DictReader(handle):
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
    return RunRecord(path=os.fspath(path), config=_read_json(os.path.join(path, "config.json")),
                     provenance=_read_json(os.path.join(path, "provenance.json")),
                     metrics=_read_metrics(metrics_path) if os.path.exists(metrics_path) else [],
                     summary=_read_json(summary_path) if os.path.exists(summary_path) else None)


def load_runs(root: str = "results") -> list:
    """Every run folder directly under ``root``, sorted by name."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"no results folder at {root!r}")
    names = sorted(n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n, "config.json")))
    return [load_run(os.path.join(root, n)) for n in names]
