"""The preprocessed splits every pipeline stage consumes, and the one way a validation split is made."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from tinyfarm.errors import DataError


@dataclass(frozen=True)
class Splits:
    """Train / validation / test arrays of one data set, ready for a model.

    ``x_*`` are float32 arrays of shape ``(n, *input_shape)``; ``y_*`` are int64 class indices in
    ``[0, num_classes)``. The validation split is always carved from train: test is never seen
    before the final evaluation.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    input_shape: tuple[int, ...]
    description: str = ""

    def summary(self) -> dict:
        """Sizes and shape, for reports (no arrays)."""
        return {"name": self.name, "num_classes": self.num_classes,
                "input_shape": list(self.input_shape), "train": len(self.x_train),
                "val": len(self.x_val), "test": len(self.x_test)}

    def subset(self, train: int | None = None, test: int | None = None) -> "Splits":
        """The first ``train`` / ``test`` samples (val shrunk in proportion): for quick runs and tests."""
        def cut(a: np.ndarray, n: int | None) -> np.ndarray:
            return a if n is None else a[:n]
        val = None if train is None else max(1, round(len(self.x_val) * train / max(1, len(self.x_train))))
        return Splits(self.name, cut(self.x_train, train), cut(self.y_train, train),
                      cut(self.x_val, val), cut(self.y_val, val), cut(self.x_test, test),
                      cut(self.y_test, test), self.num_classes, self.input_shape, self.description)


def carve_validation(x: np.ndarray, y: np.ndarray, fraction: float, seed: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split ``fraction`` of the training data off as validation, stratified when every class allows.

    Returns ``x_train, y_train, x_val, y_val``. ``fraction == 0`` gives an empty validation split.
    """
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return x, y, x[:0], y[:0]
    n_val = max(1, int(round(len(x) * fraction)))
    if n_val >= len(x):
        raise DataError(f"training split of {len(x)} samples is too small for val_fraction={fraction}")
    counts = np.bincount(y)
    counts = counts[counts > 0]
    n_classes = len(counts)
    stratify = y if counts.min() >= 2 and n_val >= n_classes and len(x) - n_val >= n_classes else None
    x_tr, x_val, y_tr, y_val = train_test_split(x, y, test_size=n_val, random_state=seed,
                                                stratify=stratify)
    return x_tr, y_tr, x_val, y_val
