r"""ImageNet-style image folders (``<root>/<split>/<class>/*.JPEG``) read with Pillow, and their loaders.

The SDNet authors' ImageNet recipe :cite:p:`sdnet_repository` trains on ``RandomResizedCrop(224)`` plus a
horizontal flip and evaluates on ``Resize(256)`` then ``CenterCrop(224)``. torchvision is not installed
beside this project's torch, so both are written here with Pillow, following torchvision's *documented*
behaviour (our implementation):

* :class:`RandomResizedCropFlip` — a window of area fraction :math:`s \sim U(0.08, 1)` and aspect ratio
  :math:`r` with :math:`\log r \sim U(\log\tfrac34, \log\tfrac43)`, width :math:`\operatorname{round}\sqrt{sAr}`
  and height :math:`\operatorname{round}\sqrt{sA/r}` (:math:`A` the image's area), placed uniformly; up to
  10 draws until it fits, else the central window of the largest allowed aspect ratio. The window is
  resized to 224×224 (bilinear), then flipped with probability ½ (:func:`random_resized_crop_box`);
* :class:`ResizeCenterCrop` — the shorter side resized to 256 (the longer one to
  :math:`\lfloor 256\cdot\text{long}/\text{short}\rfloor`, bilinear), then the central 224×224 window at
  offsets :math:`\operatorname{round}((H - 224)/2)`, :math:`\operatorname{round}((W - 224)/2)`.

**Seeded.** The random numbers of one image depend only on ``(seed, epoch, index)``
(``numpy.random.default_rng([seed, epoch, index])``), never on the worker that decodes it, the number of
workers or the process: batches are bitwise the same with 0 or 16 workers, on one GPU or eight. The
sampler (:class:`EpochBatchSampler`) hands ``(epoch, index)`` keys to the dataset, so persistent workers
(which keep their own copy of the dataset) always know the epoch.

:func:`build_imagenet_loaders` builds both ``DataLoader`` once per run: persistent workers, a prefetch
depth, a configurable number of workers per process, the global batch split over processes as in
:mod:`cscnb.train.data` (the permutation of epoch :math:`e` is that of ``epoch_generator(seed, e)``).
Images come out as uint8 ``(B, 3, 224, 224)``; normalization runs on the device. The decoding rate per
core is measured by ``benchmarks/bench_imagenet_loader.py``.

:class:`ImageFolder` without a ``transform`` keeps the fixed decoding of earlier versions (shorter side
resized to ``resize``, the central square kept) for callers that crop on the device.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..core.validation import check_bool, check_number, nonneg_int, positive_int

__all__ = ["ImageFolder", "IMAGE_SUFFIXES", "RandomResizedCropFlip", "ResizeCenterCrop", "random_resized_crop_box",
           "resize_shorter_side", "EpochBatchSampler", "ImageNetLoaders", "build_imagenet_loaders", "image_rng"]

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def image_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one image's augmentation: a function of ``(seed, epoch, index)`` only."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def random_resized_crop_box(width: int, height: int, rng: np.random.Generator, *, scale=(0.08, 1.0),
                            ratio=(3 / 4, 4 / 3)) -> tuple:
    r"""``(left, top, w, h)`` of a random window of area fraction in ``scale`` and aspect ratio in ``ratio``.

    Up to 10 draws of :math:`s \sim U(\text{scale})`, :math:`\log r \sim U(\log\text{ratio})`,
    :math:`w = \operatorname{round}\sqrt{s\,WH\,r}`, :math:`h = \operatorname{round}\sqrt{s\,WH/r}`; the first that fits
    is placed uniformly. Otherwise the central window of the whole image clipped to the ratio range
    (torchvision's documented ``RandomResizedCrop``; our implementation). The authors' ImageNet training crop
    (chapter 14, the recipe comparison).
    """
    area = width * height
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_low, log_high))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
            return left, top, w, h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def resize_shorter_side(width: int, height: int, size: int) -> tuple:
    """``(new_width, new_height)`` with the shorter side ``size`` and the longer ``floor(size·long/short)``."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def _to_tensor(image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()  # (3, H, W)


class RandomResizedCropFlip:
    """Training transform: random resized crop to ``size`` (bilinear), then a horizontal flip with probability ½.

    The authors' ImageNet training augmentation (chapter 14, recipe comparison); ``rng`` from :func:`image_rng`.
    """

    def __init__(self, size: int = 224, *, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip: bool = True):
        self.size = positive_int(size, "size")
        self.scale = _interval(scale, "scale", upper=1.0)
        self.ratio = _interval(ratio, "ratio")
        self.flip = check_bool(flip, "flip")

    def __call__(self, image, rng: np.random.Generator) -> torch.Tensor:
        from PIL import Image
        left, top, w, h = random_resized_crop_box(*image.size, rng, scale=self.scale, ratio=self.ratio)
        image = image.resize((self.size, self.size), Image.BILINEAR, box=(left, top, left + w, top + h))
        if self.flip and rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        return _to_tensor(image)


class ResizeCenterCrop:
    """Evaluation transform: shorter side to ``resize`` (bilinear), then the central ``size``×``size`` window.

    The authors' ImageNet evaluation crop (chapter 14, recipe comparison); deterministic (``rng`` is unused).
    """

    def __init__(self, resize: int = 256, size: int = 224):
        self.resize, self.size = positive_int(resize, "resize"), positive_int(size, "size")
        if self.size > self.resize:
            raise ValueError(f"size must not exceed resize, got size={size}, resize={resize}")

    def __call__(self, image, rng=None) -> torch.Tensor:
        from PIL import Image
        image = image.resize(resize_shorter_side(*image.size, self.resize), Image.BILINEAR)
        w, h = image.size
        top, left = int(round((h - self.size) / 2)), int(round((w - self.size) / 2))
        return _to_tensor(image.crop((left, top, left + self.size, top + self.size)))


def _interval(value, name: str, upper: float | None = None) -> tuple:
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise TypeError(f"{name} must be a pair (low, high), got {value!r}")
    low = check_number(value[0], f"{name}[0]", minimum=0, open_minimum=True)
    high = check_number(value[1], f"{name}[1]", minimum=low, maximum=upper)
    return low, high


def _class_folders(folder: str) -> list:
    return sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))


