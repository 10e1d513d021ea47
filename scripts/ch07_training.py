"""The training sweep of chapter 7 (Res-CSC on MNIST-1D), cached in ``chapters/data/ch07_training.json``.

Run from the repository root (about half an hour of one CPU core)::

    .venv/bin/python scripts/ch07_training.py

Six networks with the layout ``eq-ch7-network`` of chapter 7 (plain CNN, ML-CSC, ResNet, Res-CSC with 0, 1
and 2 unfolded steps) are trained on MNIST-1D with a stratified validation split carved from the training
samples. Every run trains to convergence of the validation accuracy (``cscnb.train.fit`` with early
stopping) and keeps the weights of its best validation epoch. The sparse-coding networks keep every step
admissible, :math:`c \\le 1/\\|D\\|_2^2`, by rescaling their dictionaries after every optimizer step
(``cscnb.nn.rescale_to_step_bound``), except two controls ("free steps") that train without it. The
learning rate of each network is chosen on the validation accuracy of seed 0 from ``LRS``, extended past
an edge optimum until it is interior; then ``SEEDS`` runs measure test accuracy (test labels are used
only there). For every Res-CSC run the script also measures the three terms of ``eq-ch7-res-step`` on the
test signals in float64. The chapter reads the JSON and re-runs one entry to check that it reproduces.
"""
from __future__ import annotations

import sys
import time
from functools import partial

import torch
from sweep_common import ROOT, choose_learning_rate, provenance, write_json

from cscnb.data import load_mnist1d
from cscnb.models.classifiers import MLCSCNet, NetworkConfig, PlainCNN, ResCSCNet, ResNetCNN, with_unfolding
from cscnb.nn import rescale_to_step_bound
from cscnb.train import evaluate, fit

OUT = ROOT / "chapters" / "data" / "ch07_training.json"
# (name, class, n_unfold, steps kept admissible); the two "free steps" runs are controls that leave the ISTA regime
MODELS = [("plain CNN", "PlainCNN", 0, False), ("ML-CSC", "MLCSCNet", 0, True), ("ML-CSC", "MLCSCNet", 0, False),
          ("ResNet", "ResNetCNN", 0, False), ("Res-CSC", "ResCSCNet", 0, True), ("Res-CSC", "ResCSCNet", 0, False),
          ("Res-CSC", "ResCSCNet", 1, True), ("Res-CSC", "ResCSCNet", 2, True)]
CLASSES = {"PlainCNN": PlainCNN, "MLCSCNet": MLCSCNet, "ResNetCNN": ResNetCNN, "ResCSCNet": ResCSCNet}
DATA = {"num_samples": 3000, "seed": 42, "val_fraction": 0.2, "val_seed": 0}
NET = {"in_channels": 1, "dim": 1, "width": 16, "n_blocks": 2, "pool_size": 8}
FIT = {"epochs": 300, "batch_size": 64, "patience": 15}
LRS = (2e-3, 5e-3, 1e-2, 2e-2)
SEEDS = (0, 1, 2, 3, 4)


def train(data, cls_name: str, n_unfold: int, admissible: bool, lr: float, *, seed: int):
    """One run: the model (best validation epoch), its FitResult and the number of dictionary rescalings."""
    torch.manual_seed(seed)
    model = CLASSES[cls_name](with_unfolding(NetworkConfig(**NET), n_unfold))
    rescalings = [0]

    def keep_admissible(net):
        rescalings[0] += rescale_to_step_bound(net)

    result = fit(model, data.x_train, data.y_train, lr=lr, seed=seed, validation=(data.x_val, data.y_val),
                 after_step=keep_admissible if admissible else None, **FIT)
    return model, result, rescalings[0]


def res_csc_terms(model, x) -> list:
    """Per block: ||extra|| / ||skip|| and ||extra|| / ||branch|| on the signals x (float64)."""
    net = model.double().eval()
    ratios = []
    with torch.no_grad():
        code = torch.relu(net.stem(x.double()))
        for block in net.stages:
            t = block.terms(code)
            ratios.append([float(t.extra.norm() / t.skip.norm()), float(t.extra.norm() / t.branch.norm())])
            code = block(code)
    model.float()
    return ratios


def steps_admissible(model) -> bool:
    stages = [m for m in model.modules() if hasattr(m, "step_bound")]
    return all(m.step <= m.step_bound() * (1 + 1e-9) for m in stages)


def main() -> None:
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    start = time.process_time()
    data = load_mnist1d(**DATA)
    runs = []
    for name, cls_name, n_unfold, admissible in MODELS:
        lr, scores, first = choose_learning_rate(partial(train, data, cls_name, n_unfold, admissible, seed=SEEDS[0]),
                                                 LRS)
        for seed in SEEDS:
            model, result, rescalings = (first[lr] if seed == SEEDS[0]
                                         else train(data, cls_name, n_unfold, admissible, lr, seed=seed))
            entry = {"name": name, "model": cls_name, "n_unfold": n_unfold, "admissible": admissible, "lr": lr,
                     "seed": seed,
                     "lr_val_scores": {str(k): v for k, v in scores.items()},
                     "val_accuracy": result.best_val_metric, "test_accuracy": evaluate(model, data.x_test, data.y_test),
                     "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                     "stopped_early": result.stopped_early, "rescalings": rescalings,
                     "steps_admissible": steps_admissible(model)}
            if cls_name == "ResCSCNet" and n_unfold == 0:  # the three terms of eq-ch7-res-step
                entry["extra_ratios"] = res_csc_terms(model, data.x_test)
            runs.append(entry)
            print(f"{name:10s} n_unfold={n_unfold} admissible={admissible} lr={lr:g} seed={seed}: "
                  f"val {entry['val_accuracy']:.3f} test {entry['test_accuracy']:.3f} epochs {entry['epochs_run']}",
                  flush=True)
    record = {"data": DATA, "net": NET, "fit": FIT, "lrs": list(LRS), "seeds": list(SEEDS), "runs": runs,
              "provenance": provenance("scripts/ch07_training.py", time.process_time() - start)}
    write_json(OUT, record)
    print("wrote", OUT.relative_to(ROOT), file=sys.stderr)


if __name__ == "__main__":
    main()
