"""Data for ``python -m cscnb.train``: every dataset behind one batch interface.

Batches are drawn from a permutation of the training set that depends only on ``(seed, epoch)``;
step ``s`` takes the global batch ``perm[s·B:(s+1)·B]`` (incomplete last batch dropped) and DDP
rank ``r`` of ``W`` takes its ``r``-th slice of ``B/W`` samples. So one process and ``W`` processes
see the same global batches, and a resumed run sees the same batches as an uninterrupted one.

Inputs are normalized per channel, either with statistics of the training part computed here
(``normalize="computed"``) or with the constants of the SDNet authors' recipe (``"recipe"``:
:data:`cscnb.data.cifar.CIFAR_RECIPE_MEAN` / ``_STD`` for CIFAR, the usual ImageNet mean and std).
With ``val_fraction > 0`` a seeded, stratified validation part is held out of the training set
(:meth:`cscnb.data.split.Split.with_validation`) for model selection; the test set is only reported.
"""
from __future__ import annotations

import torch

from ..data.cifar import CIFAR_RECIPE_MEAN, CIFAR_RECIPE_STD, center_crop, load_cifar, random_crop_flip
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

    def _prepare(self, x: torch.Tensor, generator, train: bool) -> torch.Tensor:
        if train and self.augment:
            x = random_crop_flip(x, generator, padding=self.padding, size=self.crop_size)
        elif self.crop_size is not None:
            x = center_crop(x, self.crop_size)
        return (x.to(self.dtype) - self.mean) / self.std

    def train_batches(self, epoch: int, batch_size: int, rank: int = 0, world: int = 1, start_step: int = 0):
        """Yield this rank's ``(x, y)`` share of every global batch of ``epoch``."""
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} must be divisible by the number of processes {world}")
        device = self.y_train.device
        perm = torch.randperm(self.n_train, generator=epoch_generator(self.seed, epoch)).to(device)
        augment_generator = epoch_generator(self.seed, epoch, rank + 1, device=device)
        share = batch_size // world
        for step in range(start_step, self.steps_per_epoch(batch_size)):
            index = perm[step * batch_size + rank * share: step * batch_size + (rank + 1) * share]
            yield self._prepare(self.x_train[index], augment_generator, True), self.y_train[index]

    def test_batches(self, batch_size: int, rank: int = 0, world: int = 1, split: str = "test"):
        """This rank's ``(x, y)`` batches of the test set (``split="val"``: validation), samples ``r, r+W, …``."""
        x, y = (self.x_val, self.y_val) if split == "val" else (self.x_test, self.y_test)
        x, y = x[rank::world], y[rank::world]
        for start in range(0, len(y), batch_size):
            yield self._prepare(x[start:start + batch_size], None, False), y[start:start + batch_size]


class FolderData(TrainData):
    """ImageNet folders: images decoded by DataLoader workers, cropped and normalized on the device."""

    def __init__(self, config: TrainConfig, device):
        from ..data.imagenet import ImageFolder
        resize = round(config.image_size * 8 / 7)
        self.train_set = ImageFolder(config.data_dir, "train", resize=resize)
        self.test_set = ImageFolder(config.data_dir, "val", resize=resize)
        if self.test_set.classes != self.train_set.classes:  # else every later label would shift silently
            missing = sorted(set(self.train_set.classes) ^ set(self.test_set.classes))
            raise ValueError(f"data_dir {config.data_dir!r}: train/ and val/ have different class folders "
                             f"(in one only: {missing[:5]}{' ...' if len(missing) > 5 else ''})")
        self.workers, self.device = config.workers, device
        # statistics from (up to) 512 training images drawn with the run's seed
        if config.normalize == "recipe":
            mean_std = tuple(tuple(255 * v for v in values) for values in (IMAGENET_MEAN, IMAGENET_STD))
            probe = self.train_set[0][0][None]
        else:  # statistics from (up to) 512 training images drawn with the run's seed
            mean_std = None
            sample = torch.randperm(len(self.train_set), generator=epoch_generator(config.seed, -1))[:512]
            probe = torch.stack([self.train_set[int(i)][0] for i in sample])
        super().__init__(probe, torch.zeros(len(self.train_set), dtype=torch.int64, device=device), probe[:0],
                         torch.zeros(0), n_classes=len(self.train_set.classes), dtype=getattr(torch, config.dtype),
                         augment=config.augment, seed=config.seed, crop_size=config.image_size, padding=0,
                         mean_std=mean_std)
        self.mean, self.std = self.mean.to(device), self.std.to(device)

    def _loader(self, dataset, indices, batch_size):
        from torch.utils.data import DataLoader
        return DataLoader(torch.utils.data.Subset(dataset, indices.tolist()), batch_size=batch_size,
                          num_workers=self.workers, pin_memory=self.device.type == "cuda", drop_last=False)

    def train_batches(self, epoch, batch_size, rank=0, world=1, start_step=0):
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} must be divisible by the number of processes {world}")
        perm = torch.randperm(self.n_train, generator=epoch_generator(self.seed, epoch))
        share, steps = batch_size // world, self.steps_per_epoch(batch_size)
        mine = perm[:steps * batch_size].view(steps, world, share)[start_step:, rank].reshape(-1)
        augment_generator = epoch_generator(self.seed, epoch, rank + 1, device=self.device)
        for x, y in self._loader(self.train_set, mine, share):
            yield self._prepare(x.to(self.device, non_blocking=True), augment_generator, True), y.to(self.device)

    def test_batches(self, batch_size, rank=0, world=1, split="test"):
        mine = torch.arange(rank, len(self.test_set), world)
        for x, y in self._loader(self.test_set, mine, batch_size):
            yield self._prepare(x.to(self.device, non_blocking=True), None, False), y.to(self.device)


def build_data(config: TrainConfig, device) -> TrainData:
    """The dataset of ``config`` on ``device`` (with its validation part when ``config.val_fraction > 0``)."""
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
        return FolderData(config, device)
    return TrainData(split.x_train, split.y_train, split.x_test, split.y_test, n_classes=split.num_classes,
                     dtype=dtype, augment=augment, seed=config.seed, x_val=split.x_val, y_val=split.y_val,
                     mean_std=mean_std)
