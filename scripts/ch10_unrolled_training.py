"""Train dense LISTA-CP networks of chapter 10 over seeds; write chapters/data/ch10_unrolled_training.json.

The problem is chapter 10's: a 64x128 Gaussian dictionary (seed 0, unit-norm atoms), codes with s = 3
non-zeros of magnitude in [1, 2] (B = 2), 16 layers, every layer initialised at the minimax encoder and the
theorem's thresholds. For each activation, training objective, learning rate and seed, the network is trained
with cscnb.train.fit_unrolled (Adam, batch 64) on 2048 planted codes, early-stopped on 512 validation codes
(patience 15 epochs, at most 400 epochs), and measured on chapter 10's 1000 test codes. The learning rate is
chosen afterwards, in the chapter, on the validation objective. Runs take about 10 s each on an idle core.

The firm threshold is not trained on the last-layer objective: that objective is at float64 round-off (about
1e-18) before training, its fluctuations keep resetting the patience, and a run takes all 400 epochs without a
measurable change. The file is rewritten after every run; an interrupted sweep resumes where it stopped (runs
already in the file, made with the same problem, are kept).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/ch10_unrolled_training.py            # about 15 minutes
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

import cscnb
from cscnb.nn.lista import ACTIVATIONS, LISTACP, UnrolledConfig, empirical_rate, iterate_errors, theorem_thresholds
from cscnb.theory import generalized_coherence, generalized_coherence_weights, lista_cp_rate_constant
from cscnb.train import fit_unrolled
from cscnb.train.results import now_iso, provenance, write_json

N_FEATURES, N_ATOMS, SPARSITY, BOUND, N_LAYERS = 64, 128, 3, 2.0, 16
SKIPPED = ("firm", "last")     # see the module docstring


def problem():
    """Chapter 10's dictionary, minimax encoder, theorem thresholds and rate (identical construction)."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(N_FEATURES, N_ATOMS, generator=generator, dtype=torch.float64)
    weight = weight / weight.norm(dim=0)
    encoder = generalized_coherence_weights(weight, method="minimax")
    mu_tilde = generalized_coherence(encoder, weight)
    return weight, encoder, mu_tilde, lista_cp_rate_constant(mu_tilde, SPARSITY)


def measure(network, weight, test, bound) -> dict:
    with torch.no_grad():
        iterates = network(test.x, return_iterates=True)
    errors = iterate_errors(iterates, test.z)                                             # (K + 1, n_test)
    diagonal = torch.stack([(W.detach() * weight).sum(dim=0) for W in network.encoders])   # (K, m): w_i^T d_i
    return {
        "median": errors.median(dim=1).values.tolist(), "max": errors.max(dim=1).values.tolist(),
        "mean": errors.mean(dim=1).tolist(), "q99": errors.quantile(0.99, dim=1).tolist(),
        "rate_median": empirical_rate(errors.median(dim=1).values),
        "rate_worst": empirical_rate(errors.max(dim=1).values),
        "fraction_below_bound": float((errors <= bound[:, None]).all(dim=0).double().mean()),
        "fraction_false_positive": float(((iterates != 0) & (test.z == 0)[None]).any(dim=0).any(dim=1).double().mean()),
        "fraction_monotone": float((errors[1:] <= errors[:-1] * (1 + 1e-9)).all(dim=0).double().mean()),
        "max_diagonal_deviation": float((diagonal - 1).abs().max()),
        "thresholds": network.thresholds.detach().tolist(),
    }


