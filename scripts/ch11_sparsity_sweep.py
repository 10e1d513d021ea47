"""Chapter 11's sweep: sparsity strategies x strengths x seeds on MNIST-1D and digits; writes
chapters/data/ch11_sparsity_sweep.json.

Every run trains chapter 11's plain CNN (cscnb.models.PlainCNN, width 16, two conv + ReLU layers) in float32
with cscnb.train.fit (Adam, lr 1e-2, batch 64) on the training part of a stratified split, evaluates the
validation accuracy after every epoch, stops after 15 epochs without improvement (at most 200 epochs) and
keeps the best epoch's weights. The two penalties ramp up linearly over the first 5 epochs (warm-up), except
in the "no warm-up" runs of the l1 penalty. Each run records validation and test accuracy, the fraction of
exact zeros of the two hidden ReLU layers on the validation and test inputs, and, per layer, the mutual
coherence of the layer's normalised filters and the stripe and global sparsity of its features on the test
inputs (the quantities Part III's conditions constrain). Strengths are chosen in the chapter on the
validation numbers only. About 4 s per run on an idle core, 102 runs (3 seeds). The file is rewritten after
every configuration; an interrupted sweep resumes where it stopped (runs already in the file are kept).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/ch11_sparsity_sweep.py        # about 10 minutes on an idle core
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

import cscnb
from cscnb.models.classifiers import NetworkConfig, PlainCNN
from cscnb.nn import sparsity
from cscnb.train import evaluate, fit
from cscnb.train.results import now_iso, provenance, write_json

STRENGTHS = {"none": [0.0], "l1": [0.1, 0.3, 1.0, 3.0], "hoyer": [0.1, 0.3, 1.0], "shift": [0.03, 0.1, 0.2],
             "topk": [0.3, 0.15, 0.05]}
NO_WARMUP = [0.3, 1.0]   # l1 strengths also trained without warm-up
MAX_EPOCHS, PATIENCE, WARMUP_EPOCHS, LR, BATCH = 200, 15, 5, 1e-2, 64


def datasets():
    """The two data sets of chapter 11, each with a 20 % validation part carved from its training part."""
    return {"digits": (cscnb.load_digits(val_fraction=0.2), 2),
            "MNIST-1D": (cscnb.load_mnist1d(num_samples=2000, val_fraction=0.2), 1)}


def build(dim: int, strategy: str, strength: float, seed: int) -> PlainCNN:
    """Chapter 11's network for one run: seeded initialisation, activations swapped for shift / top-k."""
    torch.manual_seed(seed)
    model = PlainCNN(NetworkConfig(dim=dim, width=16, n_blocks=1, pool_size=4)).float()
    if strategy == "shift":
        sparsity.replace_relus(model, lambda: sparsity.ShiftedReLU(strength))
    elif strategy == "topk":
        sparsity.replace_relus(model, lambda: sparsity.TopKReLU(strength))
    return model


def penalty(strategy: str, strength: float, warmup: bool):
    if strategy not in sparsity.PENALTIES:
        return None
    return sparsity.ActivationPenalty(strategy, strength, warmup_fraction=WARMUP_EPOCHS / MAX_EPOCHS if warmup else 0.0)


def layer_theory(model, x) -> list:
    """Per hidden ReLU layer: coherence of its normalised filters and the stripe / global sparsity of its features."""
    from cscnb.mlcsc.bounds import conv_mutual_coherence
    from cscnb.theory import stripe_norm, uniqueness_bound
    features = sparsity.collect_activations(model, x)
    convs = [stage[0] for stage in model.stages]
    out = []
    for conv, (name, a) in zip(convs, features.items(), strict=True):
        w = conv.weight.detach().double()
        atoms = w / w.flatten(1).norm(dim=1).reshape(-1, *([1] * (w.ndim - 1)))
        mu = conv_mutual_coherence(cscnb.ConvDictionary(atoms))
        stripes = stripe_norm(a, conv.kernel_size).double()
        nonzeros = (a != 0).flatten(1).sum(dim=1).double()
        out.append({"layer": name, "coherence": mu, "uniqueness_bound": uniqueness_bound(mu),
                    "stripe_mean": float(stripes.mean()), "stripe_min": float(stripes.min()),
                    "stripe_max": float(stripes.max()), "stripe_size": int(a.shape[1] * (2 * conv.kernel_size[0] - 1)
                                                                           ** (a.ndim - 2)),
                    "global_mean": float(nonzeros.mean()), "entries": int(a[0].numel()),
                    "zero_fraction": sparsity.zero_fraction(a)})
    return out


