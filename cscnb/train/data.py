"""Data for ``python -m cscnb.train``: every dataset behind one batch interface.

Batches are drawn from a permutation of the training set that depends only on ``(seed, epoch)``;
step ``s`` takes the global batch ``perm[s·B:(s+1)·B]`` (incomplete last batch dropped) and DDP
rank ``r`` of ``W`` takes its ``r``-th slice of ``B/W`` samples. With ``augment``, the crops and flips
of every *global* batch are drawn, in step order, from one generator of ``(seed, epoch)`` that every
process runs through in full (a few random numbers per image), and each process keeps its slice. So
one process and ``W`` processes see the same augmented global batches, and a run started at step
``s`` (``start_step``) sees the same batches as an uninterrupted one.

Inputs are normalized per channel, either with statistics of the training part computed here
(``normalize="computed"``) or with the constants of the SDNet authors' recipe (``"recipe"``:
:data:`cscnb.data.cifar.CIFAR_RECIPE_MEAN` / ``_STD`` for CIFAR, the usual ImageNet mean and std).
With ``val_fraction > 0`` a seeded, stratified validation part is held out of the training set
(:meth:`cscnb.data.split.Split.with_validation`) for model selection; the test set is only reported.

ImageNet folders (:class:`FolderData`) go through the authors' data path,
:func:`cscnb.data.imagenet.build_imagenet_loaders`: ``RandomResizedCrop`` + flip for training,
``Resize`` + ``CenterCrop`` for evaluation, decoded by persistent DataLoader workers with the same
per-epoch permutation and batch split, every crop seeded per image, so resuming stays exact there too.
"""
from __future__ import annotations

import torch

from ..data.cifar import CIFAR_RECIPE_MEAN, CIFAR_RECIPE_STD, center_crop, crop_flip, draw_crop_flip, load_cifar
from .config import TrainConfig

__all__ = ["TrainData", "FolderData", "build_data", "epoch_generator", "IMAGENET_MEAN", "IMAGENET_STD"]

#: the ImageNet per-channel mean and std (pixel values in [0, 1]) of the authors' ImageNet recipe
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def epoch_generator(seed: int, epoch: int, rank: int = 0, device="cpu") -> torch.Generator:
    """A generator seeded by ``(seed, epoch, rank)``: shuffles and augmentation never depend on history."""
    return torch.Generator(device=device).manual_seed(((seed * 1_000_003 + epoch) * 1_009 + rank) % (2 ** 63))


class TrainData:
    """A train/test split held as tensors on the device, optionally uint8 and augmented there."""

    def __init__(self, x_train, y_train, x_test, y_test, *, n_classes: int, dtype, augment: bool, seed: int,
                 crop_size: int | None = None, padding: int = 4, x_val=None, y_val=None, mean_std=None):
        self.x_train, self.y_train, self.x_test, self.y_test = x_train, y_train, x_test, y_test
        self.x_val, self.y_val = x_val, y_val
        self.n_classes, self.dtype, self.augment, self.seed = n_classes, dtype, augment, seed
        self.crop_size, self.padding = crop_size, padding
        self.in_channels, self.dim = x_train.shape[1], x_train.ndim - 2
        shape = (1, -1) + (1,) * self.dim
        if mean_std is not None:  # given per-channel constants, in the units of x_train
            self.mean, self.std = (torch.tensor(v, dtype=dtype, device=x_train.device).view(shape) for v in mean_std)
        else:  # per-channel statistics of the training part, computed (in float64) rather than typed in
            dims = [0] + list(range(2, x_train.ndim))
            as_float = x_train.to(torch.float64)
            self.mean = as_float.mean(dim=dims, keepdim=True)[0:1].to(dtype)
            self.std = as_float.std(dim=dims, keepdim=True)[0:1].clamp_min(1e-12).to(dtype)

    @property
    def has_validation(self) -> bool:
        return self.x_val is not None

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    def steps_per_epoch(self, batch_size: int) -> int:
        return self.n_train // batch_size

    def _prepare(self, x: torch.Tensor, choices, train: bool) -> torch.Tensor:
        if train and self.augment:  # choices: this share's (top, left, mirror) from draw_crop_flip
            x = crop_flip(x, choices, padding=self.padding, size=self.crop_size)
        elif self.crop_size is not None:
            x = center_crop(x, self.crop_size)
        return (x.to(self.dtype) - self.mean) / self.std

    def train_batches(self, epoch: int, batch_size: int, rank: int = 0, world: int = 1, start_step: int = 0):
        """Yield this rank's ``(x, y)`` share of every global batch of ``epoch`` from step ``start_step`` on."""
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} must be divisible by the number of processes {world}")
        device = self.y_train.device
        perm = torch.randperm(self.n_train, generator=epoch_generator(self.seed, epoch)).to(device)
        # one augmentation generator of (seed, epoch), the same in every process: each process draws the
        # crops and flips of the whole global batch and keeps its slice
        augment_generator = epoch_generator(self.seed, epoch, 1, device=device)
        share = batch_size // world
        mine = slice(rank * share, (rank + 1) * share)  # this process's slice of every global batch
        for step in range(self.steps_per_epoch(batch_size)):
            choices = None
            if self.augment:  # the global batch's choices, drawn also for skipped steps (exact resume)
                choices = draw_crop_flip(batch_size, self.x_train.shape[-2:], augment_generator, padding=self.padding,
                                         size=self.crop_size, device=device)
                choices = tuple(None if c is None else c[mine] for c in choices)
            if step < start_step:
                continue
            index = perm[step * batch_size:(step + 1) * batch_size][mine]
            yield self._prepare(self.x_train[index], choices, True), self.y_train[index]

    def test_batches(self, batch_size: int, rank: int = 0, world: int = 1, split: str = "test"):
        """This rank's ``(x, y)`` batches of the test set (``split="val"``: validation), samples ``r, r+W, …``."""
        x, y = (self.x_val, self.y_val) if split == "val" else (self.x_test, self.y_test)
        x, y = x[rank::world], y[rank::world]
        for start in range(0, len(y), batch_size):
            yield self._prepare(x[start:start + batch_size], None, False), y[start:start + batch_size]


