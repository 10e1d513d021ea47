"""Execution time of every chapter (restart-and-run-all in a fresh kernel), printed as one JSON object.

Usage: .venv/bin/python benchmarks/bench_chapters.py [chapters/NN_*.ipynb ...]

Chapters are executed in memory (the committed files are not touched). Target: each
chapter ≤ 90 s on a 2-core CPU machine.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def time_chapter(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def main(argv: list[str]) -> None:
    paths = [Path(p) for p in argv] or sorted((ROOT / "chapters").glob("*.ipynb"))
    times = {p.name: round(time_chapter(p), 2) for p in paths}
    print(json.dumps({
        "benchmark": "chapter_execution_seconds",
        "chapters": times,
        "total_seconds": round(sum(times.values()), 2),
        "max_seconds": max(times.values()) if times else None,
        "target_max_seconds": 90,
        "provenance": {"git_commit": git_commit(), "python": platform.python_version(),
                       "machine": platform.machine(), "cpus": os.cpu_count()},
    }, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
