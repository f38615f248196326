"""Data sets the pipeline trains on (installed as ``tinyfarm_datasets``, not ``datasets``).

>>> from tinyfarm_datasets import load_dataset
>>> splits = load_dataset("digits")             # built-in, the default
>>> splits = load_dataset("mnist1d")
>>> splits = load_dataset("mine", path="data.npz")   # or load_dataset("data.npz")
>>> splits.x_train.shape, splits.num_classes, splits.input_shape
"""

from __future__ import annotations

from pathlib import Path

from tinyfarm.errors import DataError
from tinyfarm_datasets.builtin import BUILTIN
from tinyfarm_datasets.npz import REQUIRED_KEYS, load_npz
from tinyfarm_datasets.splits import Splits, carve_validation

__all__ = ["Splits", "load_dataset", "dataset_label", "list_datasets", "DEFAULT_DATASET", "REQUIRED_KEYS"]

DEFAULT_DATASET = "digits"
DEFAULT_VAL_FRACTION = 0.1


def list_datasets() -> dict[str, str]:
    """Built-in data set names -> one-line descriptions."""
    return {name: ds.description for name, ds in BUILTIN.items()}


def dataset_label(name: str | None, path: str | Path | None) -> str:
    """What reports call a data set: ``name`` when given, else the file's stem, else ``digits``.

    With a ``path``, a built-in's name is no label (it is what a copy of ``configs/digits.yaml``
    says before the path was filled in): the file's stem is used instead.
    """
    if path is not None and (not name or name in BUILTIN):
        return Path(path).stem or "data"
    return str(name) if name else DEFAULT_DATASET


def load_dataset(name: str | None = DEFAULT_DATASET, *, path: str | Path | None = None,
                 val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0) -> Splits:
    """Return the preprocessed train / validation / test splits of a data set.

    ``name`` is a built-in (see :func:`list_datasets`) or, with ``path`` (or when ``name`` itself ends
    in ``.npz``), a label for user data in a ``.npz`` holding ``x_train, y_train, x_test, y_test``;
    ``name=None`` (or a built-in's name) with a ``path`` labels the data by the file's stem
    (``cancer.npz`` -> ``cancer``, :func:`dataset_label`).
    ``val_fraction`` of train (stratified, seeded by ``seed``) becomes the validation split; test is
    the data set's own test split, untouched. Raises :class:`~tinyfarm.errors.DataError` for an
    unknown name or inconsistent user data.
    """
    if path is None and str(name or "").endswith(".npz"):
        name, path = Path(name).stem, name
    name = dataset_label(name, path)
    if path is not None:
        x_tr, y_tr, x_te, y_te, num_classes = load_npz(path)
        description = f"user data from {Path(path).name}"
        input_shape = tuple(int(d) for d in x_tr.shape[1:])
    else:
        if name not in BUILTIN:
            raise DataError(f"unknown data set '{name}' (built-in: {', '.join(BUILTIN)}; "
                            f"or give a .npz with {', '.join(REQUIRED_KEYS)})")
        ds = BUILTIN[name]
        x_tr, y_tr, x_te, y_te = ds.load_raw()
        num_classes, input_shape, description = ds.num_classes, ds.input_shape, ds.description
    x_tr, y_tr, x_val, y_val = carve_validation(x_tr, y_tr, val_fraction, seed)
    return Splits(name=str(name), x_train=x_tr, y_train=y_tr, x_val=x_val, y_val=y_val,
                  x_test=x_te, y_test=y_te, num_classes=int(num_classes),
                  input_shape=tuple(input_shape), description=description)