class FolderData:
    """ImageNet folders through the authors' data path (:func:`cscnb.data.imagenet.build_imagenet_loaders`).

    The loaders are built once per run for the trainer's global batch, rank and world: training images
    get ``RandomResizedCrop(image_size)`` + flip (``augment=False``: the evaluation transform), evaluation
    images ``Resize(round(image_size·8/7))`` (256 for 224) + ``CenterCrop(image_size)``, every crop and flip
    seeded by ``(seed, epoch, index)``, decoded by ``config.workers`` persistent workers per process (pinned
    memory on CUDA). Batches arrive as uint8 and are normalized on the device: with the ImageNet mean/std
    (``normalize="recipe"``) or with per-channel statistics of up to 512 training images drawn with the
    run's seed, under the evaluation transform (``"computed"``). Same interface as :class:`TrainData`.
    """

    in_channels, dim, has_validation = 3, 2, False

    def __init__(self, config: TrainConfig, device, rank: int = 0, world: int = 1):
        from ..data.imagenet import build_imagenet_loaders
        self.device, self.dtype, self.seed = torch.device(device), getattr(torch, config.dtype), config.seed
        self.workers, self.augment, self.crop_size = config.workers, config.augment, config.image_size
        self.batch_size, self.rank, self.world = config.batch_size, rank, world
        self.eval_batch_size = max(config.batch_size, 256)  # what cscnb.train.step.evaluate asks for
        self.loaders = build_imagenet_loaders(
            config.data_dir, config.batch_size, config.workers, image_size=config.image_size,
            resize=round(config.image_size * 8 / 7), seed=config.seed, rank=rank, world=world,
            eval_batch_size=self.eval_batch_size, pin_memory=self.device.type == "cuda", augment=config.augment)
        self.n_classes = len(self.loaders.classes)
        self.n_train = len(self.loaders.train.dataset)
        if config.normalize == "recipe":  # the recipe's constants are for pixels in [0, 1]; ours are 0..255
            mean, std = (torch.tensor([255 * v for v in values], dtype=torch.float64)
                         for values in (IMAGENET_MEAN, IMAGENET_STD))
        elif config.normalize == "computed":
            mean, std = self._computed_statistics()
        else:
            raise ValueError(f"normalize must be 'recipe' or 'computed' for ImageNet, got {config.normalize!r}")
        self.mean, self.std = (v.to(self.dtype).view(1, 3, 1, 1).to(self.device) for v in (mean, std))

    def _computed_statistics(self) -> tuple:
        """Per-channel mean and std (float64) of up to 512 training images under the evaluation transform."""
        from PIL import Image
        samples, transform = self.loaders.train.dataset.samples, self.loaders.val.dataset.transform
        chosen = torch.randperm(len(samples), generator=epoch_generator(self.seed, -1))[:512].tolist()
        images = []
        for index in chosen:
            with Image.open(samples[index][0]) as image:
                images.append(transform(image.convert("RGB")))
        pixels = torch.stack(images).to(torch.float64).transpose(0, 1).reshape(3, -1)
        return pixels.mean(dim=1), pixels.std(dim=1).clamp_min(1e-12)

    def steps_per_epoch(self, batch_size: int) -> int:
        return self.n_train // batch_size

    def _loader(self, train: bool, batch_size: int, rank: int, world: int):
        """The run's persistent loader when built for these arguments, else a one-off one on the same images."""
        from torch.utils.data import DataLoader

        from ..data.imagenet import EpochBatchSampler
        loader = self.loaders.train if train else self.loaders.val
        built = self.batch_size if train else self.eval_batch_size
        if (batch_size, rank, world) == (built, self.rank, self.world):
            return loader, (self.loaders.train_sampler if train else loader.batch_sampler)
        sampler = EpochBatchSampler(len(loader.dataset), batch_size, seed=self.seed, rank=rank, world=world,
                                    shuffle=train)
        return DataLoader(loader.dataset, batch_sampler=sampler, num_workers=self.workers,
                          collate_fn=loader.collate_fn, pin_memory=loader.pin_memory), sampler

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return (x.to(self.device, non_blocking=True).to(self.dtype) - self.mean) / self.std

    def train_batches(self, epoch: int, batch_size: int, rank: int = 0, world: int = 1, start_step: int = 0):
        """Yield this rank's ``(x, y)`` share of every global batch of ``epoch`` from step ``start_step`` on."""
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} must be divisible by the number of processes {world}")
        loader, sampler = self._loader(True, batch_size, rank, world)
        sampler.set_epoch(epoch, start_step)
        for x, y in loader:
            yield self._prepare(x), y.to(self.device, non_blocking=True)

    def test_batches(self, batch_size: int, rank: int = 0, world: int = 1, split: str = "test"):
        """This rank's ``(x, y)`` batches of the ``val/`` folder (the test set here), samples ``r, r+W, …``."""
        if split != "test":
            raise ValueError(f"split {split!r}: the ImageNet folders have no validation carve; use split='test'")
        loader, _ = self._loader(False, batch_size, rank, world)
        for x, y in loader:
            yield self._prepare(x), y.to(self.device, non_blocking=True)


