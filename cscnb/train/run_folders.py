"""Reading ``python -m cscnb.train`` run folders for chapter 14's reproduction table, malformed ones named.

:func:`read_run_folder` raises :class:`RunFolderError` (a ``ValueError`` naming the folder and the file at
fault) for a folder the table cannot use; :mod:`cscnb.train.reproduction` skips and lists such folders.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

from . import results

__all__ = ["SkippedRun", "RunFolderError", "read_run_folder"]


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
    names a preset and its epochs, ``summary.json`` (if present) holds a finite ``final_test_accuracy``,
    ``failed.json`` (if present) is an object, and ``metrics.csv`` parses (``eq-ch14-status``).
    """
    config = _read_json(folder, "config.json")
    for key in ("preset", "epochs"):
        if key not in config:
            raise RunFolderError(folder, "config.json", f"no {key!r} field")
    provenance = _read_json(folder, "provenance.json")
    summary = _read_json(folder, "summary.json", required=False)
    failure = _read_json(folder, "failed.json", required=False)
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
    record = results.RunRecord(path=folder, config=config, provenance=provenance, metrics=metrics, summary=summary)
    record.failure = failure  # also on versions of RunRecord without the field
    return record
