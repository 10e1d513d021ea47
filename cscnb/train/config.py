"""Training configurations and presets for ``python -m cscnb.train``.

A :class:`TrainConfig` holds every setting of a run; a preset is a named set of overrides of its
defaults, and every field can be overridden again on the command line (``--key value``). The GPU
presets follow the SDNet recipe of Dai et al. 2022 as published in the authors' configuration files
(``experiments/cifar10.yaml``, ``cifar100.yaml``, ``ImageNet.yaml`` of github.com/Delay-Xili/SDNet):
CIFAR — SGD, lr 0.1, momentum 0.9, Nesterov, weight decay 5e-4, batch 128, cosine schedule, 220
epochs, λ = 0.1, 2 FISTA iterations; ImageNet — the same except weight decay 1e-4, no Nesterov,
batch 512, step schedule (÷10 at epochs 30, 60, 90), 100 epochs. The CPU presets are our choice.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

from ..core.validation import check_choice, nonneg_int, positive_int, positive_number

__all__ = ["TrainConfig", "PRESETS", "preset_config", "build_parser", "config_from_argv"]

DATASETS = ("digits", "mnist1d", "cifar10", "cifar100", "imagenet")
MODELS = ("plain-cnn", "mlcsc-net", "resnet18", "resnet34", "sdnet18", "sdnet34", "sdnet18_all", "sdnet34_all")


@dataclass
class TrainConfig:
    """Every setting of one training run; ``python -m cscnb.train --help`` lists them with defaults."""
    preset: str = "smoke"            # the preset these values started from (recorded in config.json)
    dataset: str = "digits"          # digits | mnist1d | cifar10 | cifar100 | imagenet
    data_dir: str = ""               # folder with the CIFAR binary files or ImageNet train/ and val/ folders
    model: str = "plain-cnn"         # plain-cnn | mlcsc-net (chapters 7-8 nets) | resnet18/34 | sdnet18/34[_all]
    width: int = 8                   # channels of the first stage (64 for the ResNet/SDNet of the papers)
    epochs: int = 2                  # passes over the training set
    batch_size: int = 64             # GLOBAL batch: split evenly over DDP processes
    lr: float = 0.05                 # initial SGD learning rate
    momentum: float = 0.9            # SGD momentum
    nesterov: bool = True            # Nesterov momentum
    weight_decay: float = 5e-4       # L2 weight decay (SGD's, coupled)
    schedule: str = "cosine"         # cosine | step | constant (per-epoch learning-rate schedule)
    milestones: str = "30,60,90"     # epochs where the 'step' schedule divides the rate by 10
    augment: bool = False            # random crop (padding 4) + horizontal flip, on the device
    csc_lam: float = 0.1             # λ of the CSC layers (SDNet models)
    csc_n_iter: int = 2              # FISTA iterations of the CSC layers (SDNet models)
    image_size: int = 224            # ImageNet crop size
    num_samples: int = 5000          # MNIST-1D samples generated
    seed: int = 0                    # seeds torch, numpy, python and the per-epoch shuffles
    device: str = "auto"             # auto (cuda > mps > cpu) | cpu | cuda | cuda:N | mps
    dtype: str = "float32"           # float32 | float64 (parameters and inputs)
    amp: str = "off"                 # off | bf16 | fp16 autocast (CUDA only)
    compile: bool = False            # wrap the model in torch.compile
    threads: int = 0                 # CPU intra-op threads (0: torch's default); tiny CPU models run best on 1
    workers: int = 4                 # DataLoader workers for ImageNet (the tensor datasets need none)
    out_dir: str = "results"         # runs are written to OUT_DIR/RUN_NAME
    run_name: str = ""               # default: PRESET-YYYYmmdd-HHMMSS
    resume: bool = False             # continue OUT_DIR/RUN_NAME from its checkpoint
    progress: bool = True            # tqdm bar (only on a terminal)
    eval_every: int = 1              # evaluate on the test set every N epochs (and after the last)

    def __post_init__(self):
        check_choice(self.dataset, "dataset", DATASETS)
        check_choice(self.model, "model", MODELS)
        nonneg_int(self.threads, "threads")
        for name in ("width", "epochs", "batch_size", "csc_n_iter", "image_size", "num_samples", "eval_every"):
            positive_int(getattr(self, name), name)
        positive_number(self.lr, "lr")
        check_choice(self.schedule, "schedule", ("cosine", "step", "constant"))
        check_choice(self.dtype, "dtype", ("float32", "float64"))
        check_choice(self.amp, "amp", ("off", "bf16", "fp16"))
        if self.dataset in ("cifar10", "cifar100", "imagenet") and not self.data_dir:
            raise ValueError(f"dataset {self.dataset!r} needs --data-dir (a local folder; nothing is downloaded)")

    def milestone_epochs(self) -> list:
        return [int(m) for m in self.milestones.split(",") if m.strip()]


_SDNET_CIFAR = dict(model="sdnet18", width=64, epochs=220, batch_size=128, lr=0.1, momentum=0.9, nesterov=True,
                    weight_decay=5e-4, schedule="cosine", augment=True, csc_lam=0.1, csc_n_iter=2, amp="bf16")

PRESETS: dict = {
    # CPU, seconds: a tiny plain CNN on the 8×8 digits (no batch norm, so DDP equals one process exactly)
    "smoke": dict(threads=1, dataset="digits", model="plain-cnn", width=8, epochs=2, batch_size=64, lr=0.1),
    "digits-cnn": dict(threads=1, dataset="digits", model="resnet18", width=8, epochs=8, batch_size=64, lr=0.05),
    "digits-sdnet": dict(threads=1, dataset="digits", model="sdnet18", width=8, epochs=8, batch_size=64, lr=0.05),
    "mnist1d-cnn": dict(threads=1, dataset="mnist1d", model="plain-cnn", width=16, epochs=10, batch_size=128, lr=0.05),
    # GPU, hours: the SDNet recipe (see the module docstring for the source)
    "sdnet18-cifar10": dict(dataset="cifar10", **_SDNET_CIFAR),
    "resnet18-cifar10": dict(dataset="cifar10", **{**_SDNET_CIFAR, "model": "resnet18"}),
    "sdnet18-cifar100": dict(dataset="cifar100", **_SDNET_CIFAR),
    "sdnet18-imagenet": dict(dataset="imagenet", model="sdnet18", width=64, epochs=100, batch_size=512, lr=0.1,
                             momentum=0.9, nesterov=False, weight_decay=1e-4, schedule="step",
                             milestones="30,60,90", augment=True, csc_lam=0.1, csc_n_iter=2, amp="bf16"),
}


def preset_config(name: str, **overrides) -> TrainConfig:
    """The :class:`TrainConfig` of preset ``name`` with ``overrides`` applied."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    return TrainConfig(**{**PRESETS[name], "preset": name, **overrides})


