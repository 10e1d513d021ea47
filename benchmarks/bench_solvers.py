"""Time to the same objective: cscnb.solve (CPU) against scikit-learn's coordinate-descent Lasso.

Prints one JSON object. Never run in CI (it takes about a minute). Usage, from the repository root:

    .venv/bin/python benchmarks/bench_solvers.py [--repeats 5] [--threads 1]

Problem: 2000 signals x = D z + 0.01 e in R^64, D has 256 unit-norm Gaussian atoms, z has 5 planted
N(0, 1) coefficients on random atoms, e ~ N(0, I); lam = 0.1 in  1/2 ||x - D z||^2 + lam ||z||_1.
scikit-learn's Lasso minimizes (1/(2n)) ||y - X w||^2 + alpha ||w||_1, so alpha = lam / n_features.

Every solver runs over a ladder of tolerances; a setting counts only if EVERY signal's float64
objective is within 1e-6 (relative) of the best objective any run reached for that signal. Each
solver's time is the median over repeats of its loosest qualifying tolerance (the faster variant at
that tolerance); repeats interleave the solvers so that load from other processes hits both alike.
"""
from __future__ import annotations

import argparse
import os
import sys


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per setting (median is reported)")
    parser.add_argument("--threads", type=int, default=1, help="threads for torch and BLAS (sklearn's CD is serial)")
    parser.add_argument("--signals", type=int, default=2000)
    return parser.parse_args()


ARGS = _parse()
# thread counts must be fixed before numpy/torch load their BLAS
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
import torch  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import Lasso  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import cscnb  # noqa: E402

N_FEATURES, N_ATOMS, N_NONZERO, NOISE, LAM, CRITERION = 64, 256, 5, 0.01, 0.1, 1e-6


def make_problem(n_signals: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    atoms = torch.randn(N_FEATURES, N_ATOMS, generator=gen, dtype=torch.float64)
    atoms = atoms / atoms.norm(dim=0)
    codes = torch.zeros(n_signals, N_ATOMS, dtype=torch.float64)
    support = torch.rand(n_signals, N_ATOMS, generator=gen).argsort(dim=1)[:, :N_NONZERO]
    codes.scatter_(1, support, torch.randn(n_signals, N_NONZERO, generator=gen, dtype=torch.float64))
    signals = codes @ atoms.T + NOISE * torch.randn(n_signals, N_FEATURES, generator=gen, dtype=torch.float64)
    return atoms, signals


def objective(atoms, signals, codes):
    """Float64 per-signal objective, the one yardstick for every solver."""
    codes = torch.as_tensor(codes, dtype=torch.float64)
    return 0.5 * (signals - codes @ atoms.T).square().sum(dim=1) + LAM * codes.abs().sum(dim=1)


def sklearn_runner(atoms, signals, tol, precompute):
    X, Y = atoms.numpy(), np.ascontiguousarray(signals.numpy().T)

    def run():
        model = Lasso(alpha=LAM / N_FEATURES, fit_intercept=False, tol=tol, max_iter=100_000, precompute=precompute)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, Y)
        return np.asarray(model.coef_)
    return run


def cscnb_runner(atoms, signals, tol, **options):
    dictionary = cscnb.LinearDictionary(atoms)
    dictionary.lipschitz_constant()  # cached, like sklearn's Gram: a property of the dictionary

    def run():
        return cscnb.solve(dictionary, signals, LAM, tol=tol, n_iter=20_000, **options).z
    return run


def provenance():
    root = Path(__file__).resolve().parent.parent

    def git(*args):
        try:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() \
        else platform.processor()
    return {"torch": torch.__version__, "numpy": np.__version__, "sklearn": sklearn.__version__,
            "cscnb": cscnb.__version__, "python": platform.python_version(), "torch_threads": torch.get_num_threads(),
            "blas_threads_env": ARGS.threads, "cpu": cpu, "cpu_count": os.cpu_count(),
            "load_average_1min": os.getloadavg()[0], "git_commit": git("rev-parse", "HEAD"),
            "git_dirty": bool(git("status", "--porcelain", "--", "cscnb", "benchmarks")),
            "note": "median of interleaved repeats; other processes share the CPU (see load_average_1min)"}


