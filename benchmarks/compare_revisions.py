"""Interleaved A/B timing of two revisions of cscnb in ONE process: solvers, fast paths and the CSC layer.

Prints one JSON object. Usage, from the repository root (a git checkout):

    .venv/bin/python benchmarks/compare_revisions.py [--base main] [--head HEAD] [--rounds 7]

Both revisions' ``cscnb/`` are exported with ``git archive`` into a temporary folder under two package
names (the package imports itself relatively), imported side by side, and every case is timed in
alternating order (base, head, head, base, ...) for ``--rounds`` rounds. On a shared machine the load
drifts over minutes; alternating calls meet the same load, so the per-case ratio head/base (median, and
median of the per-round ratios) is what to read, not the absolute times. One torch thread; glibc keeps
freed memory mapped, as in ``bench_csc_layer.py``.

Cases: the dense LASSO of ``bench_solvers.py`` (a) with ``fista_restart`` + polish (working set), plain
restarted FISTA (95 iterations) and textbook FISTA (100 iterations); a circular 7×7 convolutional problem
(32 atoms, 128×128) with 40 iterations of Fourier-domain restarted FISTA and of Fourier ADMM; the CSC
layer (K = 2, 3→64 and 64→64 at 32×32, batch 32) in eval mode and as a training forward+backward.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def _export(revision: str, folder: Path, name: str) -> str:
    """``cscnb/`` of ``revision`` as the package ``name`` in ``folder``; returns the commit."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", revision], capture_output=True, text=True,
                            check=True).stdout.strip()
    archive = folder / f"{name}.tar"
    with open(archive, "wb") as handle:
        subprocess.run(["git", "-C", str(ROOT), "archive", commit, "cscnb"], stdout=handle, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder / name, filter="data")
    (folder / name / "cscnb").rename(folder / f"pkg_{name}")
    return commit


def _cases(pkg, csc_layer):
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(64, 256, generator=generator, dtype=torch.float64)
    weight = weight / weight.norm(dim=0)
    codes = torch.zeros(2000, 256, dtype=torch.float64)
    atoms = torch.stack([torch.randperm(256, generator=generator)[:5] for _ in range(2000)])
    codes.scatter_(1, atoms, torch.randn(2000, 5, generator=generator, dtype=torch.float64))
    x = codes @ weight.T + 0.01 * torch.randn(2000, 64, generator=generator, dtype=torch.float64)
    dense = pkg.LinearDictionary(weight)
    dense.lipschitz_constant()
    filters = torch.randn(32, 1, 7, 7, generator=generator)
    filters = filters / filters.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)
    image = torch.randn(1, 1, 128, 128, generator=generator)
    conv = pkg.ConvDictionary(filters, padding=3, padding_mode="circular")
    cases = {
        "dense fista_restart+polish tol=1e-4": lambda: pkg.solve(dense, x, 0.1, method="fista_restart", polish=True,
                                                                 tol=1e-4),
        "dense fista_restart tol=1e-6": lambda: pkg.solve(dense, x, 0.1, method="fista_restart", tol=1e-6,
                                                          n_iter=3000),
        "dense fista 100 iterations": lambda: pkg.solve(dense, x[:500], 0.1, tol=1e-300, n_iter=100),
        "fourier fista_restart 40 iterations": lambda: pkg.solve(conv, image, 0.05, method="fista_restart",
                                                                 domain="fourier", tol=1e-300, n_iter=40),
        "admm_fourier 40 iterations": lambda: pkg.solve(conv, image, 0.05, method="admm_fourier", tol=1e-300,
                                                        n_iter=40),
    }
    for in_channels in (3, 64):
        torch.manual_seed(0)
        layer = csc_layer(in_channels, 64, 3, padding=1).eval()
        batch = torch.randn(32, in_channels, 32, 32)
        trained = csc_layer(in_channels, 64, 3, padding=1)
        batch_grad = batch.clone().requires_grad_()

        def forward(layer=layer, batch=batch):
            with torch.no_grad():
                layer(batch)

        def training(layer=trained, batch=batch_grad):  # forward (and any step-size refresh) + backward
            layer(batch).sum().backward()
        cases[f"CSC layer eval forward {in_channels}->64"] = forward
        cases[f"CSC layer training step {in_channels}->64"] = training
    return cases


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main")
    parser.add_argument("--head", default="HEAD")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 1 << 30)          # M_MMAP_THRESHOLD: as bench_csc_layer.py
    libc.mallopt(-1, 2**31 - 1)        # M_TRIM_THRESHOLD
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        commits = {label: _export(rev, folder, label) for label, rev in (("base", args.base), ("head", args.head))}
        sys.path.insert(0, str(folder))
        import importlib
        packages = {label: importlib.import_module(f"pkg_{label}") for label in commits}
        cases = {label: _cases(pkg, importlib.import_module(f"pkg_{label}.nn.csc_layer").CSCLayer)
                 for label, pkg in packages.items()}
        times = {name: {"base": [], "head": []} for name in cases["base"]}
        for name in times:  # one warm-up call each
            for label in ("base", "head"):
                cases[label][name]()
        for round_ in range(args.rounds):
            for name in times:
                for label in (("base", "head") if round_ % 2 == 0 else ("head", "base")):
                    start = time.perf_counter()
                    cases[label][name]()
                    times[name][label].append(time.perf_counter() - start)
    result = {"benchmark": "compare_revisions: interleaved A/B of two cscnb revisions in one process",
              "base": {"revision": args.base, "commit": commits["base"]},
              "head": {"revision": args.head, "commit": commits["head"]},
              "rounds": args.rounds, "load_average_1min_at_end": os.getloadavg()[0], "torch": torch.__version__,
              "cases": {}}
    for name, values in times.items():
        base, head = statistics.median(values["base"]), statistics.median(values["head"])
        result["cases"][name] = {
            "base_median_s": base, "head_median_s": head, "head_over_base": head / base,
            "paired_median_head_over_base": statistics.median(h / b for b, h in zip(values["base"], values["head"],
                                                                                     strict=True))}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
