"""Wall time of ``make test`` (each step and in total) and of every chapter's execution, as one JSON object.

Usage (from the repository root, after ``make setup``)::

    .venv/bin/python benchmarks/bench_book.py                 # steps of `make test` in this tree + chapters
    .venv/bin/python benchmarks/bench_book.py --fresh-clone   # `make test` in a fresh clone (includes setup)
    .venv/bin/python benchmarks/bench_book.py --skip-chapters # only the `make test` timings

Targets: ``make test`` ≤ 15 min on the 2-core development machine (CI's limit is 90 min);
each chapter ≤ 90 s. The steps are timed as separate ``make`` invocations, in the order ``make test``
runs them, so a failing step is reported with its exit code and the remaining steps still run.
A fresh clone times what CI times: clone, create ``.venv``, install the lock, then ``make test``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_chapters import git_commit, time_chapter  # noqa: E402  (same folder, not a package)

ROOT = Path(__file__).resolve().parent.parent
TEST_STEPS = ("unit", "nbval", "html-strict", "site-test")  # the prerequisites of `make test`, in order
TARGET_MAKE_TEST_SECONDS = 15 * 60
TARGET_CHAPTER_SECONDS = 90


def run_timed(command: list[str], cwd: Path) -> dict:
    """Run ``command`` in ``cwd``; its wall time, exit code and the last lines of its output."""
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
    return {"command": " ".join(command), "seconds": round(seconds, 1), "exit_code": proc.returncode, "tail": tail}


def time_make_test_steps(tree: Path) -> dict:
    steps = {step: run_timed(["make", step], tree) for step in TEST_STEPS}
    total = sum(s["seconds"] for s in steps.values())
    return {"steps": steps, "total_seconds": round(total, 1),
            "all_passed": all(s["exit_code"] == 0 for s in steps.values())}


def time_fresh_clone() -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="cscnb-bench-book-"))
    clone = workdir / "clone"
    try:
        cloned = run_timed(["git", "clone", "--quiet", str(ROOT), str(clone)], workdir)
        if cloned["exit_code"] != 0:
            return {"clone": cloned, "all_passed": False}
        make_test = run_timed(["make", "test"], clone)
        return {"clone": cloned, "make_test": make_test, "total_seconds": make_test["seconds"],
                "all_passed": make_test["exit_code"] == 0}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fresh-clone", action="store_true", help="time `make test` in a fresh clone (with setup)")
    parser.add_argument("--skip-chapters", action="store_true", help="do not time the chapters one by one")
    args = parser.parse_args(argv)

    record: dict = {"benchmark": "book_test_and_chapter_seconds"}
    if args.fresh_clone:
        record["make_test"] = {"mode": "fresh clone (git clone + setup + make test)", **time_fresh_clone()}
    else:
        record["make_test"] = {"mode": "this tree, steps timed separately (setup already done)",
                               **time_make_test_steps(ROOT)}
    record["make_test"]["target_seconds"] = TARGET_MAKE_TEST_SECONDS
    record["make_test"]["within_target"] = record["make_test"].get("total_seconds", float("inf")) \
        <= TARGET_MAKE_TEST_SECONDS
    if not args.skip_chapters:
        chapters = {p.name: round(time_chapter(p), 1) for p in sorted((ROOT / "chapters").glob("*.ipynb"))}
        record["chapters"] = {"seconds": chapters, "total_seconds": round(sum(chapters.values()), 1),
                              "max_seconds": max(chapters.values()), "target_max_seconds": TARGET_CHAPTER_SECONDS,
                              "all_within_target": max(chapters.values()) <= TARGET_CHAPTER_SECONDS}
    record["provenance"] = {"git_commit": git_commit(), "python": sys.version.split()[0], "cpus": os.cpu_count(),
                            "load_average_1min_at_end": round(os.getloadavg()[0], 2)}
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