def build_data(config: TrainConfig, device, rank: int = 0, world: int = 1) -> TrainData | FolderData:
    """The dataset of ``config`` on ``device`` (with its validation part when ``config.val_fraction > 0``).

    ``rank`` and ``world`` (this process and the number of DDP processes) size the ImageNet loaders.
    """
    dtype = getattr(torch, config.dtype)
    if config.dataset == "digits":
        from ..data.digits import load_digits
        split = load_digits(seed=config.seed, dtype=dtype, device=device, val_fraction=config.val_fraction)
        mean_std, augment = None, config.augment
    elif config.dataset == "mnist1d":
        from ..data.mnist1d import load_mnist1d
        split = load_mnist1d(seed=config.seed, num_samples=config.num_samples, dtype=dtype, device=device,
                             val_fraction=config.val_fraction, val_seed=config.seed)
        mean_std, augment = None, False
    elif config.dataset in ("cifar10", "cifar100"):
        split = load_cifar(config.data_dir, config.dataset, device=device)
        if config.val_fraction:
            split = split.with_validation(config.val_fraction, seed=config.seed)
        mean_std = None
        if config.normalize == "recipe":  # the recipe's constants are for pixels in [0, 1]; ours are 0..255
            mean_std = tuple(tuple(255 * v for v in values) for values in (CIFAR_RECIPE_MEAN, CIFAR_RECIPE_STD))
        augment = config.augment
    else:
        return FolderData(config, device, rank, world)
    return TrainData(split.x_train, split.y_train, split.x_test, split.y_test, n_classes=split.num_classes,
                     dtype=dtype, augment=augment, seed=config.seed, x_val=split.x_val, y_val=split.y_val,
                     mean_std=mean_std)
