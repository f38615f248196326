"""Layer by layer: where an int8 model's intermediate tensors depart from a reference (host side).

Every operator's output tensor is kept (LiteRT ``experimental_preserve_all_tensors`` on its reference
kernels; the host TFLM's ``InterpreterConfig.kPreserveAllTensors`` with ``GetTensor``, in a child
process so a crash of the runtime is an error line) for a few samples, and compared, dequantized, with

* ``litert-reference``: the same model on LiteRT's reference kernels (the run under test is the host
  TFLM, the firmware's kernels: identical expected);
* ``reference-model``: another int8 model of the same graph (``--reference``), op by op;
* ``float``: the float model. Its ops are matched to the int8 model's by position among the ops of
  the same type and output shape (QUANTIZE/DEQUANTIZE left out on both sides): the k-th int8 op of
  type T with output shape S is compared with the k-th float op of type T with output shape S. The
  converter keeps the op order and fuses activations the same way in both, so for the float model
  of the same graph every op pairs; an op without a partner (a narrowed model against the float
  baseline: other channel counts) is not compared, and ``float_matched`` says how many paired.

A layer *departs* when its cosine similarity is under ``min_cosine`` or it is more than ``max_steps``
quantization steps away (steps are not used against the float model: quantization alone is a step).
With ``device``, the run under test is a device's instead (:mod:`device_harness.tensor_read`: the
TENSORS capability's PRESERVE_TENSORS + READ_TENSOR), and the host TFLM becomes a reference
(``host-tflm``: identical expected, the same kernels unless the device's are optimized).
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from device_harness.compare import MAX_STEPS, MIN_COSINE, compare, dequantize
from tinyfarm.errors import DataError, ModelError

SKIPPED_FOR_FLOAT = {"QUANTIZE", "DEQUANTIZE"}


@dataclass
class Op:
    index: int
    name: str
    tensor: int            # its (first) output tensor
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int


@dataclass
class LayerRun:
    """The ops of a model and, per op, its output for every sample (samples on axis 0)."""
    ops: list[Op]
    values: list[np.ndarray] = field(default_factory=list)
    input: dict = field(default_factory=dict)  # LiteRT detail of input 0


def _litert(model: bytes, preserve: bool = True):
    from tinyfarm.native_stderr import native_stderr_held  # noqa: PLC0415

    with native_stderr_held():
        from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: PLC0415
    try:
        it = Interpreter(model_content=bytes(model), experimental_preserve_all_tensors=preserve,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        it.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first = first.split(". ")[0].rstrip(".")[:160]
        raise ModelError(f"LiteRT cannot load the model ({first}); diff needs a model LiteRT reads: for "
                         "one with TFLM weight compression or one zero point per tensor, diff its "
                         "uncompressed twin") from None
    return it


def model_ops(it: Any) -> list[Op]:
    details = {d["index"]: d for d in it.get_tensor_details()}
    ops = []
    for o in it._get_ops_details():  # noqa: SLF001 - LiteRT's only op listing
        if len(o["outputs"]) == 0:
            continue
        d = details[int(o["outputs"][0])]
        scale, zp = d["quantization"]
        ops.append(Op(int(o["index"]), o["op_name"], int(d["index"]), tuple(int(s) for s in d["shape"]),
                      np.dtype(d["dtype"]).name, float(scale), int(zp)))
    return ops


def run_litert(model: bytes, x: np.ndarray) -> LayerRun:
    """Every op's output of ``model`` on LiteRT's reference kernels for float samples ``x``."""
    from tinyfarm.litert_reference import quantize_input  # noqa: PLC0415

    it = _litert(model)
    inputs = it.get_input_details()
    if len(inputs) != 1:
        raise ModelError(f"diff needs a single-input model, this one has {len(inputs)}")
    run = LayerRun(model_ops(it), input=inputs[0])
    q = quantize_input(_samples(x, inputs[0]), inputs[0])
    rows = []
    for i in range(len(q)):
        it.set_tensor(inputs[0]["index"], q[i: i + 1].reshape(inputs[0]["shape"]))
        it.invoke()
        rows.append([it.get_tensor(op.tensor).copy() for op in run.ops])
    run.values = [np.stack([r[j] for r in rows]) for j in range(len(run.ops))]
    return run


def _samples(x: np.ndarray, detail: dict) -> np.ndarray:
    per = int(np.prod(detail["shape"], dtype=np.int64))
    x = np.asarray(x)
    if x.size == per:
        x = x.reshape((1,) + tuple(detail["shape"][1:]))
    if x.ndim < 1 or len(x) == 0 or int(np.prod(x.shape[1:], dtype=np.int64)) != per:
        raise DataError(f"input of shape {list(x.shape)}, the model's input is {detail['shape'].tolist()} "
                        f"(one sample, or N samples on a leading axis)")
    return x.reshape((len(x),) + tuple(detail["shape"][1:]))


def run_tflm(model: bytes, x: np.ndarray, like: LayerRun, timeout_s: float = 300.0) -> LayerRun:
    """Every op's output of ``model`` on the host TFLM (preserve-all-tensors), in a child process."""
    from tinyfarm import child_process  # noqa: PLC0415
    from tinyfarm.litert_reference import quantize_input  # noqa: PLC0415

    q = quantize_input(_samples(x, like.input), like.input)
    arena = 2 * sum(int(np.prod(op.shape, dtype=np.int64)) * np.dtype(op.dtype).itemsize
                    for op in like.ops) + int(np.asarray(q[:1]).nbytes) + (256 << 10)
    job = pickle.dumps((bytes(model), arena, q, [op.tensor for op in like.ops]))
    proc = child_process.spawn([sys.executable, "-m", "device_harness.layer_diff"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(job, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        child_process.stop(proc)
        raise ModelError(f"the host TFLM took over {timeout_s:.0f} s") from None
    if proc.returncode != 0:
        last = (err.decode(errors="replace").strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise ModelError(f"the host TFLM failed: {last}")
    status, payload = pickle.loads(out)  # noqa: S301 - our own child's answer
    if status != "ok":
        raise ModelError(f"the host TFLM failed: {payload}")
    return LayerRun(like.ops, [np.asarray(v) for v in payload], like.input)


def _tflm_child() -> None:  # python -m device_harness.layer_diff: stdin job -> stdout answer
    model, arena, q, tensors = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 - from our parent
    try:
        from tflite_micro.python.tflite_micro import runtime  # noqa: PLC0415

        it = runtime.Interpreter.from_bytes(model, arena_size=arena,
                                            intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
        rows = []
        for i in range(len(q)):
            it.set_input(q[i: i + 1].reshape(it.get_input_details(0)["shape"]), 0)
            it.invoke()
            rows.append([np.array(it.GetTensor(t, 0)["tensor_data"]) for t in tensors])
        answer = ("ok", [np.stack([r[j] for r in rows]) for j in range(len(tensors))])
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        answer = ("error", f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}")
    sys.stdout.buffer.write(pickle.dumps(answer))


def match_float(ops: list[Op], float_ops: list[Op]) -> dict[int, int]:
    """Position in ``ops`` -> position in ``float_ops``: the k-th op of a type and output shape to
    the k-th op of that type and shape."""
    by_key: dict[tuple, list[int]] = {}
    for j, op in enumerate(float_ops):
        if op.name not in SKIPPED_FOR_FLOAT:
            by_key.setdefault((op.name, op.shape), []).append(j)
    seen: dict[tuple, int] = {}
    pairs = {}
    for i, op in enumerate(ops):
        if op.name in SKIPPED_FOR_FLOAT:
            continue
        key = (op.name, op.shape)
        k = seen.get(key, 0)
        seen[key] = k + 1
        if k < len(by_key.get(key, [])):
            pairs[i] = by_key[key][k]
    return pairs


def check_same_graph(ops: list[Op], ref_ops: list[Op]) -> None:
    """ModelError unless the reference model has the same ops with the same output shapes."""
    if len(ops) != len(ref_ops):
        raise ModelError(f"mismatched models: the reference has {len(ref_ops)} ops, the model {len(ops)}")
    for a, b in zip(ops, ref_ops):
        if (a.name, a.shape) != (b.name, b.shape):
            raise ModelError(f"mismatched models: op {a.index} is {a.name} {list(a.shape)} in the model, "
                             f"{b.name} {list(b.shape)} in the reference")


def _deq(v: np.ndarray, op: Op) -> np.ndarray:
    return dequantize(v, op.scale, op.zero_point).reshape(len(v), -1)


def layer_diff(model: bytes, x: np.ndarray, *, float_model: bytes | None = None,
               reference_model: bytes | None = None, tflm: bool = True, device: str | None = None,
               min_cosine: float = MIN_COSINE, max_steps: float = MAX_STEPS) -> dict[str, Any]:
    """The per-layer comparison of ``model`` on float samples ``x`` (see the module doc) as a dict:
    ``layers`` (op, type, shape, metrics per reference), ``first_departure`` per reference."""
    lit = run_litert(model, x)
    runs: dict[str, LayerRun] = {}
    tflm_note = None
    under_test = "litert-reference"
    if device:
        from device_harness.tensor_read import run_device  # noqa: PLC0415

        from tinyfarm.litert_reference import quantize_input  # noqa: PLC0415

        q = quantize_input(_samples(x, lit.input), lit.input)
        values = run_device(model, q, [op.tensor for op in lit.ops], [op.shape for op in lit.ops], device)
        actual, under_test = LayerRun(lit.ops, values, lit.input), f"device {device}"
        runs["litert-reference"] = lit
        if tflm:
            try:
                runs["host-tflm"] = run_tflm(model, x, lit)
            except ModelError as exc:
                tflm_note = str(exc)
        else:
            tflm_note = "not asked (--no-tflm)"
    elif tflm:
        try:
            actual = run_tflm(model, x, lit)
            under_test = "host-tflm"
            runs["litert-reference"] = lit
        except ModelError as exc:
            actual, tflm_note = lit, str(exc)
    else:
        actual, tflm_note = lit, "not asked (--no-tflm)"
    if reference_model is not None:
        check_same_graph(lit.ops, model_ops(_litert(reference_model, preserve=False)))
        runs["reference-model"] = run_litert(reference_model, x)
    pairs: dict[int, int] = {}
    if float_model is not None:
        flt = run_litert(float_model, x)
        runs["float"] = flt
        pairs = match_float(lit.ops, flt.ops)
    layers = []
    first: dict[str, dict | None] = {name: None for name in runs}
    for i, op in enumerate(lit.ops):
        row: dict[str, Any] = {"op": op.index, "type": op.name, "shape": list(op.shape), "dtype": op.dtype,
                               "metrics": {}}
        a = _deq(actual.values[i], op)
        for name, run in runs.items():
            j = pairs.get(i) if name == "float" else i
            if j is None:
                row["metrics"][name] = None
                continue
            rop = run.ops[j]
            m = compare(a, _deq(run.values[j], rop), step=op.scale or None)
            row["metrics"][name] = m.as_dict()
            if name == "float":
                row["float_op"] = {"op": rop.index, "type": rop.name}
            if first[name] is None and m.departs(min_cosine, None if name == "float" else max_steps):
                first[name] = {"op": op.index, "type": op.name, "shape": list(op.shape)}
        layers.append(row)
    return {"samples": len(actual.values[0]) if actual.values else 0, "under_test": under_test,
            "tflm": tflm_note or "ok", "references": list(runs), "layers": layers,
            "first_departure": first, "float_matched": len(pairs) if float_model is not None else None,
            "tolerance": {"min_cosine": min_cosine, "max_steps": max_steps}}


def plot(report: dict[str, Any], path: str, title: str = "") -> None:
    """Error by layer (relative L2, log scale; one line per reference) as a PNG."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    from tinyfarm.atomic_files import atomic_path  # noqa: PLC0415

    layers = report["layers"]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(layers) + 2), 4))
    xs = list(range(len(layers)))
    for name in report["references"]:
        ys = [(row["metrics"].get(name) or {}).get("rel_l2") for row in layers]
        ax.plot(xs, [max(y, 1e-9) if y is not None else np.nan for y in ys], marker="o", label=name)
    ax.set_yscale("log")
    ax.set_xticks(xs, [f"{r['op']} {r['type']}" for r in layers], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("relative L2 error (floor 1e-9)")
    ax.set_title(title or f"error by layer ({report['under_test']} under test)")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    _tflm_child()
