r"""One training step, evaluation and the learning-rate schedule of ``python -m cscnb.train``, without host syncs.

A training step (:func:`train_step`: forward, loss, backward, optimizer step, scheduler step) reads
nothing back from the device: the loss and the count of correct predictions stay device tensors, and
:class:`StepLog` reads them in one transfer every ``log_every`` steps (and at the end of an epoch),
where it also checks that every loss was finite. Evaluation likewise sums on the device and reads
once. The schedule is a closed form of the optimizer-step count :math:`t` (:func:`lr_factor`):

.. math:: \eta_t = \eta_0\, w(t)\, s(t),\quad
   s_{\text{cosine}}(t) = \tfrac12\bigl(1 + \cos(\pi \tau / T)\bigr),\quad
   s_{\text{step}}(t) = 0.1^{\#\{m:\ \tau \ge m\}},

with :math:`\tau = t` (``schedule_unit="iteration"``, :math:`T` all iterations: the authors' cosine
stepped every iteration) or :math:`\tau` the first iteration of the current epoch (``"epoch"``), the
milestones :math:`m` in iterations, and the linear warm-up :math:`w(t) = \min(1, (t+1)/T_w)`.
"""
from __future__ import annotations

import contextlib
import math
import time

import torch
import torch.nn.functional as F

from .config import TrainConfig
from .distributed import all_sum

__all__ = ["TrainingFailed", "autocast", "lr_factor", "train_step", "evaluate", "StepLog", "top_k_correct"]


class TrainingFailed(RuntimeError):
    """A run stopped because a training loss was not finite; names the epoch and step."""

    def __init__(self, reason: str, epoch: int, step: int, rows: list | None = None):
        super().__init__(reason)
        self.reason, self.epoch, self.step, self.rows = reason, epoch, step, list(rows or [])


def autocast(config: TrainConfig, device: torch.device):
    """The autocast context of ``config.amp`` (bf16 on CUDA or CPU, fp16 on CUDA), else a null context."""
    if config.amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if config.amp == "bf16" else torch.float16)


def lr_factor(config: TrainConfig, steps_per_epoch: int):
    """The multiplier :math:`w(t)\\,s(t)` of the initial learning rate after ``t`` optimizer steps (see the module)."""
    total = max(config.epochs * steps_per_epoch, 1)
    warm = round(config.warmup_epochs * steps_per_epoch)
    milestones = [m * steps_per_epoch for m in config.milestone_epochs()]
    by_iteration = config.schedule_unit == "iteration"

    def factor(t: int) -> float:
        tau = t if by_iteration else (t // steps_per_epoch) * steps_per_epoch
        if config.schedule == "cosine":
            value = 0.5 * (1.0 + math.cos(math.pi * min(tau, total) / total))
        elif config.schedule == "step":
            value = 0.1 ** sum(tau >= m for m in milestones)
        else:
            value = 1.0
        return value * min(1.0, (t + 1) / warm) if warm else value
    return factor


def _full_precision(logits: torch.Tensor) -> torch.Tensor:
    # the loss is computed in float32 under autocast, and in the model's own dtype otherwise (float64 stays float64)
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def top_k_correct(logits: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """How many rows have their label among the ``k`` largest logits (a 0-d device tensor; ``k`` capped at classes)."""
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == y[:, None]).any(dim=1).sum()


def train_step(model, x, y, optimizer, scheduler, scaler, config: TrainConfig, device) -> tuple:
    """One optimizer step on the batch ``(x, y)``; returns ``(loss, correct)`` as device tensors (no host sync)."""
    with autocast(config, device):
        logits = model(x)
        # mean over this rank's share; DDP averages gradients over ranks → the global-batch mean
        loss = F.cross_entropy(_full_precision(logits), y, label_smoothing=config.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return loss.detach(), (logits.detach().argmax(1) == y).sum()


@torch.no_grad()
def evaluate(model, data, config: TrainConfig, device, rank: int, world: int, split: str = "test") -> dict:
    """``{"loss", "accuracy", "top5"}`` on the test (or validation) set, each process taking its share."""
    model.eval()
    sums, count = torch.zeros(3, dtype=torch.float64, device=device), 0  # loss sum, top-1, top-5; samples
    for x, y in data.test_batches(max(config.batch_size, 256), rank, world, split=split):
        if config.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(config, device):
            logits = _full_precision(model(x))
        sums += torch.stack([F.cross_entropy(logits, y, reduction="sum").double(),
                             top_k_correct(logits, y, 1).double(), top_k_correct(logits, y, 5).double()])
        count += len(y)
    totals = torch.cat([sums, torch.tensor([float(count)], dtype=torch.float64, device=device)])
    loss, top1, top5, count = all_sum(totals, world).tolist()  # the one read of the evaluation
    count = max(count, 1.0)
    return {"loss": loss / count, "accuracy": top1 / count, "top5": top5 / count}


class StepLog:
    """Per-step losses kept on the device and read every ``every`` steps: rows of ``steps.jsonl``, finiteness check.

    :meth:`record` stores a step's loss tensor, correct count and batch size (no sync). :meth:`flush` reads
    the pending steps in one transfer (summed over DDP processes), raises :class:`TrainingFailed` at the
    first non-finite loss, and returns the rows ``{"epoch", "step", "loss", "lr", "images_per_second"}``;
    ``step`` counts optimizer steps from 1 over the whole run, ``loss`` is the global-batch mean,
    ``images_per_second`` the throughput over the flushed interval (all processes).
    """

    def __init__(self, every: int, world: int, device):
        self.every, self.world, self.device = every, world, device
        self.losses, self.correct, self.lrs, self.steps = [], [], [], []
        self.images = 0
        self.start = time.perf_counter()
        self.total_loss = self.total_correct = 0.0  # epoch sums (this rank's samples), updated at each flush
        self.total_images = 0

    def record(self, step: int, loss: torch.Tensor, correct: torch.Tensor, batch: int, lr: float) -> None:
        self.steps.append(step)
        self.losses.append(loss * batch)
        self.correct.append(correct)
        self.lrs.append(lr)
        self.images += batch

    def due(self) -> bool:
        return len(self.steps) >= self.every

    def flush(self, epoch: int) -> list:
        if not self.steps:
            return []
        n = len(self.steps)
        stacked = torch.cat([torch.stack(self.losses).double().reshape(-1),
                             torch.stack(self.correct).double().reshape(-1),
                             torch.tensor([float(self.images)], dtype=torch.float64, device=self.device)])
        values = all_sum(stacked, self.world).tolist()  # the one read of these steps
        seconds = max(time.perf_counter() - self.start, 1e-9)
        loss_sums, correct, images = values[:n], values[n:2 * n], values[-1]
        per_step_images = images / n
        rows = []
        for step, loss_sum, lr in zip(self.steps, loss_sums, self.lrs, strict=True):
            loss = loss_sum / per_step_images
            if not math.isfinite(loss):  # the rows so far and this one (loss null) go to steps.jsonl
                rows.append({"epoch": epoch + 1, "step": step, "loss": None, "lr": lr, "images_per_second": None})
                raise TrainingFailed(f"non-finite training loss ({loss}) at epoch {epoch + 1}, step {step}",
                                     epoch + 1, step, rows)
            rows.append({"epoch": epoch + 1, "step": step, "loss": loss, "lr": lr,
                         "images_per_second": images / seconds})
        self.total_loss += sum(loss_sums)
        self.total_correct += sum(correct)
        self.total_images += int(images)
        self.losses, self.correct, self.lrs, self.steps, self.images = [], [], [], [], 0
        self.start = time.perf_counter()
        return rows
