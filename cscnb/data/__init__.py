"""Data sets, all local or generated (nothing is downloaded).

* :mod:`~cscnb.data.digits` — the scikit-learn 8×8 digits, stratified and standardized (chapters 2, 4,
  5, 8 and 11–14);
* :mod:`~cscnb.data.mnist1d` — MNIST-1D generated offline (chapters 7 and 11);
* :mod:`~cscnb.data.planted` — signals with planted sparse codes for any dictionary (chapters 3, 6, 10,
  13 and 14);
* :mod:`~cscnb.data.planted_stripe` — convolutional codes with a bounded stripe norm (chapter 10);
* :mod:`~cscnb.data.split` — :class:`Split`, the one train / validation / test container every loader
  returns (validation parts carved stratified and seeded, for model selection without test labels);
* :mod:`~cscnb.data.cifar10c` — CIFAR-10-C (the official ``.npy`` layout) from a local folder, for the
  robustness evaluation of trained runs;
* :mod:`~cscnb.data.cifar` — CIFAR-10/100 binary files from a local path, with on-device augmentation, for
  ``python -m cscnb.train``;
* :mod:`~cscnb.data.imagenet` — ImageNet-style image folders and their loaders (the authors' random resized
  crop and flip for training, resize and centre crop for evaluation; seeded, persistent workers).
"""
from .cifar import CIFAR_FILES, center_crop, decode_cifar_records, load_cifar, random_crop_flip
from .cifar10c import CIFAR10C_CORRUPTIONS, available_corruptions, load_cifar10c
from .digits import load_digits
from .imagenet import IMAGE_SUFFIXES, ImageFolder, ImageNetLoaders, build_imagenet_loaders
from .mnist1d import load_mnist1d
from .planted import PlantedCodes, planted_sparse_codes
from .planted_stripe import planted_stripe_codes
from .split import Split, stratified_mask

__all__ = ["Split", "stratified_mask", "load_digits", "load_mnist1d", "PlantedCodes", "planted_sparse_codes",
           "planted_stripe_codes",

           "load_cifar", "load_cifar10c", "available_corruptions", "CIFAR10C_CORRUPTIONS", "decode_cifar_records",
           "random_crop_flip", "center_crop", "CIFAR_FILES",
           "ImageFolder", "IMAGE_SUFFIXES", "ImageNetLoaders", "build_imagenet_loaders"]
