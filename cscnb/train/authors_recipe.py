"""The SDNet authors' published figures and training recipe, as facts to compare our presets with (chapter 14).

Source: the authors' public code repository :cite:p:`sdnet_repository` — the "Pre-trained Models" table
of its README (checkpoint accuracies; no ResNet-18 baseline is stated there), its configuration files
(``experiments/*.yaml``, ``Lib/config/default.py``), ``train.py`` and ``Lib/models``. The runs were made
on one NVIDIA RTX 3090. Nothing here is code from that repository; these are the values it sets.

:data:`PAPER_FIGURES` feeds the targets of :mod:`cscnb.train.reproduction`; :data:`RECIPE` is read by
:func:`cscnb.train.reproduction.recipe_comparison`, which compares every reproduction preset with it at
run time. :data:`REASONS` says why a setting of ours differs where we know it.
"""
from __future__ import annotations

__all__ = ["PAPER_FIGURES", "RECIPE", "REASONS", "IMPLICIT", "AUTHORS_HARDWARE", "RecipeFact", "show"]

AUTHORS_HARDWARE = "one NVIDIA RTX 3090"

#: (model, dataset) -> top-1 test accuracy (fraction) of the authors' released checkpoints
PAPER_FIGURES = {
    ("SDNet-18", "cifar10"): 0.9534, ("SDNet-18-all", "cifar10"): 0.9502,
    ("SDNet-18-all (no shortcut)", "cifar10"): 0.9489,
    ("SDNet-18", "cifar100"): 0.7845, ("SDNet-18-all", "cifar100"): 0.7789,
    ("SDNet-18-all (no shortcut)", "cifar100"): 0.7728,
    ("SDNet-18", "imagenet"): 0.6978, ("SDNet-18-all", "imagenet"): 0.6968,
    ("SDNet-18-all (no shortcut)", "imagenet"): 0.6903,
}


class RecipeFact:
    """One setting of the authors' recipe: what it is, where ours is read, the authors' value.

    ``source`` says where :func:`cscnb.train.reproduction.recipe_comparison` reads our value: ``"config"``
    (the preset's :class:`~cscnb.train.config.TrainConfig` field ``key``), ``"model"`` (the network the
    trainer's factory builds from the preset: its CSC layers and stem) or ``"trainer"`` (what the training
    code does). ``sdnet_only`` facts concern SDNet models only; ``matches(ours, config)`` defaults to equality.
    """

    def __init__(self, item: str, key: str, value, *, source: str = "config", sdnet_only: bool = False,
                 matches=None, authors_text: str | None = None):
        self.item, self.key, self.value, self.source, self.sdnet_only = item, key, value, source, sdnet_only
        self._matches, self.authors_text = matches, authors_text

    def applies(self, config) -> bool:
        return not self.sdnet_only or str(config.model).startswith("sdnet")

    def matches(self, ours, config) -> bool:
        if self._matches:
            return self._matches(ours, config)
        if isinstance(ours, float) and isinstance(self.value, float):
            return abs(ours - self.value) <= 1e-12 * max(1.0, abs(self.value))
        return ours == self.value

    @property
    def authors(self) -> str:
        return self.authors_text or show(self.value)


def show(value) -> str:
    """A setting as the comparison table prints it."""
    return f"{value:.4g}" if isinstance(value, float) else repr(value)


_CSC_FACTS = [RecipeFact(item, key, value, source="model", sdnet_only=True, authors_text=text)
              for item, key, value, text in (
                  ("CSC λ", "csc_lam", 0.1, None), ("CSC μ (elastic-net weight)", "csc_mu", 0.0, None),
                  ("CSC non-negative codes", "csc_nonneg", True, None), ("CSC iterations", "csc_n_iter", 2, None),
                  ("atom normalization", "csc_atom_norm", "project",
                   "'project' (unit norm in place, before each forward pass)"),
                  ("power iterations per step-size refresh", "csc_power_iters", 50, "50 (at most)"),
                  ("power-iteration stopping rule", "csc_power_tol", "squared change <= 1e-05, early exit",
                   "1e-05 on the squared change of the estimate; stops early"),
                  ("synthesis Az", "csc_synthesis", "conv_transpose2d", "conv_transpose2d (transposed convolution)"),
                  ("step size factor (η = factor / L)", "csc_step_factor", 0.9, None),
                  ("ReLU after the stem's BatchNorm", "stem_relu", "off", "'off' (commented out)"))]

#: what the training code does (``"trainer"``) or sets (config fields), for every dataset
_TRAINER_FACTS = [
    RecipeFact("incomplete last batch of an epoch", "drop_last", "kept", source="trainer",
               authors_text="'kept' (the data loader's default)"),
    RecipeFact("channels_last memory format", "channels_last", False, authors_text="False (not set)"),
    RecipeFact("cudnn.benchmark", "cudnn_benchmark", False, authors_text="False (not set)"),
]

