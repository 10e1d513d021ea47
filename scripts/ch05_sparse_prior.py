"""Chapter 5's sweeps: write chapters/data/ch05_codes.json and chapters/data/ch05_training.json.

    .venv/bin/python scripts/ch05_sparse_prior.py codes      # codes of a fixed dictionary: (λ, C) grid, 5 seeds
    .venv/bin/python scripts/ch05_sparse_prior.py training   # trained networks: 7 variants × 2 lr × 5 seeds
    .venv/bin/python scripts/ch05_sparse_prior.py all

Single-threaded, float64 (codes) and float32 (networks), everything seeded: the chapter re-runs some
entries and asserts that it reproduces them exactly. The experiment code is
cscnb/robustness/sparse_prior.py; this script only loops over the grid and records provenance.
Measured on the shared 2-core development machine (load average 10-14, both parts at once): codes 10 min,
training 21 min.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import platform
import sys
import time
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cscnb.robustness.sparse_prior import TRAINING_VARIANTS, code_sweep, train_variant  # noqa: E402
from cscnb.train.results import git_commit, write_json  # noqa: E402

SEEDS = (0, 1, 2, 3, 4)
CODE_LAMS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0)         # λ of the codes (for the density-matched control: of its target)
CODE_CS = (0.1, 1.0, 10.0, 100.0)                   # inverse regularization of the logistic regression
CODE_SIGMAS = (0.0, 0.1, 0.2, 0.3, 0.5)             # noise on pixel values in [0, 1]
CODE_STEPS = 10                                     # K of "K ISTA steps"
NET_LRS = (3e-3, 1e-2)                              # Adam learning rates, chosen per variant on validation data
NET_SIGMAS = (0.0, 0.25, 0.5, 0.75, 1.0)            # noise in the loader's standardized units (pixel std = 1)
SOURCES = ("scripts/ch05_sparse_prior.py", "cscnb/robustness/sparse_prior.py", "cscnb/models/hierarchical.py",
           "cscnb/nn/sparse_coding.py", "cscnb/train/fit.py", "cscnb/data/digits.py", "cscnb/data/split.py")


def provenance() -> dict:
    """The state the run starts from (call it before the run; ``wall_seconds`` is added at the end)."""
    import sklearn
    dirty = os.popen(f"git -C {ROOT} status --porcelain -- cscnb scripts").read().strip()
    return {"command": " ".join([os.path.relpath(sys.executable, ROOT)] + sys.argv),
            "git_commit": git_commit(str(ROOT)), "git_dirty": bool(dirty),
            "sha256": {p: hashlib.sha256((ROOT / p).read_bytes()).hexdigest() for p in SOURCES},
            "torch": torch.__version__, "sklearn": sklearn.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "torch_threads": torch.get_num_threads(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def run_codes(out_dir: Path) -> None:
    start, rows, record = time.time(), [], provenance()
    for seed in SEEDS:
        rows += code_sweep(seed, CODE_LAMS, CODE_CS, CODE_SIGMAS, n_steps=CODE_STEPS)
        print(f"codes: seed {seed} done after {time.time() - start:.0f} s", flush=True)
    write_json(str(out_dir / "ch05_codes.json"),
               {"grid": {"seeds": SEEDS, "lams": CODE_LAMS, "cs": CODE_CS, "sigmas": CODE_SIGMAS,
                         "n_steps": CODE_STEPS}, "rows": rows,
                "provenance": {**record, "wall_seconds": round(time.time() - start, 1)}})


def run_training(out_dir: Path) -> None:
    start, rows, record = time.time(), [], provenance()
    for name in TRAINING_VARIANTS:
        for lr in NET_LRS:
            for seed in SEEDS:
                rows.append(train_variant(name, seed, lr, NET_SIGMAS))
                print(f"training: {name}, lr {lr}, seed {seed}: {rows[-1]['test']} "
                      f"({time.time() - start:.0f} s)", flush=True)
    write_json(str(out_dir / "ch05_training.json"),
               {"grid": {"seeds": SEEDS, "lrs": NET_LRS, "sigmas": NET_SIGMAS, "variants": list(TRAINING_VARIANTS)},
                "rows": rows, "provenance": {**record, "wall_seconds": round(time.time() - start, 1)}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("codes", "training", "all"))
    parser.add_argument("--out-dir", default=str(ROOT / "chapters" / "data"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    threadpool_limits(1)        # NumPy/SciPy BLAS (the logistic regressions) single-threaded too
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.part in ("codes", "all"):
        run_codes(out_dir)
    if args.part in ("training", "all"):
        run_training(out_dir)


if __name__ == "__main__":
    main()
