"""What is measured on a device: latency statistics from BENCH ticks, seeded inputs, accuracy.

All of it works on a connected :class:`~device_harness.client.DeviceClient` with a model uploaded,
so the same code runs against the twin, an emulator or a board (the CLI, the deploy stage, the farm,
``regress`` and the pytest ``dut`` all measure through :mod:`device_harness.session`). The reference
for "identical outputs" is LiteRT with its *reference* kernels (:mod:`tinyfarm.litert_reference`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np

from tinyfarm.errors import DataError, ModelError
from tinyfarm.litert_reference import ReferenceInterpreter, quantize


@dataclass
class LatencyStats:
    runs: int
    tick_hz: int
    median_ticks: float
    p90_ticks: float
    min_ticks: int
    max_ticks: int
    mean_ticks: float

    def us(self, ticks: float) -> float | None:
        return ticks * 1e6 / self.tick_hz if self.tick_hz else None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("median", "p90", "min", "max", "mean"):
            d[f"{key}_us"] = self.us(d[f"{key}_ticks"])
        return d


def latency_stats(ticks: Sequence[int], tick_hz: int) -> LatencyStats:
    """Median, p90, min, max, mean of per-run ticks (``tick_hz`` converts them to time)."""
    if len(ticks) == 0:
        raise ValueError("no runs")
    t = np.asarray(ticks, dtype=np.float64)
    return LatencyStats(runs=len(t), tick_hz=int(tick_hz), median_ticks=float(np.median(t)),
                        p90_ticks=float(np.percentile(t, 90)), min_ticks=int(t.min()), max_ticks=int(t.max()),
                        mean_ticks=float(t.mean()))


def seeded_inputs(tensors: Sequence[Any], seed: int = 0) -> list[np.ndarray]:
    """Deterministic inputs for a loaded model's input tensors (``client.inputs``), covering each
    dtype's whole range: the same seed gives the same bytes on every backend, so outputs compare."""
    rng = np.random.default_rng(seed)
    out = []
    for t in tensors:
        dt = t.numpy_dtype
        shape = tuple(t.dims)
        if np.issubdtype(dt, np.integer):
            info = np.iinfo(dt)
            out.append(rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dt))
        elif dt == np.bool_:
            out.append(rng.integers(0, 2, size=shape).astype(np.bool_))
        else:
            out.append(rng.uniform(-1.0, 1.0, size=shape).astype(dt))
    return out


@dataclass
class EvaluationResult:
    dataset: str
    samples: int
    accuracy: float
    identical_outputs: int
    identical_share: float | None
    max_abs_diff: float | None
    latency: dict
    seconds: float
    reference: str | None = None  # what the outputs were compared with (None: nothing)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


REFERENCE_NAMES = {"litert-reference": "LiteRT reference kernels",
                   "host-tflm": "the host TFLM (tflite-micro wheel)"}


class HostTflmReference:
    """The host TFLM (the ``tflite-micro`` wheel: the firmware's kernels) as the reference of a model
    only TFLM reads — TFLM weight compression (DECODE), one zero point per tensor. Called like a
    :class:`ReferenceInterpreter` with one sample; output 0 only."""

    def __init__(self, model: bytes) -> None:
        from device_harness.twin.tflm_process import TflmProcess, smallest_arena  # noqa: PLC0415
        from tinyfarm.tflite_file import decompression_bytes  # noqa: PLC0415

        memory = decompression_bytes(model)
        self._tflm = TflmProcess()
        self._tflm.start()
        self._tflm.load(model, smallest_arena(model, decompression_bytes=memory) * 2,
                        decompression_bytes=memory)

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        outs, _ = self._tflm.invoke([np.asarray(x) for x in inputs])
        return [np.asarray(outs[0])]

    def close(self) -> None:
        self._tflm.close()


def reference_for(model: bytes) -> tuple[Any, str]:
    """LiteRT's reference kernels for ``model``, or the host TFLM when only TFLM can read it."""
    from tinyfarm.tflite_file import has_tflite_identifier  # noqa: PLC0415

    try:
        return ReferenceInterpreter(model), "litert-reference"
    except ModelError:
        if not has_tflite_identifier(model):
            raise
        return HostTflmReference(model), "host-tflm"


def evaluate_on_device(dev: Any, model: bytes, x: np.ndarray, y: np.ndarray, *, dataset: str = "",
                       reference: bool | bytes = True,
                       progress: Callable[[int, int], None] | None = None) -> EvaluationResult:
    """Accuracy of the uploaded ``model`` on ``(x, y)`` measured on the device, sample by sample.

    Inputs are quantized with the device-reported scale/zero point of input 0; the prediction is the
    argmax of output 0. With ``reference``, each raw output is compared with LiteRT's reference kernels
    running ``model`` — or running ``reference`` when it is a model's bytes: LiteRT has no DECODE
    operator, so a model stored with TFLM weight compression is compared with its uncompressed twin.
    """
    import time  # noqa: PLC0415

    if not dev.inputs or not dev.outputs:
        raise ModelError("the device reported no tensors for this model (engine-less firmware?)")
    if len(dev.inputs) != 1:
        raise ModelError(f"evaluate needs a single-input model, this one has {len(dev.inputs)}")
    t_in = dev.inputs[0]
    if len(x) == 0:
        raise DataError(f"the {dataset or 'data set'} test split is empty")
    per_sample = int(np.prod(t_in.dims, dtype=np.int64))
    if int(np.prod(x.shape[1:], dtype=np.int64)) != per_sample:
        raise DataError(f"data set samples have shape {tuple(x.shape[1:])}, the model input is {t_in.dims}")
    ref, reference_name = None, None
    if reference is not False:
        ref, reference_name = reference_for(bytes(reference) if isinstance(reference, (bytes, bytearray))
                                            else model)
    q = quantize(x, t_in.numpy_dtype, t_in.scale, t_in.zero_point).reshape((len(x),) + tuple(t_in.dims))
    correct = identical = 0
    max_diff = 0.0
    ticks = []
    t0 = time.perf_counter()
    try:
        for i in range(len(q)):
            outs, tk = dev.invoke([q[i]])
            ticks.append(tk)
            out0 = outs[0].reshape(-1)
            correct += int(int(np.argmax(out0)) == int(y[i]))
            if ref is not None:
                r_outs = ref([q[i]])
                same = all(np.array_equal(a.reshape(-1), b.reshape(-1)) for a, b in zip(outs, r_outs))
                identical += int(same)
                diff = max(float(np.max(np.abs(a.astype(np.float64).reshape(-1)
                                               - b.astype(np.float64).reshape(-1))))
                           for a, b in zip(outs, r_outs))
                max_diff = max(max_diff, diff)
            if progress:
                progress(i + 1, len(q))
    finally:
        if isinstance(ref, HostTflmReference):
            ref.close()
    tick_hz = dev.info.tick_hz if dev.info else 0
    return EvaluationResult(
        dataset=dataset, samples=len(q), accuracy=correct / len(q), reference=reference_name,
        identical_outputs=identical if ref is not None else 0,
        identical_share=identical / len(q) if ref is not None else None,
        max_abs_diff=max_diff if ref is not None else None,
        latency=latency_stats(ticks, tick_hz).as_dict(), seconds=time.perf_counter() - t0)