class ImageFolder(Dataset):
    """The labelled images under ``root/split``: one sub-folder per class, classes sorted by name.

    Args:
        root, split: the images are ``root/split/<class>/*.JPEG`` (also ``.jpg``, ``.png``).
        resize: without ``transform``, the shorter side is resized to ``resize`` and the central square
            kept (uint8 ``(3, resize, resize)``).
        transform: a callable ``(PIL image, numpy Generator) -> uint8 tensor`` such as
            :class:`RandomResizedCropFlip` or :class:`ResizeCenterCrop`.
        classes: the class list to use; the split's folders must be exactly these, otherwise ``ValueError``
            names the missing and extra ones (labels must not shift). Default: for a split other than
            ``train``, the classes of ``root/train`` when that folder exists; else the split's own folders.
        seed: seeds the transform's random numbers together with the epoch and the index.

    An item is ``dataset[index]`` or ``dataset[(epoch, index)]``: ``(image, label)``.
    """

    def __init__(self, root: str, split: str = "train", *, resize: int = 256, transform=None, classes=None,
                 seed: int = 0):
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a path, got {type(root).__name__}")
        self.resize, self.seed = positive_int(resize, "resize"), nonneg_int(seed, "seed")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable (image, rng) -> tensor, got {type(transform).__name__}")
        self.transform = transform
        folder = os.path.join(root, split)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"expected image folders {folder!r}/<class>/*.JPEG (ImageNet layout); not found")
        found = _class_folders(folder)
        if classes is None and split != "train" and os.path.isdir(os.path.join(root, "train")):
            classes = _class_folders(os.path.join(root, "train"))  # labels must mean the same in every split
        if classes is not None:
            classes = [str(c) for c in classes]
            missing, extra = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
            if missing or extra:
                raise ValueError(f"classes: {folder!r} must hold exactly the given classes; missing {missing[:5]}"
                                 f"{' ...' if len(missing) > 5 else ''}, extra {extra[:5]}"
                                 f"{' ...' if len(extra) > 5 else ''}")
            found = classes
        if not found:
            raise FileNotFoundError(f"{folder!r} has no class sub-folders (expected {folder}/<class>/*.JPEG)")
        self.classes = found
        self.samples = [(os.path.join(folder, c, f), label) for label, c in enumerate(self.classes)
                        for f in sorted(os.listdir(os.path.join(folder, c))) if f.lower().endswith(IMAGE_SUFFIXES)]
        if not self.samples:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder!r}/<class>/")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key) -> tuple:
        from PIL import Image  # Pillow is needed only when images are read
        epoch, index = key if isinstance(key, tuple) else (0, key)
        path, label = self.samples[index]
        with Image.open(path) as image:
            image = image.convert("RGB")
            if self.transform is not None:
                return self.transform(image, image_rng(self.seed, epoch, index)), label
            w, h = image.size
            scale = self.resize / min(w, h)
            image = image.resize((max(self.resize, round(w * scale)), max(self.resize, round(h * scale))),
                                 Image.BILINEAR)
            w, h = image.size
            left, top = (w - self.resize) // 2, (h - self.resize) // 2
            return _to_tensor(image.crop((left, top, left + self.resize, top + self.resize))), label


