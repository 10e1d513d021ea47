"""What the chapters' cached training sweeps share: provenance and an atomic JSON write (chapters 7 and 8)."""
from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _git(*args):
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def provenance(script: str, cpu_seconds: float) -> dict:
    """Where a cached result comes from: the command, the commit (and whether tracked files differed), versions."""
    return {"script": script, "command": f".venv/bin/python {script}", "git_commit": _git("rev-parse", "HEAD"),
            "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")), "torch": torch.__version__,
            "python": platform.python_version(), "machine": platform.machine(), "threads": torch.get_num_threads(),
            "cpu_seconds": round(cpu_seconds, 1)}


def write_json(path: Path, record: dict) -> None:
    """Write ``record`` to ``path`` through a temporary file, so a results file is never left half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)


def choose_learning_rate(train_seed0, grid, *, factor: float = 2.5, max_extensions: int = 3):
    """Pick the learning rate with the best validation accuracy of seed 0; extend the grid past an edge optimum.

    ``train_seed0(lr)`` returns ``(model, FitResult, extra)``. The grid is extended by ``factor`` beyond
    whichever end holds the best rate, until the best rate is interior (at most ``max_extensions`` times).
    Ties go to the smaller rate. Returns ``(lr, {lr: best validation accuracy}, {lr: train_seed0(lr)})``.
    """
    grid, results = sorted(grid), {}
    for _ in range(max_extensions + 1):
        for lr in grid:
            if lr not in results:
                results[lr] = train_seed0(lr)
        scores = {lr: results[lr][1].best_val_metric for lr in grid}
        best = max(grid, key=lambda v: (scores[v], -v))
        if best == grid[-1]:
            grid.append(best * factor)
        elif best == grid[0]:
            grid.insert(0, best / factor)
        else:
            break
    return best, scores, results
