"""CIFAR-10/100 from a local folder in the official binary format, and on-device augmentation.

The binary format (https://www.cs.toronto.edu/~kriz/cifar.html) stores one record per image: the
label byte(s) followed by 3072 pixel bytes, the red plane, then green, then blue, each 32×32 in
row-major order — so a record's pixels reshape directly to ``(3, 32, 32)`` (CHW). CIFAR-10 records
have one label byte; CIFAR-100 records have two (coarse, then fine). No pickle is read.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from ..core.validation import nonneg_int
from .split import Split

__all__ = ["load_cifar", "decode_cifar_records", "random_crop_flip", "center_crop", "CIFAR_FILES", "CIFAR_RECIPE_MEAN",
           "CIFAR_RECIPE_STD"]

#: The input normalization of the SDNet authors' CIFAR recipe (on pixel values in [0, 1]): the mean is the
#: CIFAR-10 training images' per-channel mean, but the std is not their per-channel standard deviation
#: (about 0.247, 0.243, 0.262), so normalized inputs are about 1.2 times larger than standardized ones. The
#: CSC layer's λ is tied to the input scale, which is why the reproduction presets use these constants.
CIFAR_RECIPE_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_RECIPE_STD = (0.2023, 0.1994, 0.2010)

IMAGE_BYTES = 3 * 32 * 32
CIFAR_FILES = {
    "cifar10": ([f"data_batch_{i}.bin" for i in range(1, 6)], ["test_batch.bin"]),
    "cifar100": (["train.bin"], ["test.bin"]),
}


def decode_cifar_records(raw: bytes, label_bytes: int, label_index: int, *, name: str = "data") -> tuple:
    """Split raw binary records into uint8 images ``(N, 3, 32, 32)`` and int64 labels.

    ``label_bytes`` is 1 (CIFAR-10) or 2 (CIFAR-100: coarse, fine); ``label_index`` picks the label
    byte to return (CIFAR-100: 0 coarse, 1 fine).
    """
    if label_bytes not in (1, 2):
        raise ValueError(f"label_bytes must be 1 or 2, got {label_bytes!r}")
    if not 0 <= label_index < label_bytes:
        raise ValueError(f"label_index must be in [0, {label_bytes}), got {label_index!r}")
    record = label_bytes + IMAGE_BYTES
    if len(raw) == 0 or len(raw) % record:
        raise ValueError(f"{name}: size {len(raw)} bytes is not a positive multiple of the record size {record} "
                         f"({label_bytes} label byte(s) + {IMAGE_BYTES} pixel bytes)")
    records = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(-1, record)
    labels = records[:, label_index].to(torch.int64)
    images = records[:, label_bytes:].reshape(-1, 3, 32, 32).clone()
    return images, labels


def _read_files(folder: str, names: list, label_bytes: int, label_index: int) -> tuple:
    parts = []
    for name in names:
        path = os.path.join(folder, name)
        with open(path, "rb") as handle:
            parts.append(decode_cifar_records(handle.read(), label_bytes, label_index, name=path))
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def load_cifar(data_dir: str, dataset: str = "cifar10", *, fine_labels: bool = True, device=None) -> Split:
    """Load CIFAR-10 or CIFAR-100 from ``data_dir`` (binary version) onto ``device`` as uint8.

    The whole set (≈ 180 MB) is kept on the device so batches and augmentation never leave it, as
    the fastest CIFAR trainers do. ``fine_labels`` picks CIFAR-100's 100 fine classes
    (else the 20 coarse ones). Used by ``python -m cscnb.train`` presets ``*-cifar10`` / ``*-cifar100``.
    """
    if dataset not in CIFAR_FILES:
        raise ValueError(f"dataset must be 'cifar10' or 'cifar100', got {dataset!r}")
    if not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"data_dir must be a path, got {type(data_dir).__name__}")
    train_names, test_names = CIFAR_FILES[dataset]
    missing = [n for n in train_names + test_names if not os.path.isfile(os.path.join(data_dir, n))]
    if missing:
        raise FileNotFoundError(
            f"data_dir {os.fspath(data_dir)!r} lacks the {dataset} binary files {missing}; expected "
            f"{train_names + test_names} (the 'binary version' from https://www.cs.toronto.edu/~kriz/cifar.html, "
            "unpacked; nothing is downloaded)")
    label_bytes, label_index = (1, 0) if dataset == "cifar10" else (2, 1 if fine_labels else 0)
    x_train, y_train = _read_files(data_dir, train_names, label_bytes, label_index)
    x_test, y_test = _read_files(data_dir, test_names, label_bytes, label_index)
    n_classes = 10 if dataset == "cifar10" else (100 if fine_labels else 20)
    return Split(x_train.to(device), y_train.to(device), x_test.to(device), y_test.to(device), num_classes=n_classes)


def random_crop_flip(images: torch.Tensor, generator: torch.Generator, *, padding: int = 4, size: int | None = None,
                     flip: bool = True) -> torch.Tensor:
    """Random ``size``×``size`` crop of the zero-padded images, then a random horizontal flip.

    ``size`` defaults to the images' own height and width (CIFAR: pad 4, crop back to 32); the
    ImageNet path uses ``padding=0`` and a smaller ``size`` (256 → 224). Works on a batch
    ``(B, C, H, W)`` of any dtype on any device in a few tensor operations (no per-image Python
    loop); ``generator`` (on the images' device) draws offsets and flips, so a seeded generator
    reproduces the augmentation exactly. Equals :func:`crop_flip` of the images with the choices of
    :func:`draw_crop_flip` (same generator, same arguments).
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a (B, C, H, W) torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"images must be a (B, C, H, W) tensor, got shape {tuple(images.shape)}")
    choices = draw_crop_flip(images.shape[0], images.shape[-2:], generator, padding=padding, size=size, flip=flip,
                             device=images.device)
    return crop_flip(images, choices, padding=padding, size=size)