def _permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    # the permutation of cscnb.train.data.epoch_generator(seed, epoch) (rank 0), so both paths batch alike
    generator = torch.Generator().manual_seed(((seed * 1_000_003 + epoch) * 1_009) % (2 ** 63))
    return torch.randperm(n, generator=generator)


class EpochBatchSampler(Sampler):
    """This process's share of every global batch, as lists of ``(epoch, index)`` keys.

    Training (``shuffle=True``): the permutation of ``(seed, epoch)``, global batch ``s`` is
    ``perm[s·B:(s+1)·B]`` (the incomplete last one dropped) and rank ``r`` of ``W`` takes its ``r``-th
    slice of ``B/W``. Evaluation (``shuffle=False``): rank ``r`` takes samples ``r, r+W, …`` in batches of
    ``B`` (every sample once). :meth:`set_epoch` selects the epoch (and a first step, to resume).
    """

    def __init__(self, n: int, batch_size: int, *, seed: int = 0, rank: int = 0, world: int = 1,
                 shuffle: bool = True):
        self.n, self.batch_size = positive_int(n, "n"), positive_int(batch_size, "batch_size")
        self.seed, self.world = nonneg_int(seed, "seed"), positive_int(world, "world")
        self.rank = nonneg_int(rank, "rank")
        if self.rank >= self.world:
            raise ValueError(f"rank must be below world={world}, got {rank}")
        self.shuffle = check_bool(shuffle, "shuffle")
        if self.shuffle and self.batch_size % self.world:
            raise ValueError(f"batch_size {batch_size} must be divisible by the number of processes {world}")
        self.epoch = self.start_step = 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = nonneg_int(epoch, "epoch"), nonneg_int(start_step, "start_step")

    def _steps(self) -> int:
        return self.n // self.batch_size if self.shuffle else math.ceil(len(range(self.rank, self.n, self.world))
                                                                         / self.batch_size)

    def __len__(self) -> int:
        return max(self._steps() - self.start_step, 0)

    def __iter__(self):
        if not self.shuffle:
            mine = list(range(self.rank, self.n, self.world))
            for start in range(self.start_step * self.batch_size, len(mine), self.batch_size):
                yield [(self.epoch, i) for i in mine[start:start + self.batch_size]]
            return
        perm, share = _permutation(self.n, self.seed, self.epoch).tolist(), self.batch_size // self.world
        for step in range(self.start_step, self._steps()):
            first = step * self.batch_size + self.rank * share
            yield [(self.epoch, i) for i in perm[first:first + share]]


