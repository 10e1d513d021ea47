"""Several processes (PyTorch DDP) computing what one process computes: set-up and batch norm over the global batch.

``torchrun --nproc_per_node=N -m cscnb.train ...`` starts N processes; each takes ``batch_size/N`` of
every global batch (:mod:`cscnb.train.data`) and DDP averages the gradients, so a model *without*
batch norm follows the single-process run up to floating-point rounding. Batch norm normalizes with the
statistics of the batch it sees; for N processes to compute what one process computes, those must be
the statistics of the global batch. :func:`sync_batch_norm` arranges that: :class:`torch.nn.SyncBatchNorm`
on CUDA (its fused kernels), :class:`GlobalBatchNorm` elsewhere (PyTorch's SyncBatchNorm runs only on
GPUs) — the per-channel sums are all-reduced with a differentiable collective, so the forward pass,
the gradients and the running statistics are those of the global batch.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.nn as nn

__all__ = ["setup_distributed", "all_sum", "GlobalBatchNorm", "sync_batch_norm", "world_size_from_env"]


def world_size_from_env() -> int:
    """The number of processes torchrun started (``WORLD_SIZE``; 1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup_distributed(device: torch.device) -> tuple:
    """``(rank, world size, device)``; with torchrun's environment, joins the process group (NCCL on CUDA, gloo
    elsewhere) and gives each process its own CUDA device (``LOCAL_RANK``)."""
    world = world_size_from_env()
    if world == 1:
        return 0, 1, device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def all_sum(tensor: torch.Tensor, world: int) -> torch.Tensor:
    """Sum ``tensor`` over the processes (in place; identity for one process)."""
    if world > 1:
        dist.all_reduce(tensor)
    return tensor


class GlobalBatchNorm(nn.BatchNorm2d):
    """Batch norm whose training statistics are those of the batch summed over all DDP processes.

    Without a process group (or in evaluation mode) it is :class:`torch.nn.BatchNorm2d` (it accepts any
    input of 2 or more dimensions, channels second). In training mode under DDP, the per-channel mean is
    the all-reduced sum over the global batch divided by its size, the variance likewise from the
    all-reduced centred squares (two passes, as exact as one process's), and the running statistics are
    updated with the global mean and unbiased global variance. The collectives are differentiable
    (:func:`torch.distributed.nn.functional.all_reduce`), so each process's gradient carries the other
    processes' terms, as in one process.
    """

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (got {input.dim()}-D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce
        self._check_input_dim(x)
        dims = [0] + list(range(2, x.dim()))
        shape = (1, -1) + (1,) * (x.dim() - 2)
        local_count = torch.full((1,), x.numel() // x.shape[1], dtype=x.dtype, device=x.device)
        totals = all_reduce(torch.cat([x.sum(dims), local_count]))
        count = totals[-1]
        mean = totals[:-1] / count
        centred = x - mean.view(shape)
        var = all_reduce((centred * centred).sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / self.num_batches_tracked if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - factor).add_(factor * mean.detach())
                self.running_var.mul_(1 - factor).add_(factor * var.detach() * count / (count - 1))
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def sync_batch_norm(model: nn.Module, device: torch.device) -> tuple:
    """``(model, n)``: every batch norm of ``model`` computing global-batch statistics under DDP; ``n`` converted.

    CUDA: :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm`; other devices: :class:`GlobalBatchNorm`
    (parameters and buffers carried over).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model, 0
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model), len(norms)
    return _swap_batch_norm(model), len(norms)


def _swap_batch_norm(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats, device=module.running_mean.device
                              if module.running_mean is not None else None,
                              dtype=(module.weight if module.affine else module.running_mean).dtype)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, _swap_batch_norm(child))
    return module
