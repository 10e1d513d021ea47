"""``python -m cscnb.train --preset NAME [--key value ...]``: train a cscnb model.

One process, or several with ``torchrun --nproc_per_node=N -m cscnb.train ...`` (PyTorch DDP,
:mod:`cscnb.train.distributed`; batch norm over the global batch with ``sync_bn``, so N processes
compute what one does up to rounding). Every setting is checked before the run folder is created.
Each epoch ends with an atomic checkpoint; ``--resume`` continues a run — after a kill at any point,
also after its last checkpoint — to the same final weights as an uninterrupted run, and refuses a
changed recipe, a finished run and a failed run. A non-finite training loss stops the run
(:class:`~cscnb.train.step.TrainingFailed`, exit status 1): the last good checkpoint stays and
``failed.json`` says where. Results go to ``OUT_DIR/RUN_NAME/`` (see :mod:`cscnb.train.results`).
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
import random
import sys
import time
import warnings

import numpy as np
import torch
import torch.distributed as dist

from ..models.factory import build_model, csc_layer_kwargs
from . import results
from .checkpoint import load_checkpoint, save_checkpoint
from .config import PRESET_NOTES, TrainConfig, config_differences, config_from_argv
from .data import build_data
from .distributed import setup_distributed, sync_batch_norm, world_size_from_env
from .step import StepLog, TrainingFailed, evaluate, lr_factor, train_step

__all__ = ["main", "train", "select_device", "run_directory", "TrainingFailed"]

CHECKPOINT = "checkpoint.pt"


def select_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA if available, else Apple MPS, else CPU; otherwise the named device (checked)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {name!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} requested but MPS is not available")
    return device


def run_directory(config: TrainConfig, start: float) -> str:
    """``OUT_DIR/RUN_NAME``, checked: a new run needs a free name; ``--resume`` needs an unfinished, unfailed run
    with a checkpoint and the same recipe (every field outside :data:`~cscnb.train.config.NOT_RECIPE_FIELDS`)."""
    name = config.run_name or f"{config.preset}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(start))}"
    path = os.path.join(config.out_dir, name)
    if not config.resume:
        if os.path.exists(path):
            raise FileExistsError(f"run folder {path!r} exists; pass --resume to continue it or choose another "
                                  "--run-name")
        return path
    if not os.path.isfile(os.path.join(path, CHECKPOINT)):
        raise FileExistsError(f"--resume: no checkpoint {os.path.join(path, CHECKPOINT)!r} (give --run-name)")
    if os.path.exists(os.path.join(path, "summary.json")):
        raise ValueError(f"--resume: run {path!r} has finished (summary.json); nothing to resume")
    if os.path.exists(os.path.join(path, "failed.json")):
        raise ValueError(f"--resume: run {path!r} failed (see its failed.json); start a new run")
    with open(os.path.join(path, "config.json"), encoding="utf-8") as handle:
        changed = config_differences(json.load(handle), config)
    if changed:
        raise ValueError(f"--resume: the settings differ from the run's config.json ({'; '.join(changed)}); "
                         "a resumed run keeps its recipe (start a new run to change it)")
    return path


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _progress(config: TrainConfig, rank: int, total: int, epoch: int):
    # a bar only on rank 0, on a terminal, and unless --no-progress: chapters and logs stay clean
    if not (config.progress and rank == 0 and sys.stderr.isatty()):
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc=f"epoch {epoch + 1}/{config.epochs}", unit="step", leave=False)


class _Run:
    """What one process holds during a run (model, optimizer, data, logs)."""

    def __init__(self, config: TrainConfig, rank: int, world: int, device, path: str):
        self.config, self.rank, self.world, self.device, self.path = config, rank, world, device, path
        self.writer = None

    def emit_steps(self, rows: list, bar=None) -> None:
        """Rank 0 writes flushed step rows to steps.jsonl, TensorBoard and the progress bar."""
        if self.rank != 0 or not rows:
            return
        results.append_steps(os.path.join(self.path, "steps.jsonl"), rows)
        if self.writer is not None:
            for row in rows:
                if row["loss"] is not None:
                    for key in ("loss", "lr", "images_per_second"):
                        self.writer.add_scalar(f"train/{key}", row[key], row["step"])
        if bar is not None and rows[-1]["loss"] is not None:
            bar.set_postfix(loss=f"{rows[-1]['loss']:.3f}", img_s=f"{rows[-1]['images_per_second']:.0f}")

    def train_epoch(self, model, optimizer, scheduler, scaler, data, epoch: int) -> dict:
        """One pass over the training set: mean loss, accuracy, throughput (losses read every log_every steps)."""
        config = self.config
        model.train()
        steps = data.steps_per_epoch(config.batch_size)
        bar = _progress(config, self.rank, steps, epoch)
        log = StepLog(config.log_every, self.world, self.device)
        start = time.perf_counter()
        try:
            for index, (x, y) in enumerate(data.train_batches(epoch, config.batch_size, self.rank, self.world)):
                if config.channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                lr = optimizer.param_groups[0]["lr"]
                loss, correct = train_step(model, x, y, optimizer, scheduler, scaler, config, self.device)
                log.record(epoch * steps + index + 1, loss, correct, len(y), lr)
                if bar is not None:
                    bar.update(1)
                if log.due():
                    self.emit_steps(log.flush(epoch), bar)
            self.emit_steps(log.flush(epoch), bar)
        except TrainingFailed as failure:
            self.emit_steps(failure.rows)
            raise
        finally:
            if bar is not None:
                bar.close()
        seconds = time.perf_counter() - start
        images = max(log.total_images, 1)
        return {"train_loss": log.total_loss / images, "train_accuracy": log.total_correct / images,
                "samples_per_second": log.total_images / max(seconds, 1e-9), "epoch_seconds": seconds}


def train(config: TrainConfig) -> str:
    """Run (or resume) the training ``config`` describes; returns the run folder.

    Raises ``ValueError``/``FileExistsError``/``FileNotFoundError`` before anything is written when a
    setting, the data folder or the run folder is wrong, and :class:`TrainingFailed` when a loss is not finite.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    world = world_size_from_env()
    config.check_world(world)
    device = select_device(config.device)
    if config.amp == "fp16" and device.type != "cuda":
        raise ValueError(f"amp='fp16' needs CUDA (device {device}); use amp='bf16' or 'off'")
    if config.compile and not hasattr(torch, "compile"):
        raise ValueError("--compile needs torch.compile (PyTorch >= 2.0)")
    if config.tensorboard:
        try:
            importlib.import_module("torch.utils.tensorboard")  # needs the tensorboard package
        except ImportError as err:
            raise ValueError(f"--tensorboard needs the tensorboard package ({err})") from None
    if config.data_dir and not os.path.isdir(config.data_dir):
        raise FileNotFoundError(f"data_dir {config.data_dir!r} is not a folder (nothing is downloaded)")
    if config.deterministic and device.type == "cuda":  # cuBLAS needs this to be deterministic
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    rank, world, device = setup_distributed(device)
    try:
        torch.use_deterministic_algorithms(config.deterministic)
        return _train(config, rank, world, device)
    finally:
        torch.use_deterministic_algorithms(deterministic_before)
        if world > 1:
            dist.destroy_process_group()