def code_trees() -> dict:
    """Git object ids of the code a run used: the cscnb tree and this script (stable when commits are rebased)."""
    import subprocess
    trees = {}
    for key, path in (("cscnb_tree", "cscnb"), ("script_blob", os.path.relpath(__file__))):
        out = subprocess.run(["git", "rev-parse", f"HEAD:{path}"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", path], capture_output=True, text=True).stdout.strip()
        trees[key] = (out.stdout.strip() or "unknown") + (" (uncommitted changes)" if dirty else "")
    return trees


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-4])
    parser.add_argument("--out", default=os.path.join("chapters", "data", "ch10_unrolled_training.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    start, wall = now_iso(), time.perf_counter()
    weight, encoder, mu_tilde, rate_c = problem()
    dictionary = cscnb.LinearDictionary(weight)
    theta = theorem_thresholds(mu_tilde, SPARSITY, BOUND, N_LAYERS)
    bound = SPARSITY * BOUND * torch.exp(-rate_c * torch.arange(N_LAYERS + 1, dtype=torch.float64))
    setup = {"n_features": N_FEATURES, "n_atoms": N_ATOMS, "sparsity": SPARSITY, "bound": BOUND,
             "n_layers": N_LAYERS, "mu_tilde": mu_tilde, "rate_c": rate_c,
             "dictionary_checksum": float(weight.abs().sum()), "n_train": 2048, "n_val": 512,
             "n_test": 1000, "batch_size": 64, "patience": 15, "max_epochs": 400, "lrs": args.lrs,
             "seeds": args.seeds, "skipped": [list(SKIPPED)]}
    record = {"description": "chapter 10: dense LISTA-CP trained over seeds (scripts/ch10_unrolled_training.py)",
              "problem": setup, "provenance": [], "runs": []}
    if os.path.exists(args.out):
        with open(args.out, encoding="utf-8") as handle:
            previous = json.load(handle)
        if previous.get("problem") == json.loads(json.dumps(setup)):
            record = previous          # resume: keep the runs already made for this problem
    done = {(r["activation"], r["objective"], r["lr"], r["seed"]) for r in record["runs"]}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    made = 0
    for activation in ACTIVATIONS:
        nonneg = activation == "relu"
        test = cscnb.planted_sparse_codes(dictionary, 1000, SPARSITY, seed=1, nonneg=nonneg)
        for objective in ("layerwise", "last"):
            if (activation, objective) == SKIPPED:
                continue
            for lr in args.lrs:
                for seed in range(args.seeds):
                    if (activation, objective, lr, seed) in done:
                        continue
                    train = cscnb.planted_sparse_codes(dictionary, 2048, SPARSITY, seed=100 + seed, nonneg=nonneg)
                    val = cscnb.planted_sparse_codes(dictionary, 512, SPARSITY, seed=200 + seed, nonneg=nonneg)
                    config = UnrolledConfig(n_layers=N_LAYERS, activation=activation, threshold=theta, firm_gamma=2.0)
                    network = LISTACP(dictionary, config, encoder=encoder)
                    tic = time.perf_counter()
                    fit = fit_unrolled(network, train, val, objective=objective, epochs=400, patience=15,
                                       batch_size=64, lr=lr, seed=seed)
                    run = {"activation": activation, "objective": objective, "lr": lr, "seed": seed,
                           "epochs_run": fit.epochs_run, "best_epoch": fit.best_epoch,
                           "stopped_early": fit.stopped_early, "val_metric": fit.val_metric,
                           "train_loss": fit.train_loss, "seconds": time.perf_counter() - tic}
                    run.update(measure(network, weight, test, bound))
                    record["runs"].append(run)
                    made += 1
                    write_json(args.out, record)   # after every run: an interruption loses at most one
                    print(f"{activation:5s} {objective:9s} lr {lr:g} seed {seed}: {fit.epochs_run:3d} epochs, "
                          f"val {fit.best_val_metric:.3e}, median error at K {run['median'][-1]:.2e}, "
                          f"max {run['max'][-1]:.2e}, below bound {run['fraction_below_bound']:.3f}", flush=True)
    session = provenance(device="cpu", seed=0, world_size=1, start_time=start)
    session.update(end_time=now_iso(), wall_seconds=time.perf_counter() - wall, runs_made=made, **code_trees())
    record["provenance"].append(session)
    write_json(args.out, record)

if __name__ == "__main__":
    main()
