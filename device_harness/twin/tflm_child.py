"""Child-process side of :mod:`device_harness.twin.tflm_process` (``python -m`` entry point).

Reads length-prefixed pickled requests on stdin, answers on the original stdout. Anything TFLM
prints (C stdout and stderr) lands in fd 2, which the parent hands us as a temporary file; it is
cleared before each request and returned with the answer, because TFLM explains its failures there
("Didn't find op for builtin opcode ...", "Failed to allocate ...") rather than in the exception.
A segfault simply ends this process; the parent reports it as a device fault.
"""

from __future__ import annotations

import os
import pickle
import re
import struct
import sys
import time
from typing import Any

import numpy as np

_ALLOC_TOTAL = re.compile(rb"Arena allocation total (\d+) bytes")


class _Failure(Exception):
    def __init__(self, kind: str, message: str):  # kind: an error name of the protocol spec
        super().__init__(message)
        self.kind = kind


def _read_exact(fd: int, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def _captured() -> str:
    size = os.lseek(2, 0, os.SEEK_END)
    return os.pread(2, size, 0).decode("utf-8", "replace") if size else ""


def _clear_capture() -> None:
    os.ftruncate(2, 0)
    os.lseek(2, 0, os.SEEK_SET)


def _details(d: dict) -> dict:
    q = d.get("quantization_parameters") or {}
    scales = q.get("scales")
    zps = q.get("zero_points")
    dtype = np.dtype(d["dtype"])
    shape = tuple(int(x) for x in d["shape"])
    return {
        "dtype": dtype.str,
        "shape": shape,
        "scale": float(scales[0]) if scales is not None and len(scales) else 0.0,
        "zero_point": int(zps[0]) if zps is not None and len(zps) else 0,
        "nbytes": int(np.prod(shape, dtype=np.int64)) * dtype.itemsize,
    }


class _Engine:
    def __init__(self) -> None:
        from tflite_micro.python.tflite_micro import runtime  # noqa: PLC0415  (the slow part, once)

        self._runtime = runtime
        self.interp = None
        self.model: bytes | None = None
        self.inputs: list[dict] = []
        self.outputs: list[dict] = []

    # -- operations -------------------------------------------------------------------------
    def load(self, model: bytes, arena_size: int, decompression_bytes: int = 0, preserve: bool = False) -> dict:
        """``decompression_bytes``: alternate memory for the outputs of DECODE operators (compressed
        weights), beside the arena; 0 decodes into the arena. ``preserve``: TFLM's preserve-all-tensors
        configuration (every tensor readable after Invoke; the arena use is then not recorded)."""
        self.interp = None
        self.model = None
        self.tensor_count = 0
        try:
            count = self._runtime.count_resource_variables(model)
            del count
        except Exception as exc:  # flatbuffer walk failed: truncated or not a model
            raise _Failure("MODEL_INVALID", f"not a valid TFLite flatbuffer ({type(exc).__name__}: {exc})")
        try:
            interp = self._runtime.Interpreter.from_bytes(
                model, arena_size=int(arena_size),
                alt_decompression_memory_size=int(decompression_bytes),
                **({"intrepreter_config": self._runtime.InterpreterConfig.kPreserveAllTensors} if preserve else {}))
        except Exception as exc:
            text = _captured()
            raise _classify_load_failure(exc, text)
        self.interp = interp
        self.model = model  # the C++ side may point into it: keep it alive
        self.inputs = [_details(interp.get_input_details(i)) for i in range(_count(interp, "input"))]
        self.outputs = [_details(interp.get_output_details(i)) for i in range(_count(interp, "output"))]
        if preserve:
            self.tensor_count = len(self._runtime.convert_bytearray_to_object(model).subgraphs[0].tensors)
        _clear_capture()
        try:
            interp.print_allocations()  # not recorded under preserve-all-tensors: arena_used 0
        except ValueError:
            pass
        m = _ALLOC_TOTAL.search(_captured().encode())
        return {
            "arena_used": int(m.group(1)) if m else 0,
            "inputs": self.inputs,
            "outputs": self.outputs,
        }

    def _need_model(self):
        if self.interp is None:
            raise _Failure("NO_MODEL", "no model is loaded")
        return self.interp

    def _set_inputs(self, interp, inputs: list[np.ndarray]) -> None:
        for i, arr in enumerate(inputs):
            try:
                interp.set_input(arr, i)
            except Exception as exc:
                raise _Failure("BAD_ARGUMENT", f"input {i}: {exc}")

    def _invoke(self, interp) -> int:
        t0 = time.perf_counter_ns()
        try:
            interp.invoke()
        except Exception as exc:
            text = _captured().strip().splitlines()
            detail = f": {text[-1]}" if text else ""
            raise _Failure("INVOKE_FAILED", f"Invoke failed ({exc}){detail}")
        return time.perf_counter_ns() - t0

    def invoke(self, inputs: list[np.ndarray]) -> dict:
        interp = self._need_model()
        self._set_inputs(interp, inputs)
        ticks = self._invoke(interp)
        return {"outputs": [np.array(interp.get_output(i)) for i in range(len(self.outputs))], "ticks": ticks}

    def invoke_batch(self, batch: list[np.ndarray]) -> dict:
        interp = self._need_model()
        n = len(batch[0]) if batch else 0
        outs: list[list[np.ndarray]] = [[] for _ in self.outputs]
        ticks = np.empty(n, dtype=np.int64)
        for k in range(n):
            self._set_inputs(interp, [b[k] for b in batch])
            ticks[k] = self._invoke(interp)
            for i in range(len(self.outputs)):
                outs[i].append(np.array(interp.get_output(i)))
        return {"outputs": [np.stack(o) if o else np.empty((0,)) for o in outs], "ticks": ticks}

    def bench(self, inputs: list[np.ndarray] | None, warmup: int, runs: int) -> dict:
        interp = self._need_model()
        if inputs is not None:
            self._set_inputs(interp, inputs)
        for _ in range(warmup):
            self._invoke(interp)
        return {"ticks": np.array([self._invoke(interp) for _ in range(runs)], dtype=np.int64)}

    def read_tensor(self, index: int) -> dict:
        """Tensor ``index`` of subgraph 0 after Invoke (a preserve-all-tensors load only)."""
        interp = self._need_model()
        if not self.tensor_count:
            raise _Failure("BAD_STATE", "the model was not loaded with preserve-all-tensors")
        if not 0 <= index < self.tensor_count:
            raise _Failure("BAD_ARGUMENT", f"tensor {index} of {self.tensor_count}")
        data = np.ascontiguousarray(np.asarray(interp.GetTensor(int(index), 0)["tensor_data"]))
        return {"dtype": data.dtype.str, "data": data.tobytes(), "count": self.tensor_count}

    def reset_state(self) -> dict:
        interp = self._need_model()
        interp.reset()
        return {}

    def unload(self) -> dict:
        self.interp = None
        self.model = None
        return {}

    def ping(self) -> dict:
        return {"pid": os.getpid()}

    def crash(self) -> dict:  # test hook: behave like a HardFault
        import ctypes  # noqa: PLC0415

        ctypes.string_at(0)
        return {}


def _count(interp, which: str) -> int:
    n = 0
    getter = interp.get_input_details if which == "input" else interp.get_output_details
    while True:
        try:
            getter(n)
        except Exception:
            return n
        n += 1


def _classify_load_failure(exc: Exception, text: str) -> _Failure:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    low = text.lower()
    if "didn't find op" in low or "failed to get registration" in low or "unsupported" in low:
        hit = next((ln for ln in lines if "op" in ln.lower()), lines[0] if lines else str(exc))
        return _Failure("OP_UNSUPPORTED", hit)
    if "schema version" in low or "invalid" in low or "not a valid" in low:
        return _Failure("MODEL_INVALID", lines[0] if lines else str(exc))
    if "failed to prepare" in low and "failed to allocate" not in low:
        # a kernel's Prepare rejected the model (e.g. DEQUANTIZE of float16 weights, hybrid
        # dynamic-range ops): no arena size helps, so it must not read as "arena too small"
        node = next((ln for ln in lines if "failed to prepare" in ln.lower()), "")
        check = next((ln for ln in lines if "was not true" in ln.lower()), "")
        why = re.sub(r"^\S+:\d+\s+", "", check).removesuffix(" was not true.") if check else ""
        return _Failure("OP_UNSUPPORTED", f"TFLM kernels reject this model's tensor types: {node}"
                                          + (f" (check failed: {why})" if why else ""))
    if "failed to allocate" in low or "arena" in low or "allocate tensors" in str(exc).lower():
        hit = next((ln for ln in lines if "requested" in ln.lower() or "missing" in ln.lower()), None)
        return _Failure("ARENA_TOO_SMALL", f"tensor arena too small{': ' + hit if hit else ''}")
    detail = f" ({lines[-1]})" if lines else ""
    return _Failure("MODEL_INVALID", f"TFLM could not load the model: {exc}{detail}")


def main() -> None:
    out = os.dup(1)
    os.dup2(2, 1)  # C-level prints go to the capture file, never into the answer stream
    sys.stdout = sys.stderr
    engine = _Engine()
    _send(out, ("ready", {"pid": os.getpid()}))
    while True:
        try:
            (n,) = struct.unpack("<I", _read_exact(0, 4))
            op, args = pickle.loads(_read_exact(0, n))
        except EOFError:
            return
        _clear_capture()
        try:
            result: Any = getattr(engine, op)(*args)
            _send(out, ("ok", result))
        except _Failure as f:
            _send(out, ("err", f.kind, str(f)))
        except Exception as exc:  # an engine bug: report, keep serving
            _send(out, ("err", "internal", f"{type(exc).__name__}: {exc}"))


def _send(fd: int, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(struct.pack("<I", len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


if __name__ == "__main__":
    main()