def _checked_folder(config: TrainConfig, rank: int, world: int) -> tuple:
    """``(path, start)``: rank 0 checks the run folder; every rank gets its answer or raises its error."""
    start, path, error = time.time(), None, None
    if rank == 0:
        try:
            path = run_directory(config, start)
        except (FileExistsError, ValueError, OSError) as err:
            error = (type(err).__name__, str(err))
    if world > 1:
        box = [path, error, start]
        dist.broadcast_object_list(box, src=0)
        path, error, start = box
    if error is not None:
        raise {"FileExistsError": FileExistsError, "ValueError": ValueError}.get(error[0], OSError)(error[1])
    return path, start


def _train(config: TrainConfig, rank: int, world: int, device: torch.device) -> str:
    path, start = _checked_folder(config, rank, world)
    if config.threads:
        torch.set_num_threads(config.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = config.cudnn_benchmark
    _seed_everything(config.seed)
    # data and model first: a missing data folder or a bad model choice must not leave a run folder behind
    data = build_data(config, device, rank, world)
    steps_per_epoch = data.steps_per_epoch(config.batch_size)
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {data.n_train} training samples")
    model = build_model(config, data).to(device)
    csc_kwargs, unsupported = csc_layer_kwargs(config)
    if unsupported and config.model.startswith("sdnet"):
        warnings.warn(f"this CSCLayer has no argument for {', '.join(unsupported)}; the layer's own behaviour is "
                      "used (recorded in provenance.json)", stacklevel=2)
    converted = 0
    if world > 1 and config.sync_bn:
        model, converted = sync_batch_norm(model, device)
    if config.channels_last and data.dim == 2:
        model = model.to(memory_format=torch.channels_last)
    # SGD's coupled weight decay on every parameter, as in the SDNet recipe
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                momentum=config.momentum, nesterov=config.nesterov and config.momentum > 0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, steps_per_epoch))
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")
    if rank == 0 and not config.resume:
        os.makedirs(path)
        results.write_json(os.path.join(path, "config.json"), dataclasses.asdict(config))
        results.write_json(os.path.join(path, "provenance.json"), results.provenance(
            device=str(device), seed=config.seed, world_size=world, start_time=results.now_iso(),
            global_batch=config.batch_size, per_process_batch=config.batch_size // world,
            sync_batch_norm_layers=converted, steps_per_epoch=steps_per_epoch,
            csc_layer_kwargs=csc_kwargs if config.model.startswith("sdnet") else None,
            csc_settings_unsupported=unsupported if config.model.startswith("sdnet") else [],
            deterministic=config.deterministic))
    first_epoch, checkpoint_path, earlier_seconds = 0, os.path.join(path, CHECKPOINT), 0.0
    if config.resume:
        state = load_checkpoint(checkpoint_path, model=model, optimizer=optimizer, scheduler=scheduler,
                                scaler=scaler)
        # wall time of the interrupted process(es) up to their last checkpoint, so the total is the run's
        first_epoch, earlier_seconds = int(state["epoch"]), float(state["extra"].get("wall_seconds", 0.0))
        if rank == 0:
            results.truncate_metrics(os.path.join(path, "metrics.csv"), first_epoch)
            results.truncate_steps(os.path.join(path, "steps.jsonl"), first_epoch * steps_per_epoch)
    train_model = model
    if world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        train_model = torch.compile(train_model)
    run = _Run(config, rank, world, device, path)
    if rank == 0 and config.tensorboard:
        from torch.utils.tensorboard import SummaryWriter
        run.writer = SummaryWriter(os.path.join(path, "tensorboard"),
                                   purge_step=first_epoch * steps_per_epoch + 1 if config.resume else None)
    try:
        for epoch in range(first_epoch, config.epochs):
            _epoch(run, model, train_model, optimizer, scheduler, scaler, data, epoch, start, earlier_seconds)
    except TrainingFailed as failure:
        if rank == 0:
            results.write_json(os.path.join(path, "failed.json"), {
                "status": "failed", "reason": failure.reason, "epoch": failure.epoch, "step": failure.step,
                "last_checkpoint_epoch": int(torch.load(checkpoint_path, weights_only=True)["epoch"])
                if os.path.exists(checkpoint_path) else None, "time": results.now_iso()})
        raise
    finally:
        if run.writer is not None:
            run.writer.close()
    if rank == 0:
        _finish(run, model, data, earlier_seconds + time.time() - start, first_epoch)
    return path


