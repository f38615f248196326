"""What is measured on a device: latency statistics from BENCH ticks, seeded inputs, accuracy.

All of it works on a connected :class:`~device_harness.client.DeviceClient` with a model uploaded,
so the same code runs against the twin, an emulator or a board (the CLI, the deploy stage, the farm,
``regress`` and the pytest ``dut`` all measure through :mod:`device_harness.session`). The reference
for "identical outputs" is LiteRT with its *reference* kernels (:mod:`tinyfarm.litert_reference`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from device_harness.compare import compare, dequantize
from tinyfarm.errors import DataError, ModelError, TinyfarmError
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


def latency_source(tick_source: str | None) -> str:
    """What a latency figure from ``tick_source`` ticks is, so nobody reads an estimate as a measurement."""
    if tick_source == "estimate":
        return ("estimated board time (twin: the cost model's cycles for this model, not measured; "
                "the same for every input, so the runs do not spread)")
    if tick_source == "host-ns":
        return "host CPU time (twin: host ns around Invoke(), not the board's cycles)"
    return f"measured on the device ({tick_source or 'unknown tick source'})"


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
    # every reference by name ("host-tflm", "litert-reference", "float"): {"description": ...,
    # "outputs": [per-output compare.Metrics dicts + "output"]} or {"description": ..., "error": ...}
    references: dict = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


REFERENCE_NAMES = {"litert-reference": "LiteRT reference kernels",
                   "host-tflm": "the host TFLM (tflite-micro wheel)",
                   "float": "the float model (LiteRT reference kernels)"}


def _stack(rows: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Per-sample output lists -> one array per output, samples along axis 0."""
    return [np.stack([np.asarray(r[j]).reshape(np.asarray(rows[0][j]).shape) for r in rows])
            for j in range(len(rows[0]))]


def _litert_outputs(model: bytes, q: np.ndarray) -> list[np.ndarray]:
    ref = ReferenceInterpreter(model)
    return _stack([ref([q[i]]) for i in range(len(q))])


def _host_tflm_outputs(model: bytes, q: np.ndarray, batch: int = 256) -> list[np.ndarray]:
    """Every output of ``model`` on the host TFLM (the firmware's kernels), ``batch`` samples a trip."""
    from device_harness.twin.tflm_process import TflmProcess, smallest_arena  # noqa: PLC0415
    from tinyfarm.tflite_file import decompression_bytes  # noqa: PLC0415

    memory = decompression_bytes(model)
    rows = q.reshape((len(q),) + q.shape[2:]) if q.ndim > 1 and q.shape[1] == 1 else q  # batch dim
    chunks = []
    with TflmProcess() as tflm:
        tflm.load(model, smallest_arena(model, decompression_bytes=memory), decompression_bytes=memory)
        for i in range(0, len(rows), batch):
            outs, _ = tflm.invoke_batch([rows[i: i + batch]])
            chunks.append([np.asarray(o) for o in outs])
    return [np.concatenate([c[j] for c in chunks]) for j in range(len(chunks[0]))]


def _references(model: bytes, reference: bool | bytes, float_model: bytes | None, q: np.ndarray,
                x: np.ndarray) -> dict[str, tuple[list[np.ndarray] | None, str | None]]:
    """Each named reference's outputs for the inputs the device got (``(None, why)`` when it could
    not run): the host TFLM, LiteRT's reference kernels (on ``reference`` when it is a model's bytes),
    and the float model on the unquantized ``x``."""
    out: dict[str, tuple[list[np.ndarray] | None, str | None]] = {}
    if reference is not False:
        for name, run, m in (("host-tflm", _host_tflm_outputs, model),
                             ("litert-reference", _litert_outputs,
                              bytes(reference) if isinstance(reference, (bytes, bytearray)) else model)):
            try:
                out[name] = (run(m, q), None)
            except TinyfarmError as exc:
                out[name] = (None, str(exc))
    if float_model is not None:
        ref = ReferenceInterpreter(float_model)
        shape = tuple(int(d) for d in ref.inputs[0]["shape"])
        if int(np.prod(shape)) != int(np.prod(q.shape[1:])) or np.dtype(ref.inputs[0]["dtype"]).kind != "f":
            raise ModelError(f"the float model takes {np.dtype(ref.inputs[0]['dtype']).name} input "
                             f"{list(shape)}, the model under test {list(q.shape[1:])}")
        xf = np.asarray(x, np.float32).reshape((len(x),) + shape)
        out["float"] = (_stack([ref([xf[i]]) for i in range(len(xf))]), None)
    return out


