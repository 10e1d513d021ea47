"""Provenance block shared by the benchmark scripts: versions, CPU, threads, load, git commit.

Imported by ``bench_csc_layer.py``, ``bench_memory.py`` and ``bench_solvers.py`` (which adds the
versions of the reference libraries).
"""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def _git(*args):
    try:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def cpu_model() -> str:
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def provenance(threads_requested: int) -> dict:
    """Versions, hardware, threads and the 1-minute load average (read at the end of the run)."""
    import cscnb
    return {"torch": torch.__version__, "cscnb": cscnb.__version__, "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(), "threads_requested": threads_requested,
            "cpu": cpu_model(), "cpu_count": os.cpu_count(), "cuda": torch.cuda.is_available(),
            "load_average_1min": os.getloadavg()[0], "git_commit": _git("rev-parse", "HEAD"),
            "git_dirty": bool(_git("status", "--porcelain", "--", "cscnb", "benchmarks")),
            "note": "medians of interleaved repeats; other processes share the CPU (see load_average_1min)"}


def keep_freed_memory_mapped() -> dict:
    """Stop glibc from returning freed memory to the OS between calls (mallopt), so that timings do not
    include page faults whose number depends on what ran before (measured here: 12–18 thousand minor
    faults per 64-channel CSC-layer call with the defaults, none after this call). Applies to every
    candidate alike; returns what was set, for the JSON record. No-op off glibc."""
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return {"allocator": "default (no glibc)"}
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = libc.mallopt(m_mmap_threshold, 1 << 30) == 1 and libc.mallopt(m_trim_threshold, 2**31 - 1) == 1
    return {"allocator": "glibc mallopt: M_MMAP_THRESHOLD=1 GiB, M_TRIM_THRESHOLD=2 GiB (freed memory stays mapped)"
            if ok else "default (mallopt failed)"}
