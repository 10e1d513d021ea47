"""ImageNet-style image folders (``<root>/<split>/<class>/*.JPEG``) read with Pillow.

Each image is decoded to RGB, its shorter side resized to ``resize`` pixels (bilinear), and the
central ``resize``×``resize`` square kept, giving uint8 tensors ``(3, resize, resize)``. The
trainer then crops them on the device — a random ``image_size`` crop plus horizontal flip for
training, the central crop for evaluation (:func:`cscnb.data.cifar.random_crop_flip`,
:func:`cscnb.data.cifar.center_crop`), with the usual ratio ``resize = image_size · 8/7`` (256 for 224).
"""
from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from ..core.validation import positive_int

__all__ = ["ImageFolder", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


class ImageFolder(Dataset):
    """The labelled images under ``root/split``: one sub-folder per class, classes sorted by name."""

    def __init__(self, root: str, split: str = "train", *, resize: int = 256):
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a path, got {type(root).__name__}")
        resize = positive_int(resize, "resize")
        folder = os.path.join(root, split)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"expected image folders {folder!r}/<class>/*.JPEG (ImageNet layout); not found")
        self.classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
        if not self.classes:
            raise FileNotFoundError(f"{folder!r} has no class sub-folders (expected {folder}/<class>/*.JPEG)")
        self.samples = [(os.path.join(folder, c, f), label) for label, c in enumerate(self.classes)
                        for f in sorted(os.listdir(os.path.join(folder, c))) if f.lower().endswith(IMAGE_SUFFIXES)]
        if not self.samples:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder!r}/<class>/")
        self.resize = resize

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple:
        from PIL import Image  # Pillow is needed only when images are read
        path, label = self.samples[index]
        with Image.open(path) as image:
            image = image.convert("RGB")
            w, h = image.size
            scale = self.resize / min(w, h)
            image = image.resize((max(self.resize, round(w * scale)), max(self.resize, round(h * scale))),
                                 Image.BILINEAR)
            w, h = image.size
            left, top = (w - self.resize) // 2, (h - self.resize) // 2
            image = image.crop((left, top, left + self.resize, top + self.resize))
            pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())  # (H, W, 3)
        return pixels.permute(2, 0, 1).contiguous(), label
