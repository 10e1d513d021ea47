"""``python -m cscnb.train --preset NAME [--key value ...]``: train a cscnb model.

One process, or several with ``torchrun --nproc_per_node=N -m cscnb.train ...`` (PyTorch DDP,
initialized from the environment variables torchrun sets; NCCL on CUDA, gloo on CPU). Every epoch
ends with an atomic checkpoint; ``--resume`` continues a run to the same final weights as an
uninterrupted run. Results go to ``OUT_DIR/RUN_NAME/`` (see :mod:`cscnb.train.results`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..models.factory import build_model
from . import results
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, config_from_argv
from .data import build_data

__all__ = ["main", "train", "select_device", "run_directory"]

CHECKPOINT = "checkpoint.pt"


def select_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA if available, else Apple MPS, else CPU; otherwise the named device (checked)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} requested but MPS is not available")
    return device


def run_directory(config: TrainConfig, start: float) -> str:
    """``OUT_DIR/RUN_NAME``; refuses an existing folder unless resuming, and a missing one when resuming."""
    name = config.run_name or f"{config.preset}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(start))}"
    path = os.path.join(config.out_dir, name)
    if config.resume and not os.path.isfile(os.path.join(path, CHECKPOINT)):
        raise FileExistsError(f"--resume: no checkpoint {os.path.join(path, CHECKPOINT)!r} (give --run-name)")
    if not config.resume and os.path.exists(path):
        raise FileExistsError(f"run folder {path!r} exists; pass --resume to continue it or choose another --run-name")
    return path


def _setup_distributed(config: TrainConfig):
    """(rank, world size, device) — from torchrun's environment variables when present."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, select_device(config.device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(config.device)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _autocast(config: TrainConfig, device: torch.device):
    if config.amp == "off" or device.type != "cuda":  # autocast only on CUDA; elsewhere --amp is ignored
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if config.amp == "bf16" else torch.float16)


def _scheduler(config: TrainConfig, optimizer):
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=config.milestone_epochs(), gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