def draw_crop_flip(n: int, image_size, generator: torch.Generator, *, padding: int = 4, size: int | None = None,
                   flip: bool = True, device=None) -> tuple:
    """The random choices of :func:`random_crop_flip` for ``n`` images of ``image_size = (H, W)``.

    Returns ``(top, left, mirror)``: crop offsets in the padded image and flip flags (``None`` when
    ``flip=False``), one per image, drawn in that order from ``generator``. Slicing the choices of a
    whole batch gives the choices of any part of it, so processes that each draw the whole batch and
    keep their own share augment it exactly as one process does.
    """
    padding = nonneg_int(padding, "padding")
    h, w = (int(v) for v in image_size)
    size_h, size_w = (h, w) if size is None else (size, size)
    if not (0 < size_h <= h + 2 * padding and 0 < size_w <= w + 2 * padding):
        raise ValueError(f"size must be in [1, {min(h, w) + 2 * padding}], got {size}")
    top = torch.randint(0, h + 2 * padding - size_h + 1, (n,), generator=generator, device=device)
    left = torch.randint(0, w + 2 * padding - size_w + 1, (n,), generator=generator, device=device)
    mirror = torch.rand(n, generator=generator, device=device) < 0.5 if flip else None
    return top, left, mirror


def crop_flip(images: torch.Tensor, choices: tuple, *, padding: int = 4, size: int | None = None) -> torch.Tensor:
    """Crop the zero-padded ``(B, C, H, W)`` images at ``choices = (top, left, mirror)`` and flip the mirrored ones."""
    top, left, mirror = choices
    padding = nonneg_int(padding, "padding")
    b, c, h, w = images.shape
    size_h, size_w = (h, w) if size is None else (size, size)
    device = images.device
    padded = F.pad(images, (padding, padding, padding, padding)) if padding else images
    rows = (top[:, None] + torch.arange(size_h, device=device))[:, None, :, None]
    cols = (left[:, None] + torch.arange(size_w, device=device))[:, None, None, :]
    batch = torch.arange(b, device=device)[:, None, None, None]
    channel = torch.arange(c, device=device)[None, :, None, None]
    images = padded[batch, channel, rows, cols]
    if mirror is not None:
        images = torch.where(mirror[:, None, None, None], images.flip(-1), images)
    return images


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size``×``size`` window of a batch ``(B, C, H, W)`` (evaluation counterpart of the crop)."""
    h, w = images.shape[-2:]
    if not 0 < size <= min(h, w):
        raise ValueError(f"size must be in [1, {min(h, w)}], got {size}")
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top:top + size, left:left + size]
