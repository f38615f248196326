"""User data: a ``.npz`` with ``x_train, y_train, x_test, y_test``, checked before anything trains on it."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from tinyfarm.array_files import check_kind
from tinyfarm.errors import DataError

REQUIRED_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Read and validate a user ``.npz``; returns ``x_train, y_train, x_test, y_test, num_classes``.

    ``x`` arrays are cast to float32 and used as given (scale them beforehand); ``y`` must be integer
    class indices ``>= 0`` of shape ``(n,)``. Every inconsistency is a one-line :class:`DataError`.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    check_kind(path, "npz", f"a data .npz (np.savez with {', '.join(REQUIRED_KEYS)})")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in REQUIRED_KEYS if k not in z.files]
            if missing:
                raise DataError(f"{path.name}: missing key(s) {', '.join(missing)} "
                                f"(a data .npz needs {', '.join(REQUIRED_KEYS)}; found {', '.join(z.files) or 'none'})")
            arrays = {k: z[k] for k in REQUIRED_KEYS}
    except DataError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(f"{path.name}: holds Python objects (an object array), which tinyfarm "
                            "does not load: save numeric arrays") from None
        raise DataError(f"cannot read {path} as a .npz: {str(exc).splitlines()[0][:200]}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc).strip() else "damaged"
        raise DataError(f"cannot read {path} as a .npz: {detail}") from None

    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.ndim < 2:
            raise DataError(f"{path.name}: x_{part} must have shape (n, ...features), got {x.shape}")
        if y.ndim != 1:
            y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
            if y.ndim != 1:
                raise DataError(f"{path.name}: y_{part} must be class indices of shape (n,), got {arrays[f'y_{part}'].shape}")
        if len(x) != len(y):
            raise DataError(f"{path.name}: x_{part} has {len(x)} samples but y_{part} has {len(y)}")
        if len(x) == 0:
            raise DataError(f"{path.name}: x_{part} is empty")
        if not np.issubdtype(x.dtype, np.number) or x.dtype.kind == "c":
            raise DataError(f"{path.name}: x_{part} must be real numbers, got dtype {x.dtype}")
        if not (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating)
                                                       and np.all(np.mod(y, 1) == 0))):
            raise DataError(f"{path.name}: y_{part} must hold integer class indices, got dtype {y.dtype}")
        if y.min() < 0:
            raise DataError(f"{path.name}: y_{part} has negative labels")
        if not np.all(np.isfinite(x)):
            raise DataError(f"{path.name}: x_{part} contains NaN or infinity")
        arrays[f"x_{part}"], arrays[f"y_{part}"] = x.astype(np.float32), y.astype(np.int64)
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataError(f"{path.name}: x_train samples have shape {arrays['x_train'].shape[1:]} "
                        f"but x_test samples have {arrays['x_test'].shape[1:]}")
    num_classes = int(max(arrays["y_train"].max(), arrays["y_test"].max())) + 1
    if num_classes < 2:
        raise DataError(f"{path.name}: need at least 2 classes, found {num_classes}")
    return arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], num_classes
