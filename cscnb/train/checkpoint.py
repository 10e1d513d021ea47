"""Atomic training checkpoints that resume to the same weights (``python -m cscnb.train --resume``).

A checkpoint holds the model's state (parameters and every persistent buffer: batch-norm statistics,
the CSC layers' step-size state), the optimizer, the scheduler (its optimizer-step count), the
gradient scaler (fp16), the epoch just finished and the random-number-generator states of torch
(CPU and every CUDA device), NumPy and Python — all as
tensors or plain Python values, so ``torch.load(..., weights_only=True)`` reads it back. It is
written to a temporary file in the same folder and moved into place with ``os.replace``, which is
atomic on POSIX: a run killed mid-write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import os
import random
import tempfile

import numpy as np
import torch

__all__ = ["rng_state", "set_rng_state", "save_checkpoint", "load_checkpoint", "atomic_torch_save"]


def rng_state() -> dict:
    """The global RNG states of torch, CUDA, NumPy and Python as tensors / plain values."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        # NumPy's MT19937 state: the key array as an int64 tensor plus plain ints / floats
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "python": {"version": int(py_version), "internal": list(py_internal), "gauss": py_gauss},
    }


def set_rng_state(state: dict) -> None:
    """Restore the states :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))


def atomic_torch_save(obj, path: str) -> None:
    """``torch.save`` to a temporary file beside ``path``, then ``os.replace`` it into place."""
    folder = os.path.dirname(os.path.abspath(path))
    # "<name>.<random>.tmp": a run killed mid-write leaves at most a stray file the .gitignore already covers
    handle, temp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(obj, stream)
            stream.flush()
            os.fsync(stream.fileno())  # the bytes reach the disk before the rename makes them visible
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise


def save_checkpoint(path: str, *, model, optimizer, scheduler, epoch: int, scaler=None,
                    extra: dict | None = None) -> None:
    """Write the state after ``epoch`` finished epochs (model, optimizer, scheduler, scaler, RNG) atomically."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "epoch": int(epoch), "rng": rng_state(),
             "scaler": scaler.state_dict() if scaler is not None else {}, "extra": dict(extra or {})}
    atomic_torch_save(state, path)


def load_checkpoint(path: str, *, model, optimizer, scheduler, scaler=None, map_location="cpu") -> dict:
    """Load a checkpoint into ``model``, ``optimizer``, ``scheduler`` and ``scaler``, restore the RNG states.

    Returns the checkpoint dictionary (``epoch``: epochs already done; ``extra``: what the trainer stored).
    A model of another architecture is a ``ValueError`` naming the checkpoint.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}: nothing to resume")
    state = torch.load(path, map_location=map_location, weights_only=True)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise ValueError(f"checkpoint {path!r} does not fit this model: {err}") from None
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    return state