def _full_precision(logits: torch.Tensor) -> torch.Tensor:
    # the loss is computed in float32 under autocast, and in the model's own dtype otherwise (float64 stays float64)
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def _all_sum(values: list, device, world: int) -> list:
    """Sum float statistics over DDP processes (identity for one process)."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if world > 1:
        dist.all_reduce(tensor)
    return tensor.tolist()


def _progress(config: TrainConfig, rank: int, total: int, epoch: int):
    # a bar only on rank 0, on a terminal, and unless --no-progress: chapters and logs stay clean
    enabled = config.progress and rank == 0 and sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False)


@torch.no_grad()
def evaluate(model, data, config: TrainConfig, device, rank: int, world: int) -> tuple:
    """(mean loss, accuracy) on the test set, each process taking its share."""
    model.eval()
    loss_sum = correct = count = 0.0
    for x, y in data.test_batches(max(config.batch_size, 256), rank, world):
        with _autocast(config, device):
            logits = model(x)
        loss_sum += float(F.cross_entropy(_full_precision(logits), y, reduction="sum"))
        correct += float((logits.argmax(1) == y).sum())
        count += len(y)
    loss_sum, correct, count = _all_sum([loss_sum, correct, count], device, world)
    return loss_sum / max(count, 1), correct / max(count, 1)


def train_epoch(model, optimizer, scaler, data, config, device, rank, world, epoch) -> dict:
    """One pass over the training set; returns the epoch's mean loss, accuracy and throughput."""
    model.train()
    steps = data.steps_per_epoch(config.batch_size)
    bar = _progress(config, rank, steps, epoch)
    loss_sum = correct = count = 0.0
    start = time.perf_counter()
    for x, y in data.train_batches(epoch, config.batch_size, rank, world):
        with _autocast(config, device):
            logits = model(x)
            # mean over this rank's share; DDP averages gradients over ranks → the global-batch mean
            loss = F.cross_entropy(_full_precision(logits), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loss_sum += float(loss.detach()) * len(y)
        correct += float((logits.argmax(1) == y).sum())
        count += len(y)
        if bar is not None:
            elapsed = time.perf_counter() - start
            bar.set_postfix(loss=f"{loss_sum / count:.3f}", acc=f"{correct / count:.3f}",
                            img_s=f"{count * world / max(elapsed, 1e-9):.0f}")
            bar.update(1)
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - start
    loss_sum, correct, count = _all_sum([loss_sum, correct, count], device, world)
    return {"train_loss": loss_sum / max(count, 1), "train_accuracy": correct / max(count, 1),
            "samples_per_second": count / max(seconds, 1e-9), "epoch_seconds": seconds}


def train(config: TrainConfig) -> str:
    """Run (or resume) the training ``config`` describes; returns the run folder."""
    rank, world, device = _setup_distributed(config)
    try:
        return _train(config, rank, world, device)
    finally:
        if world > 1:
            dist.destroy_process_group()


def _train(config: TrainConfig, rank: int, world: int, device: torch.device) -> str:
    start = time.time()
    path = error = None
    if rank == 0:  # rank 0 alone names and checks the folder; the others receive its answer
        try:
            path = run_directory(config, start)
        except FileExistsError as err:
            error = str(err)
    if world > 1:
        box = [path, error, start]
        dist.broadcast_object_list(box, src=0)
        path, error, start = box
    if error is not None:
        raise FileExistsError(error)
    if config.threads:
        torch.set_num_threads(config.threads)
    _seed_everything(config.seed)
    # data and model first: a missing data folder or a bad model choice must not leave a run folder behind
    data = build_data(config, device)
    model = build_model(config, data).to(device)
    if rank == 0 and not config.resume:
        os.makedirs(path)
        results.write_json(os.path.join(path, "config.json"), dataclasses.asdict(config))
        results.write_json(os.path.join(path, "provenance.json"), results.provenance(
            device=str(device), seed=config.seed, world_size=world, start_time=results.now_iso()))
    # SGD's coupled weight decay on every parameter, as in the SDNet recipe
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                momentum=config.momentum, nesterov=config.nesterov and config.momentum > 0)
    scheduler = _scheduler(config, optimizer)
    first_epoch, checkpoint_path, earlier_seconds = 0, os.path.join(path, CHECKPOINT), 0.0
    if config.resume:
        state = load_checkpoint(checkpoint_path, model=model, optimizer=optimizer, scheduler=scheduler)
        # wall time of the interrupted process(es) up to their last checkpoint, so the total is the run's
        first_epoch, earlier_seconds = int(state["epoch"]), float(state["extra"].get("wall_seconds", 0.0))
        if rank == 0:
            results.truncate_metrics(os.path.join(path, "metrics.csv"), first_epoch)
    train_model = model
    if world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        if not hasattr(torch, "compile"):
            raise ValueError("--compile needs torch.compile (PyTorch >= 2.0)")
        train_model = torch.compile(train_model)
    scaler = torch.amp.GradScaler("cuda", enabled=config.amp == "fp16" and device.type == "cuda")
    test_loss = test_accuracy = float("nan")
    for epoch in range(first_epoch, config.epochs):
        lr = optimizer.param_groups[0]["lr"]
        row = train_epoch(train_model, optimizer, scaler, data, config, device, rank, world, epoch)
        scheduler.step()
        if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs:
            # the unwrapped model: no DDP collectives inside forward, so ranks may see unequal batch counts
            test_loss, test_accuracy = evaluate(model, data, config, device, rank, world)
        row.update(epoch=epoch + 1, lr=lr, test_loss=test_loss, test_accuracy=test_accuracy)
        if rank == 0:
            results.append_metrics(os.path.join(path, "metrics.csv"), row)
            save_checkpoint(checkpoint_path, model=model, optimizer=optimizer, scheduler=scheduler,
                            epoch=epoch + 1, extra={"wall_seconds": earlier_seconds + time.time() - start})
        if world > 1:
            dist.barrier()  # no rank runs ahead of the checkpoint it may be resumed from
    if rank == 0:
        _finish(path, model, test_loss, test_accuracy, earlier_seconds + time.time() - start, first_epoch)
    return path


def _finish(path: str, model, test_loss: float, test_accuracy: float, wall_seconds: float,
            resumed_at_epoch: int) -> None:
    prov_path = os.path.join(path, "provenance.json")
    prov = results.load_run(path).provenance
    prov["end_time"] = results.now_iso()
    prov["wall_seconds"] = wall_seconds  # summed over the interrupted and the resuming processes
    if resumed_at_epoch:
        prov.setdefault("resumed_at_epochs", []).append(resumed_at_epoch)
    results.write_json(prov_path, prov)
    metrics = results.load_run(path).metrics
    finite = [r["test_accuracy"] for r in metrics
              if r["test_accuracy"] is not None and not math.isnan(r["test_accuracy"])]
    results.write_json(os.path.join(path, "summary.json"), {
        "epochs": len(metrics), "final_test_loss": test_loss, "final_test_accuracy": test_accuracy,
        "best_test_accuracy": max(finite) if finite else None,
        "final_train_loss": metrics[-1]["train_loss"] if metrics else None,
        "parameters": sum(p.numel() for p in model.parameters())})


def main(argv=None) -> int:
    """Command-line entry point: parse presets and overrides, train, print the run folder."""
    config = config_from_argv(argv)
    path = train(config)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"run written to {path}")
    return 0