def compare_outputs(device: list[np.ndarray], reference: list[np.ndarray], quant: list[tuple[float, int]],
                    reference_quant: list[tuple[float, int]] | None = None) -> list[dict[str, Any]]:
    """Per output: the device's values against the reference's, both dequantized (the reference with
    ``reference_quant``, default the device's), steps counted in the device output's scale."""
    metrics = []
    for j, (dev, ref) in enumerate(zip(device, reference)):
        scale, zp = quant[j]
        r_scale, r_zp = (reference_quant or quant)[j]
        m = compare(dequantize(dev, scale, zp), dequantize(ref, r_scale, r_zp), step=scale or None, top1=True)
        metrics.append({"output": j, **m.as_dict()})
    return metrics


def evaluate_on_device(dev: Any, model: bytes, x: np.ndarray, y: np.ndarray, *, dataset: str = "",
                       reference: bool | bytes = True, float_model: bytes | None = None,
                       progress: Callable[[int, int], None] | None = None) -> EvaluationResult:
    """Accuracy of the uploaded ``model`` on ``(x, y)`` measured on the device, sample by sample.

    Inputs are quantized with the device-reported scale/zero point of input 0; the prediction is the
    argmax of output 0. With ``reference``, every raw output is compared (``references``) with the
    host TFLM (the firmware's kernels: identical expected) and LiteRT's reference kernels running
    ``model`` — or running ``reference`` when it is a model's bytes: LiteRT has no DECODE operator, so
    a model stored with TFLM weight compression is compared with its uncompressed twin. With
    ``float_model``, the dequantized outputs are also compared with that float model's on ``x``.
    ``identical_*``/``max_abs_diff``/``reference`` name one reference: the host TFLM (the device
    reference: the same kernels as the firmware), else LiteRT's when the host TFLM could not run it.
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
    q = quantize(x, t_in.numpy_dtype, t_in.scale, t_in.zero_point).reshape((len(x),) + tuple(t_in.dims))
    correct = 0
    ticks = []
    rows: list[list[np.ndarray]] = []
    t0 = time.perf_counter()
    for i in range(len(q)):
        outs, tk = dev.invoke([q[i]])
        ticks.append(tk)
        rows.append([np.asarray(o) for o in outs])
        correct += int(int(np.argmax(outs[0].reshape(-1))) == int(y[i]))
        if progress:
            progress(i + 1, len(q))
    seconds = time.perf_counter() - t0
    device = [np.stack([r[j] for r in rows]) for j in range(len(rows[0]))]
    quant = [(t.scale, t.zero_point) for t in dev.outputs][:len(device)]
    quant += [(0.0, 0)] * (len(device) - len(quant))
    references: dict[str, dict] = {}
    primary = None
    for name, (outs, error) in _references(model, reference, float_model, q, x).items():
        entry: dict[str, Any] = {"description": REFERENCE_NAMES[name]}
        if outs is None:
            entry["error"] = error
        else:
            fq = None
            if name == "float":
                fq = [(0.0, 0)] * len(outs)
            entry["outputs"] = compare_outputs(device, outs, quant, fq)
            if name == "host-tflm" or (primary is None and name != "float"):
                primary = (name, outs)
        references[name] = entry
    identical = max_diff = None
    if primary is not None:
        n = len(q)
        same = np.ones(n, dtype=bool)
        max_diff = 0.0
        for a, b in zip(device, primary[1]):
            d = np.abs(a.astype(np.float64).reshape(n, -1) - b.astype(np.float64).reshape(n, -1))
            same &= np.all(d == 0, axis=1)
            max_diff = max(max_diff, float(d.max()) if d.size else 0.0)
        identical = int(same.sum())
    tick_hz = dev.info.tick_hz if dev.info else 0
    return EvaluationResult(
        dataset=dataset, samples=len(q), accuracy=correct / len(q),
        reference=primary[0] if primary else None,
        identical_outputs=identical or 0,
        identical_share=identical / len(q) if identical is not None else None,
        max_abs_diff=max_diff, references=references,
        latency=latency_stats(ticks, tick_hz).as_dict(), seconds=seconds)
