"""Stage 6: does the model run on TFLite Micro, in how little memory, with the same outputs?

Uses the device twin's host-check API (``device_harness.twin``: :func:`find_arena`,
:func:`host_outputs`): the real TFLM kernels of the ``tflite-micro`` wheel run in a child process, so
a model that crashes the runtime (an LSTM on too small an arena segfaults it) is a reported fault,
not the end of the run. The arena search probes loads in that child and restarts it after a crash.

Why "identical" can fall short of 100% on int8 models: the requantization after every int8
CONV_2D / FULLY_CONNECTED rounds ``acc * M`` to the output scale. The ``tflite-micro`` wheel rounds
it twice (gemmlowp: ``SaturatingRoundingDoublingHighMul`` then ``RoundingDivideByPOT``); LiteRT's
kernels (reference and optimized alike) round once. When the exact value lies within about
``2**-shift`` of a .5 tie the two differ by one step. Traced on the digits PQAT model: hidden
FULLY_CONNECTED values of exactly 82.4994, 13.4998 and 56.4990 came out as 83, 14, 57 on TFLM and
82, 13, 56 on LiteRT — what integer emulations of the two roundings give for those accumulators. A one-step difference in a hidden layer can grow on its way to the
output. So the check also reports the share of outputs within one quantization step and the share
with the same top class; ``passed`` stays strict (bit-identical).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from pipeline.progress import task
from tinyfarm.tflite_file import inspect_tflite

logger = logging.getLogger(__name__)


@dataclass
class TflmCheck:
    """Outcome of one model on TFLM; ``passed`` needs all three: ops, arena, identical outputs."""

    ops: list[str]
    ops_supported: bool
    arena_bytes: int | None
    compared: int = 0
    identical: int = 0
    within_one_step: int = 0  # every element differs by at most one quantization step
    same_top_class: int = 0
    max_abs_diff: float | None = None
    error: str | None = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def identical_share(self) -> float:
        return self.identical / self.compared if self.compared else 0.0

    @property
    def passed(self) -> bool:
        return (self.ops_supported and self.arena_bytes is not None and self.compared > 0
                and self.identical == self.compared)

    def as_dict(self) -> dict:
        return {"passed": self.passed, "ops": self.ops, "ops_supported": self.ops_supported,
                "arena_bytes": self.arena_bytes, "compared": self.compared,
                "identical": self.identical, "identical_share": self.identical_share,
                "within_one_step_share": self.within_one_step / self.compared if self.compared else 0.0,
                "same_top_class_share": self.same_top_class / self.compared if self.compared else 0.0,
                "max_abs_diff": self.max_abs_diff, "error": self.error,
                "seconds": round(self.seconds, 3), **self.extra}


def check_model(model_bytes: bytes, inputs: np.ndarray, reference_outputs: np.ndarray, *,
                max_arena_bytes: int = 1 << 20, label: str = "model", batch: int = 256,
                decompression_bytes: int = 0) -> TflmCheck:
    """Run ``model_bytes`` on TFLM and compare with reference outputs of the same input tensors.

    ``decompression_bytes`` is the alternate decompression memory given to TFLM for a model with
    DECODE operators (TFLM weight compression), so the arena found is the arena alone.

    ``inputs`` are the exact tensors given to the reference (the model's dtype, one row per sample)
    and ``reference_outputs`` the raw outputs LiteRT's reference kernels produced for them.
    """
    import time

    from device_harness.twin import TflmError, find_arena, host_outputs

    start = time.monotonic()
    ops = sorted(set(inspect_tflite(model_bytes).ops))
    result = TflmCheck(ops=ops, ops_supported=False, arena_bytes=None)
    with task(f"TFLM check {label}", total=len(inputs)) as progress:
        arena = find_arena(model_bytes, limit=max_arena_bytes, decompression_bytes=decompression_bytes)
        result.arena_bytes, result.ops_supported, result.error = (arena.arena_bytes, arena.ops_supported,
                                                                  arena.error)
        logger.info("%s: smallest TFLM arena %s B (ops supported: %s)%s", label, arena.arena_bytes,
                    arena.ops_supported, f"; {arena.error}" if arena.error else "")
        if result.arena_bytes is not None:
            try:
                diffs = []
                offset = 0
                for outs in host_outputs(model_bytes, result.arena_bytes, inputs, batch=batch,
                                         decompression_bytes=decompression_bytes):
                    ref = reference_outputs[offset: offset + len(outs)]
                    offset += len(outs)
                    got = outs.reshape(ref.shape)
                    axes = tuple(range(1, got.ndim))
                    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
                    same = np.all(diff == 0, axis=axes)
                    result.identical += int(np.count_nonzero(same))
                    result.within_one_step += int(np.count_nonzero(np.all(diff <= 1, axis=axes)))
                    flat_got, flat_ref = got.reshape(len(got), -1), ref.reshape(len(ref), -1)
                    result.same_top_class += int(np.count_nonzero(
                        np.argmax(flat_got, axis=1) == np.argmax(flat_ref, axis=1)))
                    result.compared += len(same)
                    diffs.append(float(np.max(diff)))
                    progress.tick(len(same))
                result.max_abs_diff = max(diffs) if diffs else None
            except TflmError as exc:
                result.error = f"{type(exc).__name__}: {exc}"
    result.seconds = time.monotonic() - start
    return result
