r"""One container for every labelled data set: train / validation / test tensors.

Chapters choose hyper-parameters (λ, epochs, early stopping) on the **validation** part, carved
from the training data by :meth:`Split.with_validation` or the loaders' ``val_fraction``, and touch
the test part only to report. The carve is stratified and seeded, so it is the same on every run.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..core.validation import check_number, nonneg_int

__all__ = ["Split", "stratified_mask"]


@dataclass
class Split:
    """A labelled data set split into training, optional validation and test tensors.

    ``x_*`` hold the inputs with the batch first (images ``(N, C, H, W)``, 1-D signals ``(N, C, L)``),
    ``y_*`` the int64 labels ``0 .. num_classes - 1``. ``x_val``/``y_val`` are ``None`` until a
    validation part is carved. ``mean``/``std`` record a scalar standardisation, if the loader applied one.
    """
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    mean: float | None = None
    std: float | None = None

    @property
    def has_validation(self) -> bool:
        return self.x_val is not None

    def with_validation(self, fraction: float, seed: int = 0) -> Split:
        """A copy whose validation part is ``round(fraction · n_c)`` training samples of every class ``c``.

        The samples are drawn with a ``torch.Generator`` seeded by ``seed`` and removed from the training
        part; the test part is unchanged. Raises ``ValueError`` if a validation part exists already.
        """
        if self.has_validation:
            raise ValueError("this split has a validation part already")
        fraction = check_number(fraction, "fraction", minimum=0, maximum=1, open_minimum=True, open_maximum=True)
        generator = torch.Generator().manual_seed(nonneg_int(seed, "seed"))
        is_val = stratified_mask(self.y_train.cpu(), fraction, generator).to(self.y_train.device)
        return dataclasses.replace(self, x_train=self.x_train[~is_val], y_train=self.y_train[~is_val],
                                   x_val=self.x_train[is_val], y_val=self.y_train[is_val])


def stratified_mask(labels: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Boolean mask choosing ``round(fraction · n_c)`` random samples of every class ``c`` (at least one, and
    at least one left out), drawn with ``generator``."""
    chosen_mask = torch.zeros(labels.shape[0], dtype=torch.bool)
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        n_chosen = min(max(int(round(fraction * members.numel())), 1), members.numel() - 1)
        chosen = members[torch.randperm(members.numel(), generator=generator)[:n_chosen]]
        chosen_mask[chosen] = True
    return chosen_mask
