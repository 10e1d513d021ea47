"""``python -m cscnb.robustness RUN_DIR [options]``: the robustness report of a trained run (chapter 14).

Examples (``DATA`` is your data folder; nothing is downloaded)::

    python -m cscnb.robustness results/sdnet18-cifar10-20260101-000000 --cifar10c-dir DATA/CIFAR-10-C
    python -m cscnb.robustness RUN --noises gaussian --attacks none --lams 0.1 0.5 1.0 --limit 1000

Writes ``RUN/robustness.json`` (or ``--out``); an existing file is kept unless ``--force``. See
:mod:`cscnb.robustness.evaluate` for what is measured and the README section "Robustness evaluation".
"""
from __future__ import annotations

import argparse
import os
import sys

from .noises import SDNET_LAMS, SDNET_NOISE_LEVELS

__all__ = ["build_parser", "main"]

_DEFAULT_EPS = (1 / 255, 2 / 255, 4 / 255, 8 / 255)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cscnb.robustness",
        description="Accuracy of a trained run (python -m cscnb.train) under the SDNet authors' synthetic noises, "
                    "CIFAR-10-C and FGSM/PGD, for a sweep of the CSC layers' test-time lambda, beside SDNet's "
                    "per-input lambda rule. Writes one JSON file with provenance.")
    parser.add_argument("run_dir", help="the run folder (config.json and checkpoint.pt)")
    parser.add_argument("--data-dir", default=None, help="data folder of the run's dataset (default: the run's)")
    parser.add_argument("--out", default=None, help="output JSON (default RUN_DIR/robustness.json)")
    parser.add_argument("--force", action="store_true", help="replace an existing output file")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    parser.add_argument("--lams", type=float, nargs="+", default=list(SDNET_LAMS),
                        help="test-time lambda grid (default: the authors' 0.1 ... 1.4)")
    parser.add_argument("--layers", choices=("stem", "all"), default="stem",
                        help="CSC layers whose lambda changes: the stem (the authors' choice) or all")
    parser.add_argument("--noises", nargs="+", default=list(SDNET_NOISE_LEVELS),
                        help="the authors' synthetic noises at their levels, or 'none' "
                             f"(default: {' '.join(SDNET_NOISE_LEVELS)})")
    parser.add_argument("--levels", type=float, nargs="+", default=None,
                        help="levels for every listed noise instead of the authors' (e.g. a quick run)")
    parser.add_argument("--cifar10c-dir", default=None, help="folder of the CIFAR-10-C .npy files (cifar10 runs)")
    parser.add_argument("--corruptions", nargs="+", default=None,
                        help="CIFAR-10-C corruptions (default: every file present in --cifar10c-dir)")
    parser.add_argument("--severities", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--attacks", nargs="+", default=["fgsm", "pgd"], help="fgsm, pgd, or 'none'")
    parser.add_argument("--eps", type=float, nargs="+", default=list(_DEFAULT_EPS),
                        help="attack radii in pixel units of [0, 1] (default 1/255 2/255 4/255 8/255)")
    parser.add_argument("--norm", choices=("linf", "l2"), default="linf")
    parser.add_argument("--pgd-steps", type=int, default=10)
    parser.add_argument("--pgd-step-factor", type=float, default=2.5, help="PGD step = factor * eps / steps")
    parser.add_argument("--calibration-fraction", type=float, default=0.5,
                        help="seeded fraction of the test set used only to fit the adaptive rule (0: no rule)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the calibration split and the noises")
    parser.add_argument("--limit", type=int, default=None, help="at most this many evaluation images")
    parser.add_argument("--batch-size", type=int, default=500)
    return parser


def _arguments(args) -> dict:
    return {key: value for key, value in vars(args).items()}


def main(argv=None) -> int:
    """Parse, check everything that can be checked before loading, evaluate, write; returns the exit status."""
    from ..data.cifar10c import available_corruptions
    from .evaluate import evaluate_run, load_trained_run, write_report
    parser = build_parser()
    args = parser.parse_args(argv)
    out = args.out or os.path.join(args.run_dir, "robustness.json")
    if os.path.exists(out) and not args.force:
        parser.error(f"{out!r} exists; pass --force to replace it (or choose another --out)")
    if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        parser.error(f"--out: the folder of {out!r} does not exist")
    noises = [] if args.noises == ["none"] else args.noises
    unknown = sorted(set(noises) - set(SDNET_NOISE_LEVELS))
    if unknown:
        parser.error(f"--noises: unknown {unknown}; choose from {list(SDNET_NOISE_LEVELS)} or 'none'")
    noise_levels = {name: tuple(args.levels) if args.levels else SDNET_NOISE_LEVELS[name] for name in noises}
    attacks = [] if args.attacks == ["none"] else args.attacks
    if set(attacks) - {"fgsm", "pgd"}:
        parser.error(f"--attacks: choose fgsm, pgd or 'none', got {attacks}")
    corruptions = []
    if args.cifar10c_dir is not None:
        try:
            corruptions = args.corruptions or available_corruptions(args.cifar10c_dir)
        except (FileNotFoundError, TypeError) as err:
            parser.error(f"--cifar10c-dir: {err}")
    elif args.corruptions:
        parser.error("--corruptions needs --cifar10c-dir")
    try:
        run = load_trained_run(args.run_dir, data_dir=args.data_dir, device=args.device)
        report = evaluate_run(run, lams=args.lams, layers=args.layers, noises=noise_levels,
                              cifar10c_dir=args.cifar10c_dir, corruptions=corruptions, severities=args.severities,
                              attacks=attacks, eps=args.eps, norm=args.norm, pgd_steps=args.pgd_steps,
                              pgd_step_factor=args.pgd_step_factor, calibration_fraction=args.calibration_fraction,
                              seed=args.seed, limit=args.limit, batch_size=args.batch_size)
    except (ValueError, TypeError, FileNotFoundError) as err:
        parser.error(str(err))
    path = write_report(report, out, run=run, arguments={**_arguments(args), "argv": list(sys.argv)},
                        force=args.force)
    print(f"robustness report written to {path}")
    return 0
