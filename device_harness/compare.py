"""How far one set of tensors is from a reference: the figures of a "validate on target" report.

Both sides are compared as float values (dequantized with each side's own scale and zero point), so
an int8 output compares with another int8 output, or with a float model's output, the same way:

    m = compare(dequantize(dev, scale, zp), dequantize(ref, scale, zp), step=scale, top1=True)
    m.cosine, m.rel_l2, m.max_abs_diff, m.max_steps, m.top1_agreement

``max_steps`` is ``max_abs_diff`` in quantization steps of the tensor under test (``step``: its
scale); for two tensors with the same quantization it is the largest raw integer difference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: the default tolerance of "departs from the reference" (``tinyfarm diff``)
MIN_COSINE = 0.999
MAX_STEPS = 1.0


@dataclass
class Metrics:
    samples: int
    cosine: float             # over every value of every sample (1.0: same direction)
    rel_l2: float | None      # ||a - ref|| / ||ref|| (None: the reference is all zeros, a is not)
    max_abs_diff: float       # in the compared (dequantized) units
    max_steps: float | None   # max_abs_diff in quantization steps of the tensor under test
    identical_share: float    # share of samples whose values are all equal
    top1_agreement: float | None = None  # share of samples with the same argmax (outputs only)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def departs(self, min_cosine: float = MIN_COSINE, max_steps: float | None = MAX_STEPS) -> bool:
        """Beyond the tolerance: cosine under ``min_cosine`` or more than ``max_steps`` steps apart
        (``max_steps=None``: cosine only, e.g. against a float model)."""
        if self.cosine < min_cosine:
            return True
        return max_steps is not None and self.max_steps is not None and self.max_steps > max_steps


def dequantize(x: np.ndarray, scale: float | None, zero_point: int | None) -> np.ndarray:
    """Raw tensor values -> float64 (integer values with ``scale``/``zero_point``; floats as they are)."""
    x = np.asarray(x)
    if x.dtype.kind == "f" or not scale:
        return x.astype(np.float64)
    return (x.astype(np.float64) - float(zero_point or 0)) * float(scale)


def compare(actual: np.ndarray, reference: np.ndarray, *, step: float | None = None,
            top1: bool = False) -> Metrics:
    """Metrics of ``actual`` against ``reference``: arrays of the same size with samples along axis 0."""
    a = np.asarray(actual, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    n = len(a)
    if a.size != r.size or len(r) != n:
        raise ValueError(f"cannot compare shapes {a.shape} and {r.shape}")
    a2, r2 = a.reshape(n, -1), r.reshape(n, -1)
    diff = a2 - r2
    na, nr, nd = (float(np.linalg.norm(v)) for v in (a2, r2, diff))
    if na == 0.0 or nr == 0.0:
        cosine = 1.0 if na == nr else 0.0
    else:
        cosine = float(np.clip(np.sum(a2 * r2) / (na * nr), -1.0, 1.0))
    rel = nd / nr if nr else (0.0 if nd == 0.0 else None)
    max_abs = float(np.max(np.abs(diff))) if diff.size else 0.0
    steps = max_abs / float(step) if step else None
    if steps is not None:
        steps = float(np.round(steps, 6))  # a whole number of steps stays one after float scaling
    identical = float(np.mean(np.all(diff == 0.0, axis=1))) if n else 1.0
    agree = None
    if top1 and n and a2.shape[1]:
        agree = float(np.mean(np.argmax(a2, axis=1) == np.argmax(r2, axis=1)))
    return Metrics(samples=n, cosine=cosine, rel_l2=rel, max_abs_diff=max_abs, max_steps=steps,
                   identical_share=identical, top1_agreement=agree)
