"""Training-step time of the reproduction models against the CSC layers' power iterations per step.

Prints one JSON object. Never run in CI.

    .venv/bin/python benchmarks/bench_power_iters.py [--width 16] [--batch 32] [--steps 4] [--threads 1]
        [--device cpu] [--power-iters 2 50]

The SDNet presets refresh every CSC layer's step size before each training step with the authors'
settings, at most 50 warm power iterations and tolerance 1e-5. Our refresh runs on the device without a
host sync, so it cannot leave the loop early: all ``csc_power_iters`` iterations run (the vector stops
changing once the tolerance is met). This script measures what that costs: the median time of a plain
SGD step (forward, backward, update; the first step is a warm-up and not timed) of ResNet-18, SDNet-18
and SDNet-18-all on random CIFAR-shaped data, for each ``--power-iters`` value, everything else as in the
``sdnet18-cifar10`` preset.
"""
from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F
from _provenance import provenance

from cscnb.models import resnet
from cscnb.models.factory import csc_layer_kwargs
from cscnb.profiling.timers import interleaved_medians
from cscnb.train.config import preset_config


def training_step(model, x, y):
    """One plain SGD step (forward, backward, update) of ``model`` as a zero-argument callable."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--power-iters", type=int, nargs="+", default=[2, 50])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, generator=generator).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=generator).to(device)
    torch.manual_seed(0)
    models = {("resnet18", None): resnet.resnet18(width=args.width, num_classes=10)}
    for name in ("sdnet18", "sdnet18_all"):
        for iters in args.power_iters:
            config = preset_config("sdnet18-cifar10", data_dir="-", model=name, width=args.width, csc_power_iters=iters)
            models[name, iters] = getattr(resnet, name)(width=args.width, num_classes=10,
                                                        csc_options=csc_layer_kwargs(config)[0])
    # the package's timing method (chapter 12): a warm-up each, then interleaved rounds, so load hits all alike
    medians = interleaved_medians({key: training_step(model.to(device), x, y) for key, model in models.items()},
                                  repeats=args.steps, device=device)
    results = [{"model": name, "power_iters": iters, "ms_per_step": 1000 * seconds}
               for (name, iters), seconds in medians.items()]
    report = {"benchmark": "bench_power_iters", "settings": vars(args), "results": results,
              "provenance": provenance(args.threads)}
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
