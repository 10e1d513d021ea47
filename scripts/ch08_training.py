"""The training sweeps of chapter 8 (MSD-CSC), cached in ``chapters/data/ch08_training.json``.

Run from the repository root (about half an hour of one CPU core)::

    .venv/bin/python scripts/ch08_training.py

Two sweeps, each with a stratified validation split carved from the training samples, training to
convergence of the validation accuracy (``cscnb.train.fit`` with early stopping, weights of the best
validation epoch), the learning rate of each configuration chosen on the validation accuracy of seed 0 from
``LRS``, extended past an edge optimum until it is interior, then ``SEEDS`` runs that measure test accuracy
(test labels are used only there):

* ``digits``: DenseNet and MSD-CSC with 0, 1 and 2 unfolded steps on the scikit-learn digits (2-D, dense
  blocks at rates 1 and 2);
* ``rates``: MSD-CSC (one step per layer) on MNIST-1D with three dense layers per block at the dilation
  schedules ``SCHEDULES``: what mixed rates buy in accuracy.

The MSD-CSC networks keep every step admissible, :math:`c \\le 1/(1 + \\|W_\\ell\\|_2^2)`, by rescaling
:math:`W_\\ell` after every optimizer step (``cscnb.nn.rescale_to_step_bound``; for the 8×8 digits with
the operator-norm bound for 8×8 codes). The chapter reads the JSON and re-runs one entry.
"""
from __future__ import annotations

import sys
import time
from functools import partial

import torch
from sweep_common import ROOT, choose_learning_rate, provenance, write_json

from cscnb.data import load_digits, load_mnist1d
from cscnb.models.classifiers import DenseNetCNN, MSDCSCNet, NetworkConfig
from cscnb.nn import rescale_to_step_bound
from cscnb.train import evaluate, fit

OUT = ROOT / "chapters" / "data" / "ch08_training.json"
CLASSES = {"DenseNetCNN": DenseNetCNN, "MSDCSCNet": MSDCSCNet}
FIT = {"epochs": 300, "batch_size": 64, "patience": 15}
LRS = (1e-3, 3e-3, 1e-2, 3e-2)
SEEDS = (0, 1, 2, 3, 4)
DIGITS = {"data": {"seed": 0, "val_fraction": 0.2},
          "net": {"in_channels": 1, "dim": 2, "width": 16, "n_blocks": 2, "growth": 8, "dilations": [1, 2],
                  "pool_size": 4},
          "signal_size": [8, 8],
          "models": [["DenseNet", "DenseNetCNN", 0], ["MSD-CSC", "MSDCSCNet", 0], ["MSD-CSC", "MSDCSCNet", 1],
                     ["MSD-CSC", "MSDCSCNet", 2]]}
RATES = {"data": {"num_samples": 3000, "seed": 42, "val_fraction": 0.2, "val_seed": 0},
         "net": {"in_channels": 1, "dim": 1, "width": 16, "n_blocks": 2, "growth": 8, "pool_size": 8},
         "signal_size": None,
         "schedules": [[1, 1, 1], [2, 2, 2], [1, 2, 4]]}


def train(data, cls_name: str, net: dict, lr: float, *, seed: int, signal_size):
    """One run: the model (best validation epoch), its FitResult and the number of dictionary rescalings."""
    torch.manual_seed(seed)
    net = dict(net, dilations=tuple(net["dilations"]))
    model = CLASSES[cls_name](NetworkConfig(**net))
    rescalings = [0]

    def keep_admissible(module):
        rescalings[0] += rescale_to_step_bound(module, None if signal_size is None else tuple(signal_size))

    result = fit(model, data.x_train, data.y_train, lr=lr, seed=seed, validation=(data.x_val, data.y_val),
                 after_step=keep_admissible if cls_name == "MSDCSCNet" else None, **FIT)
    return model, result, rescalings[0]


def sweep(data, configs, signal_size) -> list:
    """configs: [(name, class name, net settings, extra fields)]; lr chosen per config on seed 0's validation."""
    runs = []
    for name, cls_name, net, extra in configs:
        lr, scores, first = choose_learning_rate(partial(train, data, cls_name, net, seed=SEEDS[0],
                                                         signal_size=signal_size), LRS)
        for seed in SEEDS:
            model, result, rescalings = (first[lr] if seed == SEEDS[0]
                                         else train(data, cls_name, net, lr, seed=seed, signal_size=signal_size))
            entry = {"name": name, "model": cls_name, **extra, "lr": lr, "seed": seed,
                     "lr_val_scores": {str(k): v for k, v in scores.items()},
                     "val_accuracy": result.best_val_metric, "test_accuracy": evaluate(model, data.x_test, data.y_test),
                     "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                     "stopped_early": result.stopped_early, "rescalings": rescalings}
            runs.append(entry)
            print(f"{name:9s} {extra} lr={lr:g} seed={seed}: val {entry['val_accuracy']:.3f} "
                  f"test {entry['test_accuracy']:.3f} epochs {entry['epochs_run']}", flush=True)
    return runs


def main() -> None:
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    start = time.process_time()
    digits = load_digits(**DIGITS["data"])
    configs = [(name, cls_name, dict(DIGITS["net"], n_unfold=n_unfold), {"n_unfold": n_unfold})
               for name, cls_name, n_unfold in DIGITS["models"]]
    digits_runs = sweep(digits, configs, DIGITS["signal_size"])
    mnist = load_mnist1d(**RATES["data"])
    configs = [("MSD-CSC", "MSDCSCNet", dict(RATES["net"], dilations=rates), {"dilations": rates})
               for rates in RATES["schedules"]]
    rate_runs = sweep(mnist, configs, RATES["signal_size"])
    record = {"fit": FIT, "lrs": list(LRS), "seeds": list(SEEDS),
              "digits": dict(DIGITS, runs=digits_runs), "rates": dict(RATES, runs=rate_runs),
              "provenance": provenance("scripts/ch08_training.py", time.process_time() - start)}
    write_json(OUT, record)
    print("wrote", OUT.relative_to(ROOT), file=sys.stderr)


if __name__ == "__main__":
    main()