_CIFAR_FACTS = [
    RecipeFact("learning rate", "lr", 0.1), RecipeFact("SGD momentum", "momentum", 0.9),
    RecipeFact("Nesterov momentum", "nesterov", True), RecipeFact("weight decay", "weight_decay", 5e-4),
    RecipeFact("batch (global)", "batch_size", 128), RecipeFact("epochs", "epochs", 220),
    RecipeFact("learning-rate schedule", "schedule", "cosine"),
    RecipeFact("schedule stepped every", "schedule_unit", "iteration"),
    RecipeFact("training augmentation", "augment", True,
               authors_text="True: RandomCrop(32, padding 4) + horizontal flip"),
    RecipeFact("input normalization", "normalize", "recipe",
               authors_text="'recipe': mean (0.4914, 0.4822, 0.4465), std (0.2023, 0.1994, 0.2010)"),
    RecipeFact("autocast", "amp", "off", authors_text="'off' (float32)"),
    RecipeFact("stem geometry", "stem", "CSC 3×3, stride 1, padding 1 → BatchNorm", source="model", sdnet_only=True),
] + _TRAINER_FACTS + _CSC_FACTS

_IMAGENET_FACTS = [
    RecipeFact("learning rate", "lr", 0.1), RecipeFact("SGD momentum", "momentum", 0.9),
    RecipeFact("Nesterov momentum", "nesterov", False), RecipeFact("weight decay", "weight_decay", 1e-4),
    RecipeFact("batch (global)", "batch_size", 512,
               matches=lambda v, c: v == (256 if str(c.model).endswith("_all") else 512),
               authors_text="512 (256 for SDNet-18-all)"),
    RecipeFact("epochs", "epochs", 100), RecipeFact("learning-rate schedule", "schedule", "step"),
    RecipeFact("step milestones (epochs)", "milestones", "30,60,90"),
    RecipeFact("schedule stepped every", "schedule_unit", "epoch"),
    RecipeFact("training crop", "training crop", "RandomResizedCrop(224) + flip", source="trainer"),
    RecipeFact("evaluation crop size", "image_size", 224, authors_text="224 (after Resize(256))"),
    RecipeFact("input normalization", "normalize", "recipe", authors_text="'recipe': the ImageNet mean and std"),
    RecipeFact("autocast", "amp", "off", authors_text="'off' (float32)"),
    RecipeFact("stem geometry", "stem", "CSC 7×7, stride 2, padding 3 → BatchNorm → MaxPool(3, 2, 1)",
               source="model", sdnet_only=True),
] + _TRAINER_FACTS + _CSC_FACTS

#: dataset -> the facts of the authors' recipe for it
RECIPE = {"cifar10": _CIFAR_FACTS, "cifar100": _CIFAR_FACTS, "imagenet": _IMAGENET_FACTS}

#: what a trainer without one of these settings does (read where the TrainConfig field is missing)
IMPLICIT = {"schedule_unit": "epoch", "normalize": "computed"}

#: field (or the name of a behaviour without a field) -> why ours differs, where we know it
REASONS = {
    "amp": "bf16 autocast is our speed choice for GPUs; the authors train in float32",
    "csc_atom_norm": "W/‖W‖ is reparametrized in the forward pass (the gradient is projected and weight decay "
                     "shrinks ‖W‖); the authors project W in place before each forward pass",
    "csc_power_iters": "fewer warm-started power iterations per refresh than the authors' 50",
    "csc_power_tol": "the tolerance is relative, on the Rayleigh quotient, and tested on the device: all iterations "
                     "run (no host sync), and once it is met the estimate stops changing; no early exit",
    "drop_last": "the incomplete last batch of an epoch is dropped (every step has the full global batch)",
    "channels_last": "speed on GPUs; results differ only by rounding",
    "cudnn_benchmark": "speed: cuDNN picks its convolution algorithms by timing, so results differ by rounding "
                       "and are not bitwise reproducible",
    "csc_step_factor": "a smaller step (a larger margin on the estimate of L)",
    "schedule_unit": "the learning rate is stepped once per epoch (cosine over epochs), not every iteration",
    "normalize": "inputs are normalized with per-channel statistics computed from the training images instead "
                 "of the authors' constants (for CIFAR the std is ≈ 0.247, 0.243, 0.262, not 0.2023, 0.1994, "
                 "0.2010); the CSC problem is not scale-invariant, so λ = 0.1 acts like ≈ 0.12 on their scale",
    "stem_relu": "the stem applies a ReLU after its BatchNorm (the authors' is commented out)",
    "training crop": "training crops are random 224×224 windows of the central 256×256 square of each image, "
                     "without the scale and aspect-ratio augmentation of RandomResizedCrop",
}