def _parse_bool(text: str) -> bool:
    lowered = str(text).lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _field_comments() -> dict:
    """The ``# comment`` after each TrainConfig field, reused as its --help text (one source of truth)."""
    import inspect
    import re
    comments = {}
    for line in inspect.getsource(TrainConfig).splitlines():
        match = re.match(r"\s+(\w+): \w+ = .*?#\s*(.*)$", line)
        if match:
            comments[match.group(1)] = match.group(2).replace("%", "%%")
    return comments


def build_parser() -> argparse.ArgumentParser:
    """``--preset NAME`` plus one ``--key value`` option per :class:`TrainConfig` field."""
    parser = argparse.ArgumentParser(
        prog="python -m cscnb.train",
        description="Train a cscnb model. Field defaults below are TrainConfig's; a preset overrides some of them, "
                    "and every --key value given here overrides the preset.")
    parser.add_argument("--preset", default="smoke", choices=sorted(PRESETS), help="starting point")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (same as --progress false)")
    comments = _field_comments()
    for f in dataclasses.fields(TrainConfig):
        if f.name == "preset":
            continue
        # f.type is the annotation string (postponed evaluation): "bool", "int", "float" or "str"
        kind = {"bool": _parse_bool, "int": int, "float": float}.get(f.type, str)
        # default=None: an option not given keeps the preset's value instead of TrainConfig's default
        # booleans: a bare `--resume` means true; `--nesterov false` sets false
        flag = dict(nargs="?", const=True) if kind is _parse_bool else {}
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kind, default=None,
                            help=f"{comments.get(f.name, '')} (default: {f.default!r})", **flag)
    return parser


def config_from_argv(argv=None) -> TrainConfig:
    """Parse a command line into a :class:`TrainConfig` (preset, then the explicit overrides)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                 if f.name != "preset" and getattr(args, f.name) is not None}
    if args.no_progress:
        overrides["progress"] = False
    try:
        return preset_config(args.preset, **overrides)
    except ValueError as err:  # a bad combination of values: a usage error, not a traceback
        parser.error(str(err))

