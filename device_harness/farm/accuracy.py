"""On-device accuracy for a farm job: the data set's test split through the loaded model.

A model whose input does not take the data set's samples fails the job with that reason rather
than reporting a meaningless number.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from tinyfarm.errors import DataError


@lru_cache(maxsize=4)
def _test_split(name: str) -> tuple[np.ndarray, np.ndarray]:
    from tinyfarm_datasets import load_dataset
    splits = load_dataset(name)
    return splits.x_test, splits.y_test


def check_dataset(name: str) -> None:
    """Fail early (one line) for an unknown data set name."""
    try:
        _test_split(name)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"cannot load data set {name!r}: {exc}") from None


def on_device_accuracy(session: Any, model: bytes, dataset: str, samples: int | None) -> dict[str, Any]:
    """The session's own evaluation on the first ``samples`` test samples of the loaded ``model``;
    a shape mismatch is a DataError (not retried)."""
    x_test, y_test = _test_split(dataset)
    n = len(x_test) if samples is None else min(samples, len(x_test))
    result = session.evaluate(model, x_test[:n], y_test[:n], dataset=dataset, reference=True)
    return {"accuracy": result.accuracy, "dataset": dataset, "samples": result.samples,
            "identical_share": result.identical_share}