def run_one(data, dim, strategy, strength, seed, warmup=True) -> dict:
    model = build(dim, strategy, strength, seed)
    tic = time.perf_counter()
    result = fit(model, data.x_train, data.y_train, penalty=penalty(strategy, strength, warmup), epochs=MAX_EPOCHS,
                 batch_size=BATCH, lr=LR, seed=seed, validation=(data.x_val, data.y_val), patience=PATIENCE)
    val_layers = sparsity.feature_sparsity(model, data.x_val)
    test_layers = sparsity.feature_sparsity(model, data.x_test)
    return {"strategy": strategy, "strength": strength, "warmup": warmup, "seed": seed,
            "epochs_run": result.epochs_run, "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
            "val_accuracy": result.best_val_metric, "test_accuracy": evaluate(model, data.x_test, data.y_test),
            "val_zero_fraction": sum(m["zero_fraction"] for m in val_layers.values()) / len(val_layers),
            "test_zero_fraction": sum(m["zero_fraction"] for m in test_layers.values()) / len(test_layers),
            "test_hoyer": sum(m["hoyer"] for m in test_layers.values()) / len(test_layers),
            "layers": layer_theory(model, data.x_test), "seconds": time.perf_counter() - tic}


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
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default=os.path.join("chapters", "data", "ch11_sparsity_sweep.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    protocol = {"max_epochs": MAX_EPOCHS, "patience": PATIENCE, "warmup_epochs": WARMUP_EPOCHS, "lr": LR,
                "batch_size": BATCH, "width": 16, "val_fraction": 0.2, "mnist1d_samples": 2000,
                "strengths": STRENGTHS, "no_warmup": NO_WARMUP, "seeds": args.seeds}
    record = {"description": "chapter 11: sparsity strategies x strengths x seeds (scripts/ch11_sparsity_sweep.py)",
              "protocol": protocol, "provenance": [], "runs": {}}
    if os.path.exists(args.out):
        with open(args.out, encoding="utf-8") as handle:
            previous = json.load(handle)
        if previous.get("protocol") == json.loads(json.dumps(protocol)):
            record = previous          # resume: keep the runs already made with this protocol
    start, wall = now_iso(), time.perf_counter()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    for name, (data, dim) in datasets().items():
        runs = record["runs"].setdefault(name, [])
        done = {(r["strategy"], r["strength"], r["warmup"], r["seed"]) for r in runs}
        configs = [(s, v, True) for s, values in STRENGTHS.items() for v in values]
        configs += [("l1", v, False) for v in NO_WARMUP]
        for strategy, strength, warmup in configs:
            for seed in range(args.seeds):
                if (strategy, strength, warmup, seed) in done:
                    continue
                run = run_one(data, dim, strategy, strength, seed, warmup)
                runs.append(run)
                print(f"{name:8s} {strategy:5s} {strength:5.2f} warm-up {warmup!s:5s} seed {seed}: "
                      f"{run['epochs_run']:3d} epochs, val {run['val_accuracy']:.3f}, test {run['test_accuracy']:.3f}, "
                      f"zeros {run['test_zero_fraction']:.3f}", flush=True)
            write_json(args.out, record)   # after every configuration: an interruption loses at most one
    session = provenance(device="cpu", seed=0, world_size=1, start_time=start)
    session.update(end_time=now_iso(), wall_seconds=time.perf_counter() - wall, **code_trees())
    record["provenance"].append(session)
    write_json(args.out, record)


if __name__ == "__main__":
    main()