def _collate(items: list) -> tuple:
    return torch.stack([image for image, _ in items]), torch.tensor([label for _, label in items], dtype=torch.int64)


def _one_thread(worker_id: int) -> None:
    torch.set_num_threads(1)  # a decoding worker is one core; torch's own pool would oversubscribe


@dataclass
class ImageNetLoaders:
    """The two loaders of a run, built once: ``train`` (augmented, per-epoch order) and ``val``."""
    train: DataLoader
    val: DataLoader
    train_sampler: EpochBatchSampler
    classes: list

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Select the epoch (and first step) the next ``iter(loaders.train)`` yields."""
        self.train_sampler.set_epoch(epoch, start_step)


def build_imagenet_loaders(data_dir, batch_size: int, workers: int, *, image_size: int = 224, resize: int = 256,
                           seed: int = 0, rank: int = 0, world: int = 1, eval_batch_size: int | None = None,
                           prefetch_factor: int = 4, pin_memory: bool = False, persistent_workers: bool = True,
                           scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip: bool = True,
                           augment: bool = True) -> ImageNetLoaders:
    r"""The training and evaluation loaders of ``data_dir/{train,val}/<class>/*`` (the authors' ImageNet recipe).

    Args:
        data_dir: folder with ``train/`` and ``val/``; ``val`` must hold the training classes.
        batch_size: the GLOBAL training batch; this process (``rank`` of ``world``) loads ``batch_size/world``.
        workers: decoding worker processes of this process (0: decode in the main process).
        image_size, resize: crop size, and the shorter side before the evaluation centre crop (224, 256).
        seed: the run's seed (epoch order and every crop and flip).
        rank: this process's index, :math:`0 \le` ``rank`` :math:`<` ``world`` (default 0; checked when the
            samplers are built, after the image folders are read).
        world: the number of processes (default 1).
        eval_batch_size: per-process evaluation batch (default ``batch_size/world``).
        prefetch_factor: batches each worker decodes ahead.
        pin_memory: page-locked batches for asynchronous copies to a GPU (default False).
        persistent_workers: keep the workers between epochs (default True).
        scale, ratio, flip: of the training crop (torchvision's documented defaults).
        augment: ``False`` gives the training images the evaluation transform (still shuffled per epoch).

    Returns:
        :class:`ImageNetLoaders`; call ``loaders.set_epoch(e)`` before iterating ``loaders.train``.
    """
    workers, prefetch_factor = nonneg_int(workers, "workers"), positive_int(prefetch_factor, "prefetch_factor")
    batch_size, world = positive_int(batch_size, "batch_size"), positive_int(world, "world")
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} must be divisible by the number of processes {world}")
    pin_memory, persistent_workers = check_bool(pin_memory, "pin_memory"), check_bool(persistent_workers,
                                                                                      "persistent_workers")
    evaluation = ResizeCenterCrop(resize, image_size)
    training = RandomResizedCropFlip(image_size, scale=scale, ratio=ratio, flip=flip)
    train_set = ImageFolder(data_dir, "train", transform=training if check_bool(augment, "augment") else evaluation,
                            seed=seed)
    val_set = ImageFolder(data_dir, "val", transform=evaluation, classes=train_set.classes, seed=seed)
    eval_batch = batch_size // world if eval_batch_size is None else positive_int(eval_batch_size, "eval_batch_size")
    train_sampler = EpochBatchSampler(len(train_set), batch_size, seed=seed, rank=rank, world=world, shuffle=True)
    val_sampler = EpochBatchSampler(len(val_set), eval_batch, seed=seed, rank=rank, world=world, shuffle=False)
    options = dict(num_workers=workers, collate_fn=_collate, pin_memory=pin_memory)
    if workers:
        options.update(persistent_workers=persistent_workers, prefetch_factor=prefetch_factor,
                       worker_init_fn=_one_thread)
    return ImageNetLoaders(DataLoader(train_set, batch_sampler=train_sampler, **options),
                           DataLoader(val_set, batch_sampler=val_sampler, **options), train_sampler,
                           list(train_set.classes))
