"""Data sets, all local or generated (nothing is downloaded).

* :mod:`~cscnb.data.digits` — the scikit-learn 8×8 digits, stratified and standardized (chapters 2, 4,
  5, 8 and 11–14);
* :mod:`~cscnb.data.mnist1d` — MNIST-1D generated offline (chapters 7 and 11);
* :mod:`~cscnb.data.planted` — signals with planted sparse codes for any dictionary (chapters 3, 6, 10,
  13 and 14);
* :mod:`~cscnb.data.cifar`, :mod:`~cscnb.data.imagenet` — CIFAR-10/100 binary files and ImageNet-style
  image folders from a local path, with on-device augmentation, for ``python -m cscnb.train``.
"""
from .cifar import CIFAR_FILES, CIFARSplit, center_crop, decode_cifar_records, load_cifar, random_crop_flip
from .digits import DigitsSplit, load_digits
from .imagenet import IMAGE_SUFFIXES, ImageFolder
from .mnist1d import MNIST1DSplit, load_mnist1d
from .planted import PlantedCodes, planted_sparse_codes

__all__ = ["DigitsSplit", "load_digits", "MNIST1DSplit", "load_mnist1d", "PlantedCodes", "planted_sparse_codes",
           "CIFARSplit", "load_cifar", "decode_cifar_records", "random_crop_flip", "center_crop", "CIFAR_FILES",
           "ImageFolder", "IMAGE_SUFFIXES"]