def _epoch(run: _Run, model, train_model, optimizer, scheduler, scaler, data, epoch, start, earlier_seconds):
    config, rank, world, device = run.config, run.rank, run.world, run.device
    lr = optimizer.param_groups[0]["lr"]
    row = run.train_epoch(train_model, optimizer, scheduler, scaler, data, epoch)
    finite = torch.stack([p.detach().isfinite().all() for p in model.parameters()]).all()
    if not bool(finite):  # one read per epoch: a checkpoint never holds non-finite weights
        raise TrainingFailed(f"non-finite weights after epoch {epoch + 1}", epoch + 1, (epoch + 1) *
                             data.steps_per_epoch(config.batch_size))
    row.update(epoch=epoch + 1, lr=lr)
    if data.has_validation:
        row.update({f"val_{k}": v for k, v in evaluate(model, data, config, device, rank, world, "val").items()})
    if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs:
        # the unwrapped model: no DDP collectives inside forward, so ranks may see unequal batch counts
        row.update({f"test_{k}": v for k, v in evaluate(model, data, config, device, rank, world).items()})
    if rank == 0:
        results.append_metrics(os.path.join(run.path, "metrics.csv"), row)
        if run.writer is not None:
            step = (epoch + 1) * data.steps_per_epoch(config.batch_size)
            for key, value in row.items():
                if key != "epoch" and value is not None:
                    run.writer.add_scalar(f"epoch/{key}", value, step)
        save_checkpoint(os.path.join(run.path, CHECKPOINT), model=model, optimizer=optimizer, scheduler=scheduler,
                        scaler=scaler, epoch=epoch + 1,
                        extra={"wall_seconds": earlier_seconds + time.time() - start})
    if world > 1:
        dist.barrier()  # no rank runs ahead of the checkpoint it may be resumed from


