"""Training configurations for ``python -m cscnb.train``: :class:`TrainConfig` and the command-line parser.

A :class:`TrainConfig` holds every setting of a run and checks all of them when it is built, so a
bad value is a ``ValueError``/``TypeError`` naming the field before anything is written. A preset
(:mod:`cscnb.train.presets`) is a named set of overrides of its defaults, and every field can be
overridden again on the command line (``--key value``).
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

from ..core.validation import check_bool, check_choice, check_number, nonneg_int, positive_int, positive_number
from .presets import PRESET_NOTES, PRESETS

__all__ = ["TrainConfig", "PRESETS", "PRESET_NOTES", "preset_config", "build_parser", "config_from_argv",
           "NOT_RECIPE_FIELDS", "config_differences"]

DATASETS = ("digits", "mnist1d", "cifar10", "cifar100", "imagenet")
MODELS = ("plain-cnn", "mlcsc-net", "resnet18", "resnet34", "sdnet18", "sdnet34", "sdnet18_all", "sdnet34_all")
#: fields that change where, how fast or how verbosely a run goes, not what it computes: a resumed run
#: may change them (every other field must equal the run's config.json)
NOT_RECIPE_FIELDS = frozenset({"device", "threads", "workers", "data_dir", "out_dir", "run_name", "resume",
                               "progress", "log_every", "tensorboard"})


@dataclass
class TrainConfig:
    """Every setting of one training run; ``python -m cscnb.train --help`` lists them with defaults."""
    preset: str = "smoke"            # the preset these values started from (recorded in config.json)
    dataset: str = "digits"          # digits | mnist1d | cifar10 | cifar100 | imagenet
    data_dir: str = ""               # folder with the CIFAR binary files or ImageNet train/ and val/ folders
    model: str = "plain-cnn"         # plain-cnn | mlcsc-net (chapters 7-8 nets) | resnet18/34 | sdnet18/34[_all]
    width: int = 8                   # channels of the first stage (64 for the ResNet/SDNet of the papers)
    stem_relu: str = "auto"          # auto (ResNet: ReLU after the stem's batch norm; SDNet: none) | on | off
    epochs: int = 2                  # passes over the training set
    batch_size: int = 64             # GLOBAL batch: split evenly over DDP processes
    lr: float = 0.05                 # initial SGD learning rate
    momentum: float = 0.9            # SGD momentum, in [0, 1)
    nesterov: bool = True            # Nesterov momentum (only where momentum > 0)
    weight_decay: float = 5e-4       # L2 weight decay (SGD's, coupled), >= 0
    schedule: str = "cosine"         # cosine (to 0 at the end) | step (÷10 at each milestone) | constant
    schedule_unit: str = "epoch"     # iteration | epoch: the schedule's clock (cosine over all iterations or epochs)
    milestones: str = "30,60,90"     # epochs where the 'step' schedule divides the rate by 10 (increasing ints)
    warmup_epochs: float = 0.0       # linear learning-rate warm-up over the first N epochs (0: none)
    label_smoothing: float = 0.0     # label smoothing of the cross-entropy, in [0, 1)
    augment: bool = False            # random crop (padding 4) + horizontal flip, on the device
    normalize: str = "computed"      # computed (per-channel training-set statistics) | recipe (the authors' constants)
    val_fraction: float = 0.0        # fraction of each class held out from training as a validation split
    csc_lam: float = 0.1             # λ of the CSC layers (SDNet models)
    csc_n_iter: int = 2              # proximal-gradient iterations of the CSC layers
    csc_mu: float = 0.0              # μ (elastic-net weight) of the CSC layers, >= 0
    csc_nonneg: bool = True          # non-negative codes in the CSC layers
    csc_backward: str = "unroll"     # unroll | implicit: how the CSC layers are differentiated
    csc_atom_norm: str = "reparametrize"  # reparametrize (W/|W| in the graph) | project (authors: in place, no grad)
    csc_power_iters: int = 2         # warm-started power iterations per step-size refresh (authors: 50)
    csc_power_tol: float = 0.0       # relative tolerance freezing the estimate (on the device; authors: 1e-5)
    csc_step_factor: float = 1 / 1.1  # CSC step size = factor / L (authors: 0.9)
    csc_synthesis: str = "conv_transpose2d"  # conv_transpose2d | conv2d | auto (timed: machine-dependent rounding)
    image_size: int = 224            # ImageNet crop size
    num_samples: int = 5000          # MNIST-1D samples generated
    seed: int = 0                    # seeds torch, numpy, python and the per-epoch shuffles
    device: str = "auto"             # auto (cuda > mps > cpu) | cpu | cuda | cuda:N | mps
    dtype: str = "float32"           # float32 | float64 (parameters and inputs)
    amp: str = "off"                 # off | bf16 (CUDA or CPU) | fp16 (CUDA, with a gradient scaler) autocast
    compile: bool = False            # wrap the model in torch.compile
    channels_last: bool = False      # channels-last memory format for images and weights (faster convolutions on GPUs)
    cudnn_benchmark: bool = False    # let cuDNN time its convolution algorithms (faster; not bitwise reproducible)
    deterministic: bool = False      # torch.use_deterministic_algorithms(True) (bitwise-reproducible runs)
    sync_bn: bool = True             # under DDP: batch norm over the global batch (as one process), not each share
    threads: int = 0                 # CPU intra-op threads (0: torch's default); tiny CPU models run best on 1
    workers: int = 4                 # DataLoader workers per process for ImageNet (the tensor datasets need none)
    out_dir: str = "results"         # runs are written to OUT_DIR/RUN_NAME
    run_name: str = ""               # default: PRESET-YYYYmmdd-HHMMSS
    resume: bool = False             # continue OUT_DIR/RUN_NAME from its checkpoint
    progress: bool = True            # tqdm bar (only on a terminal)
    log_every: int = 50              # steps between reads of the loss (steps.jsonl, progress bar, finiteness check)
    tensorboard: bool = False        # also write TensorBoard scalars to RUN/tensorboard/
    eval_every: int = 1              # evaluate on the test set every N epochs (and after the last)

    def __post_init__(self):
        check_choice(self.dataset, "dataset", DATASETS)
        check_choice(self.model, "model", MODELS)
        for name in ("width", "epochs", "batch_size", "csc_n_iter", "csc_power_iters", "image_size", "num_samples",
                     "eval_every", "log_every"):
            positive_int(getattr(self, name), name)
        for name in ("threads", "workers", "seed"):
            nonneg_int(getattr(self, name), name)
        for name in ("nesterov", "augment", "csc_nonneg", "compile", "channels_last", "cudnn_benchmark",
                     "deterministic", "sync_bn", "resume", "progress", "tensorboard"):
            check_bool(getattr(self, name), name)
        positive_number(self.lr, "lr")
        check_number(self.momentum, "momentum", minimum=0, maximum=1, open_maximum=True)
        check_number(self.weight_decay, "weight_decay", minimum=0)
        check_number(self.warmup_epochs, "warmup_epochs", minimum=0, maximum=self.epochs)
        check_number(self.label_smoothing, "label_smoothing", minimum=0, maximum=1, open_maximum=True)
        check_number(self.val_fraction, "val_fraction", minimum=0, maximum=1, open_maximum=True)
        positive_number(self.csc_lam, "csc_lam")
        check_number(self.csc_mu, "csc_mu", minimum=0)
        check_number(self.csc_power_tol, "csc_power_tol", minimum=0)
        check_number(self.csc_step_factor, "csc_step_factor", minimum=0, maximum=1, open_minimum=True)
        for name, choices in (("stem_relu", ("auto", "on", "off")), ("schedule", ("cosine", "step", "constant")),
                              ("schedule_unit", ("iteration", "epoch")), ("normalize", ("computed", "recipe")),
                              ("csc_backward", ("unroll", "implicit")),
                              ("csc_atom_norm", ("reparametrize", "project")),
                              ("csc_synthesis", ("conv_transpose2d", "conv2d", "auto")),
                              ("dtype", ("float32", "float64")), ("amp", ("off", "bf16", "fp16"))):
            check_choice(getattr(self, name), name, choices)
        self.milestone_epochs()  # parses and checks --milestones
        if self.dataset in ("cifar10", "cifar100", "imagenet") and not self.data_dir:
            raise ValueError(f"dataset {self.dataset!r} needs --data-dir (a local folder; nothing is downloaded)")
        if self.normalize == "recipe" and self.dataset not in ("cifar10", "cifar100", "imagenet"):
            raise ValueError(f"normalize='recipe' exists for cifar10, cifar100 and imagenet, not {self.dataset!r}")
        if self.stem_relu != "auto" and self.model in ("plain-cnn", "mlcsc-net"):
            raise ValueError(f"stem_relu applies to the ResNet/SDNet models, not {self.model!r} (leave it 'auto')")
        if self.channels_last and self.dataset == "mnist1d":
            raise ValueError("channels_last needs images; dataset 'mnist1d' is 1-D")
        if self.amp != "off" and self.dtype == "float64":
            raise ValueError(f"amp={self.amp!r} autocasts to half precision; it cannot be combined with dtype float64")
        if self.val_fraction and self.dataset == "imagenet":
            raise ValueError("val_fraction: the ImageNet folders have no validation carve; use their val/ split")

    def milestone_epochs(self) -> list:
        """``--milestones`` as a list of strictly increasing positive ints (``ValueError`` naming the field)."""
        if not isinstance(self.milestones, str):
            raise TypeError("milestones must be a comma-separated string of epochs, got "
                            f"{type(self.milestones).__name__}")
        parts = [m.strip() for m in self.milestones.split(",") if m.strip()]
        if not all(p.isdigit() for p in parts):
            raise ValueError(f"milestones must be comma-separated positive integers (epochs), got {self.milestones!r}")
        epochs = [int(p) for p in parts]
        if any(e < 1 for e in epochs) or epochs != sorted(set(epochs)):
            raise ValueError(f"milestones must be strictly increasing positive epochs, got {self.milestones!r}")
        return epochs

    def check_world(self, world: int) -> None:
        """Checks that need the number of processes: the global batch must split evenly over them."""
        if self.batch_size % world:
            raise ValueError(f"batch_size {self.batch_size} must be divisible by the number of processes {world}")


def config_differences(saved: dict, config: TrainConfig) -> list:
    """The recipe fields in which ``config`` differs from a run's saved ``config.json``, as ``"field: saved -> new"``.

    Fields of :data:`NOT_RECIPE_FIELDS` may differ. A field missing from ``saved`` (written by an older
    version) counts as its default value.
    """
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    changed = []
    for name, value in dataclasses.asdict(config).items():
        if name in NOT_RECIPE_FIELDS:
            continue
        before = saved.get(name, defaults[name])
        if before != value:  # JSON round-trips floats exactly
            changed.append(f"{name}: {before!r} -> {value!r}")
    return changed


def preset_config(name: str, **overrides) -> TrainConfig:
    """The :class:`TrainConfig` of preset ``name`` with ``overrides`` applied."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise TypeError(f"unknown TrainConfig fields {sorted(unknown)}")
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
                    "and every --key value given here overrides the preset. Exit status: 0 done, 1 the run failed "
                    "(non-finite loss; see failed.json in the run folder), 2 a usage error (nothing written).")
    parser.add_argument("--preset", default="smoke", choices=sorted(PRESETS), help="starting point")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (same as --progress false)")
    parser.add_argument("--describe", action="store_true",
                        help="print the preset's notes (recipe and differences) and the resulting config, then exit")
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


def config_from_argv(argv=None, *, with_flags: bool = False):
    """Parse a command line into a :class:`TrainConfig` (preset, then the explicit overrides).

    Any bad value or combination is a usage error (exit status 2) before anything is written. With
    ``with_flags=True`` returns ``(config, {"describe": bool})``.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                 if f.name != "preset" and getattr(args, f.name) is not None}
    if args.no_progress:
        overrides["progress"] = False
    if args.describe and PRESETS[args.preset].get("dataset") in ("cifar10", "cifar100", "imagenet"):
        overrides.setdefault("data_dir", "DATA_DIR")  # --describe reads no data
    try:
        config = preset_config(args.preset, **overrides)
    except (ValueError, TypeError) as err:  # a bad combination of values: a usage error, not a traceback
        parser.error(str(err))
    return (config, {"describe": args.describe}) if with_flags else config