def main():
    torch.set_num_threads(ARGS.threads)
    atoms, signals = make_problem(ARGS.signals)
    settings, tolerances = {}, {}
    for tol in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6):
        for pre in (True, False):
            name = f"sklearn Lasso(precompute={pre}, tol={tol:g})"
            settings[name], tolerances[name] = ("sklearn", sklearn_runner(atoms, signals, tol, pre)), tol
    for tol in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6):
        name = f"cscnb fista_restart+polish, float32 identification, tol={tol:g}"
        settings[name], tolerances[name] = ("cscnb", cscnb_runner(
            atoms, signals, tol, method="fista_restart", polish=True, iterate_dtype=torch.float32)), tol
        name = f"cscnb fista_restart+polish, float64, tol={tol:g}"
        settings[name], tolerances[name] = ("cscnb", cscnb_runner(
            atoms, signals, tol, method="fista_restart", polish=True)), tol
    # for scale only (timed once): the textbook loop and restart without polish
    for tol in (1e-6, 1e-8):
        settings[f"cscnb fista (textbook) tol={tol:g} [1 repeat]"] = ("cscnb-info", cscnb_runner(atoms, signals, tol))
        settings[f"cscnb fista_restart tol={tol:g} [1 repeat]"] = (
            "cscnb-info", cscnb_runner(atoms, signals, tol, method="fista_restart"))

    times = {name: [] for name in settings}
    objectives = {}
    for repeat in range(ARGS.repeats):
        for name, (kind, run) in settings.items():
            if kind == "cscnb-info" and repeat > 0:
                continue
            start = time.perf_counter()
            codes = run()
            times[name].append(time.perf_counter() - start)
            objectives[name] = objective(atoms, signals, codes)
    best = torch.stack(list(objectives.values())).min(dim=0).values
    rows = {}
    for name, (kind, _) in settings.items():
        gap = float(((objectives[name] - best) / best.abs()).max())
        rows[name] = {"solver": kind, "median_s": statistics.median(times[name]), "times_s": times[name],
                      "max_relative_gap": gap, "mean_objective": float(objectives[name].mean()),
                      "qualifies": gap <= CRITERION}

    def chosen(kind):
        """The loosest qualifying tolerance (what a user would pick), then the faster variant at it.

        Picking the fastest of all qualifying settings would favour whichever solver has more
        settings (a minimum of noisy medians); this rule is the same for both solvers.
        """
        ok = [name for name, r in rows.items() if r["solver"] == kind and r["qualifies"]]
        if not ok:
            return None
        loosest = max(tolerances[name] for name in ok)
        return min((rows[name]["median_s"], name) for name in ok if tolerances[name] == loosest)[1]
    sk_name, cs_name = chosen("sklearn"), chosen("cscnb")
    result = {
        "benchmark": "bench_solvers: time to the same objective, cscnb.solve vs scikit-learn Lasso (CD)",
        "problem": {"n_signals": ARGS.signals, "n_features": N_FEATURES, "n_atoms": N_ATOMS,
                    "signals": f"planted {N_NONZERO}-sparse N(0,1) codes on unit-norm Gaussian atoms + {NOISE} N(0,1) noise",
                    "lam": LAM, "sklearn_alpha": LAM / N_FEATURES, "criterion": f"max relative objective gap <= {CRITERION:g}",
                    "best_objective_mean": float(best.mean())},
        "sklearn": {"setting": sk_name, **(rows[sk_name] if sk_name else {})},
        "cscnb": {"setting": cs_name, **(rows[cs_name] if cs_name else {})},
        "speedup_sklearn_over_cscnb": (rows[sk_name]["median_s"] / rows[cs_name]["median_s"]
                                       if sk_name and cs_name else None),
        "repeats": ARGS.repeats,
        "all_settings": rows,
        "provenance": provenance(),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
