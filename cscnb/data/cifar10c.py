r"""CIFAR-10-C (Hendrycks and Dietterich, 2019) from a local folder in its official ``.npy`` layout.

The folder holds one file per corruption, ``<corruption>.npy``, of shape ``(50000, 32, 32, 3)`` uint8:
the 10 000 CIFAR-10 test images corrupted at severity 1, then at severity 2, …, up to 5; and
``labels.npy``, the 50 000 int labels (the test labels repeated five times). Nothing is downloaded
and no pickle is read (``numpy.load(..., allow_pickle=False)``); files are memory-mapped, so one
severity costs 30 MB, not the whole file. Used by the robustness evaluation of trained runs
(chapter 14).
"""
from __future__ import annotations

import os

import numpy as np
import torch

from ..core.validation import check_int

__all__ = ["CIFAR10C_CORRUPTIONS", "IMAGES_PER_SEVERITY", "available_corruptions", "load_cifar10c"]

#: the 15 benchmark corruptions and the 4 extra ones of the official release
CIFAR10C_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
    "speckle_noise", "gaussian_blur", "spatter", "saturate")
IMAGES_PER_SEVERITY = 10_000


def _folder(data_dir) -> str:
    if not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"data_dir must be a path, got {type(data_dir).__name__}")
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"data_dir {data_dir!r} is not a folder (expected the CIFAR-10-C .npy files)")
    return data_dir


def _load(path: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:  # an object array or a file that is not .npy
        raise ValueError(f"{path}: not a plain .npy array ({err})") from err


def available_corruptions(data_dir) -> list:
    """The corruptions whose ``.npy`` file is present in ``data_dir``, in the official order."""
    data_dir = _folder(data_dir)
    return [name for name in CIFAR10C_CORRUPTIONS if os.path.isfile(os.path.join(data_dir, f"{name}.npy"))]


def load_cifar10c(data_dir, corruption: str, severity: int, *, device=None) -> tuple:
    """The 10 000 test images of ``corruption`` at ``severity`` (1–5): ``(images, labels)``.

    ``images`` is uint8 ``(N, 3, 32, 32)`` (channels first, like :func:`cscnb.data.load_cifar`), ``labels``
    int64 ``(N,)``, both on ``device``. ``N`` is 10 000 for the official files (fewer only for test
    folders whose files are shorter, which must still hold five equal severity blocks). Raises
    ``FileNotFoundError`` for a missing file and ``ValueError`` for a file of the wrong shape or dtype,
    naming the file and what was expected.
    """
    data_dir = _folder(data_dir)
    if corruption not in CIFAR10C_CORRUPTIONS:
        raise ValueError(f"corruption must be one of {CIFAR10C_CORRUPTIONS}, got {corruption!r}")
    severity = check_int(severity, "severity", minimum=1, maximum=5)
    paths = {name: os.path.join(data_dir, f"{name}.npy") for name in (corruption, "labels")}
    for path in paths.values():
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} is missing (CIFAR-10-C layout: <corruption>.npy and labels.npy)")
    images, labels = _load(paths[corruption]), _load(paths["labels"])
    if images.ndim != 4 or images.shape[1:] != (32, 32, 3) or images.dtype != np.uint8:
        raise ValueError(f"{paths[corruption]} must hold uint8 images of shape (5 * N, 32, 32, 3), "
                         f"got {images.dtype} {images.shape}")
    if images.shape[0] == 0 or images.shape[0] % 5:
        raise ValueError(f"{paths[corruption]} must hold 5 equal severity blocks, got {images.shape[0]} images")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0] or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{paths['labels']} must hold {images.shape[0]} integer labels, "
                         f"got {labels.dtype} {labels.shape}")
    per_severity = images.shape[0] // 5
    block = slice((severity - 1) * per_severity, severity * per_severity)
    x = torch.from_numpy(np.array(images[block])).permute(0, 3, 1, 2).contiguous()  # a writable copy of the block
    y = torch.from_numpy(np.array(labels[block], dtype=np.int64))
    if int(y.min()) < 0 or int(y.max()) > 9:
        raise ValueError(f"{paths['labels']} must hold CIFAR-10 labels 0..9, got values in [{int(y.min())}, "
                         f"{int(y.max())}]")
    return x.to(device), y.to(device)
