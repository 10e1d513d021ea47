r"""Robustness of a trained run at paper scale: test-time λ sweeps under noise, corruptions and attacks.

``python -m cscnb.robustness RUN_DIR ...`` (:mod:`cscnb.robustness.cli`) loads a run folder written by
``python -m cscnb.train`` (its ``config.json`` and ``checkpoint.pt``), rebuilds the model with the
trainer's own factory and data code, and reports its accuracy

* on the SDNet authors' synthetic noises (:mod:`cscnb.robustness.noises`), generated from the clean
  test images in :math:`[0, 1]` and clipped **before** the normalization, as the authors do;
* on CIFAR-10-C (:func:`cscnb.data.cifar10c.load_cifar10c`, the official ``.npy`` files);
* under FGSM and PGD (:mod:`cscnb.robustness.attacks`) in pixel space, box :math:`[0, 1]`, each attack
  computed against the model at the λ being evaluated (white box);

for every test-time λ of a grid (default the authors' 0.1, …, 1.4), changing the stem CSC layer's λ
(the authors' choice) or every CSC layer's (``layers="all"``), and beside it with SDNet's per-input λ
(:mod:`cscnb.robustness.adaptive`): lines fitted on a calibration part of the test set (a seeded
``calibration_fraction`` of it, never used for the reported accuracies), one per noise and one pooled
over the four noises (used for CIFAR-10-C and the attacks, whose noise type is unknown to the rule).
Adversarial inputs for the adaptive rule are computed at the trained λ (the attacker does not see the
rule). Everything is written to one JSON file with provenance (:func:`write_report`).

Pixels: uint8 data (CIFAR) are divided by 255; float data (the standardized digits) are mapped
affinely from the training images' range (digits: 0 … 16) to :math:`[0, 1]`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from ..core.validation import check_choice, check_number, nonneg_int, positive_int
from .adaptive import adaptive_logits, fit_lam_line, forward_with_stem_error, stem_layer
from .attacks import fgsm, pgd
from .noises import SDNET_NOISE_LEVELS, sdnet_noise
from .sweeps import csc_layers, select_lam

__all__ = ["REPORT_FORMAT", "LoadedRun", "PixelSpaceModel", "load_trained_run", "calibration_split",
           "evaluate_run", "write_report", "load_report", "sha256_file"]

REPORT_FORMAT = "cscnb-robustness/1"
_DATASETS = ("digits", "cifar10", "cifar100")


class PixelSpaceModel(nn.Module):
    """``model`` fed with images in :math:`[0, 1]`: maps them to the trainer's pixel units, then normalizes."""

    def __init__(self, model: nn.Module, low: float, high: float, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.model, self.low, self.span = model, float(low), float(high) - float(low)
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("std", std.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = x * self.span + self.low
        return self.model(((pixels - self.mean) / self.std).to(self.mean.dtype))

    def to_unit(self, raw: torch.Tensor) -> torch.Tensor:
        """Trainer pixels (uint8 or standardized floats) to :math:`[0, 1]`, in the model's dtype."""
        return ((raw.to(self.mean.dtype) - self.low) / self.span).clamp(0, 1)


@dataclass
class LoadedRun:
    """A run folder read back for evaluation."""
    path: str
    config: object            # cscnb.train.config.TrainConfig
    model: PixelSpaceModel    # in eval mode, parameters frozen
    x_test: torch.Tensor      # trainer pixels, as the data code holds them
    y_test: torch.Tensor
    checkpoint_sha256: str
    summary: dict | None


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_trained_run(run_dir, *, data_dir: str | None = None, device="cpu") -> LoadedRun:
    """Rebuild the model of ``run_dir`` (``config.json`` + ``checkpoint.pt``) with the trainer's factory.

    ``data_dir`` replaces the run's data folder (a run made on another machine). Raises
    ``FileNotFoundError`` naming a missing file and ``ValueError`` for a config this version cannot read.
    """
    from ..models.factory import build_model
    from ..train.config import TrainConfig
    from ..train.data import build_data
    if not isinstance(run_dir, (str, os.PathLike)):
        raise TypeError(f"run_dir must be a path, got {type(run_dir).__name__}")
    run_dir = os.fspath(run_dir)
    paths = {name: os.path.join(run_dir, name) for name in ("config.json", "checkpoint.pt")}
    for name, path in paths.items():
        if not os.path.isfile(path):
            raise FileNotFoundError(f"run_dir {run_dir!r} has no {name} (a folder written by python -m cscnb.train)")
    with open(paths["config.json"], encoding="utf-8") as handle:
        saved = json.load(handle)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(saved) - known)
    if unknown:
        raise ValueError(f"{paths['config.json']}: fields {unknown} are unknown to this version of TrainConfig")
    saved.update(resume=False, device=str(device), **({"data_dir": os.fspath(data_dir)} if data_dir else {}))
    config = TrainConfig(**saved)
    check_choice(config.dataset, "the run's dataset", _DATASETS)
    device = torch.device(device)
    data = build_data(config, device)
    model = build_model(config, data).to(device)
    state = torch.load(paths["checkpoint.pt"], map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    model.eval().requires_grad_(False)
    if not csc_layers(model):
        raise ValueError(f"the model of {run_dir!r} ({config.model}) has no CSC layer: there is no λ to sweep")
    x_train = data.x_train
    low, high = (0.0, 255.0) if x_train.dtype == torch.uint8 else (float(x_train.min()), float(x_train.max()))
    pixel_model = PixelSpaceModel(model, low, high, data.mean.to(device), data.std.to(device)).eval()
    summary_path = os.path.join(run_dir, "summary.json")
    summary = None
    if os.path.isfile(summary_path):
        with open(summary_path, encoding="utf-8") as handle:
            summary = json.load(handle)
    return LoadedRun(run_dir, config, pixel_model, data.x_test, data.y_test, sha256_file(paths["checkpoint.pt"]),
                     summary)


def calibration_split(n: int, fraction: float, seed: int) -> tuple:
    """``(calibration, evaluation)`` index tensors: a seeded ``fraction`` of ``range(n)`` and the rest, sorted."""
    n, seed = positive_int(n, "n"), nonneg_int(seed, "seed")
    fraction = check_number(fraction, "calibration_fraction", minimum=0, maximum=1, open_maximum=True)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = round(fraction * n)
    return perm[:k].sort().values, perm[k:].sort().values


def _batches(n: int, size: int):
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _accuracy_error(model, x, y, batch_size: int) -> tuple:
    correct, error = 0, 0.0
    with torch.no_grad():
        for part in _batches(len(y), batch_size):
            logits, err = forward_with_stem_error(model, x[part])
            correct += int((logits.argmax(1) == y[part]).sum())
            error += float(err.double().sum())
    return correct / len(y), error / len(y)


def _sweep(model, target, lams, x, y, batch_size) -> tuple:
    """Accuracy and mean stem error at every λ (``target``'s layers changed, restored afterwards)."""
    from ..nn.csc_layer import test_time_lam
    accuracy, error = [], []
    for lam in lams:
        with test_time_lam(target, lam):
            a, e = _accuracy_error(model, x, y, batch_size)
        accuracy.append(a)
        error.append(e)
    return accuracy, error


def _adaptive_accuracy(model, target, line, x, y, batch_size) -> dict:
    correct, chosen = 0, []
    with torch.no_grad():
        for part in _batches(len(y), batch_size):
            logits, lams = adaptive_logits(model, x[part], line, target=target)
            correct += int((logits.argmax(1) == y[part]).sum())
            chosen.append(lams)
    lams = torch.cat(chosen).double()
    return {"accuracy": correct / len(y), "mean_lam": float(lams.mean()), "min_lam": float(lams.min()),
            "max_lam": float(lams.max())}


def _noisy(x01, name, level, seed, noise_index, level_index):
    generator = torch.Generator(device=x01.device).manual_seed(seed * 1_000_003 + 1_009 * noise_index + level_index)
    return sdnet_noise(x01, name, level, generator=generator)


def _attack(model, kind, x, y, eps, settings, batch_size):
    parts = []
    for part in _batches(len(y), batch_size):
        if kind == "fgsm":
            parts.append(fgsm(model, x[part], y[part], eps, norm=settings["norm"], bounds=(0.0, 1.0)))
        else:
            parts.append(pgd(model, x[part], y[part], eps, step_size=settings["pgd_step_factor"] * eps
                             / settings["pgd_steps"], n_steps=settings["pgd_steps"], norm=settings["norm"],
                             bounds=(0.0, 1.0)))
    return torch.cat(parts)


def evaluate_run(run: LoadedRun, *, lams, layers: str = "stem", noises=None, cifar10c_dir=None, corruptions=(),
                 severities=(1, 2, 3, 4, 5), attacks=(), eps=(), norm: str = "linf", pgd_steps: int = 10,
                 pgd_step_factor: float = 2.5, calibration_fraction: float = 0.5, seed: int = 0,
                 limit: int | None = None, batch_size: int = 500) -> dict:
    """The robustness report of ``run`` as a JSON-ready dict (module docstring; ``lams`` the λ grid).

    ``noises``: ``{name: levels}`` (default :data:`~cscnb.robustness.noises.SDNET_NOISE_LEVELS`; ``{}`` for
    none); ``corruptions``/``severities``: CIFAR-10-C conditions read from ``cifar10c_dir``; ``attacks``:
    ``"fgsm"``/``"pgd"`` at every radius of ``eps`` (pixel units, ``norm`` ball); ``limit``: at most this many
    evaluation images (quick runs). The adaptive rule needs noises and ``calibration_fraction > 0``.
    """
    from ..data.cifar10c import load_cifar10c
    lams = [check_number(v, "lams[i]", minimum=0) for v in lams]
    if not lams:
        raise ValueError("lams must hold at least one value")
    layers = check_choice(layers, "layers", ("stem", "all"))
    noises = dict(SDNET_NOISE_LEVELS if noises is None else noises)
    for kind in attacks:
        check_choice(kind, "attacks[i]", ("fgsm", "pgd"))
    settings = {"norm": check_choice(norm, "norm", ("linf", "l2")), "pgd_steps": positive_int(pgd_steps, "pgd_steps"),
                "pgd_step_factor": check_number(pgd_step_factor, "pgd_step_factor", minimum=0, open_minimum=True)}
    batch_size = positive_int(batch_size, "batch_size")
    if corruptions and run.config.dataset != "cifar10":
        raise ValueError(f"CIFAR-10-C corruptions need a cifar10 run, this one is {run.config.dataset!r}")
    if corruptions and cifar10c_dir is None:
        raise ValueError("corruptions need cifar10c_dir (the folder of the CIFAR-10-C .npy files)")
    start = time.time()
    model = run.model
    target = stem_layer(model) if layers == "stem" else model
    reference = stem_layer(model).lam
    if reference.ndim:
        raise ValueError("the stem has a per-channel λ; the sweep and the adaptive rule need a scalar λ")
    reference = float(f"{float(reference):.6g}")  # the float32 buffer's 0.10000000149 is the trained 0.1
    device = model.mean.device
    x01, y = model.to_unit(run.x_test.to(device)), run.y_test.to(device)
    calibration, evaluation = calibration_split(len(y), calibration_fraction, seed)
    if limit is not None:
        evaluation = evaluation[:positive_int(limit, "limit")]
    calibration, evaluation = calibration.to(device), evaluation.to(device)
    report = {"format": REPORT_FORMAT, "lams": lams, "layers": layers, "reference_lam": reference,
              "n_test": len(y), "n_calibration": len(calibration), "n_evaluation": len(evaluation),
              "settings": {**settings, "seed": seed, "calibration_fraction": calibration_fraction,
                           "batch_size": batch_size, "limit": limit}}
    full_accuracy, _ = _accuracy_error(model, x01, y, batch_size)
    report["clean_full_test_accuracy_at_reference_lam"] = full_accuracy

    # phase 1: calibration sweeps of the noises -> best λ and the mean error at the reference λ per level
    lines, points = {}, []
    if len(calibration) and noises:
        for i, (name, levels) in enumerate(noises.items()):
            mine = []
            for j, level in enumerate(levels):
                noisy = _noisy(x01, name, level, seed, i, j)[calibration]
                accuracy, error = _sweep(model, target, lams, noisy, y[calibration], batch_size)
                if reference not in lams:
                    _, error = _sweep(model, target, [reference], noisy, y[calibration], batch_size)
                mine.append((error[lams.index(reference)] if reference in lams else error[0],
                             select_lam(lams, accuracy)))
            points += mine
            lines[name] = fit_lam_line(*zip(*mine, strict=True), grid=lams, reference_lam=reference)
        lines["pooled"] = fit_lam_line(*zip(*points, strict=True), grid=lams, reference_lam=reference)
    report["adaptive_lines"] = {name: line.as_dict() for name, line in lines.items()}

    # phase 2: every condition on the evaluation images: the fixed-λ sweep beside the adaptive rule
    conditions = []

    def record(entry, x_eval, rules):
        accuracy, error = _sweep(model, target, lams, x_eval, y[evaluation], batch_size)
        entry.update(accuracy=accuracy, reconstruction_error=error,
                     adaptive={rule: _adaptive_accuracy(model, target, lines[rule], x_eval, y[evaluation],
                                                        batch_size) for rule in rules if rule in lines})
        conditions.append(entry)

    record({"family": "clean", "name": "clean"}, x01[evaluation], ["pooled"])
    for i, (name, levels) in enumerate(noises.items()):
        for j, level in enumerate(levels):
            record({"family": "sdnet_noise", "name": name, "level": level},
                   _noisy(x01, name, level, seed, i, j)[evaluation], [name, "pooled"])
    for corruption in corruptions:
        for severity in severities:
            images, labels = load_cifar10c(cifar10c_dir, corruption, severity, device=device)
            if len(labels) != len(y) or not torch.equal(labels, y):
                raise ValueError(f"{cifar10c_dir}: the labels of {corruption} do not match the run's test labels")
            record({"family": "cifar10c", "name": corruption, "severity": int(severity)},
                   model.to_unit(images)[evaluation], ["pooled"])
    from ..nn.csc_layer import test_time_lam
    for kind in attacks:
        for radius in eps:
            entry = {"family": "attack", "name": kind, "eps": float(radius), "norm": settings["norm"]}
            accuracy, error = [], []
            for lam in lams:  # white box: the attack sees the model at the λ it is evaluated at
                with test_time_lam(target, lam):
                    adversarial = _attack(model, kind, x01[evaluation], y[evaluation], radius, settings, batch_size)
                    a, e = _accuracy_error(model, adversarial, y[evaluation], batch_size)
                accuracy.append(a)
                error.append(e)
            entry.update(accuracy=accuracy, reconstruction_error=error, adaptive={})
            if "pooled" in lines:
                with test_time_lam(target, reference):
                    adversarial = _attack(model, kind, x01[evaluation], y[evaluation], radius, settings, batch_size)
                entry["adaptive"]["pooled"] = _adaptive_accuracy(model, target, lines["pooled"], adversarial,
                                                                 y[evaluation], batch_size)
            conditions.append(entry)
    report["conditions"] = conditions
    report["seconds"] = time.time() - start
    return report


def _provenance(run: LoadedRun, arguments: dict) -> dict:
    from .. import __version__
    from ..train.results import git_commit
    device = run.model.mean.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {"git_commit": git_commit(), "cscnb": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "platform": platform.platform(), "device": str(device),
            "device_name": name, "checkpoint_sha256": run.checkpoint_sha256, "run_dir": os.path.abspath(run.path),
            "run_config": dataclasses.asdict(run.config), "run_summary": run.summary, "arguments": arguments,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def write_report(report: dict, path: str, *, run: LoadedRun, arguments: dict, force: bool = False) -> str:
    """Add provenance and write ``report`` to ``path`` atomically; an existing file needs ``force=True``."""
    path = os.fspath(path)
    if os.path.exists(path) and not force:
        raise FileExistsError(f"{path!r} exists; pass --force to replace it (or choose another --out)")
    from ..train.results import write_json  # the trainer's atomic, strict-JSON writer
    write_json(path, {**report, "provenance": _provenance(run, arguments)})
    return path


def load_report(path: str) -> dict:
    """Read a report written by :func:`write_report`, checking its format and the lengths of its sweeps."""
    with open(path, encoding="utf-8") as handle:
        report = json.load(handle)
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
        raise ValueError(f"{path}: not a {REPORT_FORMAT} report")
    n = len(report["lams"])
    for entry in report["conditions"]:
        if len(entry["accuracy"]) != n or len(entry["reconstruction_error"]) != n:
            raise ValueError(f"{path}: condition {entry.get('name')!r} does not hold one value per λ")
    return report