def _finish(run: _Run, model, data, wall_seconds: float, resumed_at_epoch: int) -> None:
    """Provenance end time, then ``summary.json`` from metrics.csv (evaluating only if the last test is missing)."""
    config, path = run.config, run.path
    prov = results.load_run(path).provenance
    prov["end_time"] = results.now_iso()
    prov["wall_seconds"] = wall_seconds  # summed over the interrupted and the resuming processes
    if config.resume:
        prov.setdefault("resumed_at_epochs", []).append(resumed_at_epoch)
        prov.setdefault("resumes", []).append({"epoch": resumed_at_epoch, "world_size": run.world,
                                               "device": str(run.device), "git_commit": results.git_commit()})
    results.write_json(os.path.join(path, "provenance.json"), prov)
    metrics = results.load_run(path).metrics
    last = metrics[-1] if metrics else {}
    if last.get("test_accuracy") is None:  # cannot happen for a run this trainer wrote; kept safe
        last = {**last, **{f"test_{k}": v for k, v in evaluate(model, data, config, run.device, 0, 1).items()}}
    tests = [r["test_accuracy"] for r in metrics if r.get("test_accuracy") is not None]
    vals = [(r["val_accuracy"], r["epoch"]) for r in metrics if r.get("val_accuracy") is not None]
    best_val = max(vals, key=lambda item: (item[0], -item[1])) if vals else None
    results.write_json(os.path.join(path, "summary.json"), {
        "status": "finished", "epochs": len(metrics), "final_test_loss": last.get("test_loss"),
        "final_test_accuracy": last.get("test_accuracy"), "final_test_top5": last.get("test_top5"),
        "best_test_accuracy": max(tests) if tests else None,
        "final_val_accuracy": vals[-1][0] if vals else None,
        "best_val_accuracy": best_val[0] if best_val else None, "best_val_epoch": best_val[1] if best_val else None,
        "final_train_loss": last.get("train_loss"),
        "parameters": sum(p.numel() for p in model.parameters()),
        "world_size": run.world, "global_batch": config.batch_size,
        "per_process_batch": config.batch_size // run.world})


def describe(config: TrainConfig) -> str:
    """The preset's notes (recipe source, differences) and the resolved configuration, as printed by --describe."""
    fields = "\n".join(f"  {key} = {value!r}" for key, value in dataclasses.asdict(config).items())
    return f"preset {config.preset}:\n{PRESET_NOTES.get(config.preset, '')}\n\nconfiguration:\n{fields}"


def main(argv=None) -> int:
    """Command-line entry point. Exit status 0: done; 1: the run failed (non-finite loss); 2: a usage error."""
    config, flags = config_from_argv(argv, with_flags=True)
    if flags["describe"]:
        print(describe(config))
        return 0
    rank = int(os.environ.get("RANK", "0"))
    try:
        path = train(config)
    except TrainingFailed as failure:
        print(f"python -m cscnb.train: training failed: {failure}; the last good checkpoint is kept and the run "
              "folder is marked failed (failed.json)", file=sys.stderr)
        return 1
    except (ValueError, TypeError, FileExistsError, FileNotFoundError) as err:
        print(f"python -m cscnb.train: error: {err}", file=sys.stderr)
        return 2
    if rank == 0:
        print(f"run written to {path}")
    return 0
