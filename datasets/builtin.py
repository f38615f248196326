"""The built-in data sets: small, offline, and reproducible (no download at run time)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tinyfarm.atomic_files import atomic_path
from tinyfarm.errors import StorageError

RawSplits = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # x_train, y_train, x_test, y_test


@dataclass(frozen=True)
class BuiltinDataset:
    name: str
    description: str
    input_shape: tuple[int, ...]
    num_classes: int
    load_raw: Callable[[], RawSplits]


def _digits() -> RawSplits:
    """scikit-learn's 8x8 digits; the split everyone quotes (25% test, stratified, random_state=0)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[..., None]  # pixels 0..16 -> [0, 1]
    y = data.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    return x_tr, y_tr, x_te, y_te


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "tinyfarm"


def _mnist1d() -> RawSplits:
    """MNIST-1D generated locally with the package's default arguments and its own train/test split.

    ``make_dataset`` is deterministic (seeded by its arguments) but takes a few seconds, so the result
    is cached per mnist1d version. ``get_dataset`` is not used: it tries to download.
    """
    import importlib.metadata

    version = importlib.metadata.version("mnist1d")
    cache = _cache_dir() / f"mnist1d-{version}-default.npz"
    if cache.is_file():
        try:
            with np.load(cache) as z:
                return z["x_train"], z["y_train"], z["x_test"], z["y_test"]
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is regenerated below
    from mnist1d.data import get_dataset_args, make_dataset

    data = make_dataset(get_dataset_args())
    raw = (data["x"].astype(np.float32)[..., None], data["y"].astype(np.int64),
           data["x_test"].astype(np.float32)[..., None], data["y_test"].astype(np.int64))
    try:
        with atomic_path(cache) as tmp:
            np.savez(tmp, x_train=raw[0], y_train=raw[1], x_test=raw[2], y_test=raw[3])
    except (OSError, StorageError):
        pass  # a read-only home only costs the regeneration time
    return raw


BUILTIN: dict[str, BuiltinDataset] = {
    "digits": BuiltinDataset(
        "digits", "scikit-learn 8x8 handwritten digits (1,797 images, 10 classes); the default",
        (8, 8, 1), 10, _digits),
    "mnist1d": BuiltinDataset(
        "mnist1d", "MNIST-1D: 1-D signals of length 40 (4,000 train / 1,000 test, 10 classes)",
        (40, 1), 10, _mnist1d),
}
