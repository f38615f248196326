"""The real TFLM runtime in an isolated child process.

TFLM is C++: some failures (an LSTM model on too small an arena, a corrupt flatbuffer) end the whole
process with SIGSEGV instead of raising. Whatever hosts it must survive that, so the runtime lives in
a child (``python -m device_harness.twin.tflm_child``) spoken to over pipes; a dead child becomes a
:class:`DeviceFault` and the next call starts a fresh one — like a board after a HardFault.

    with TflmProcess() as tflm:
        info = tflm.load(model_bytes, arena_size=16 * 1024)
        outputs, ns = tflm.invoke([x])
        outs, ns = tflm.invoke_batch([xs])          # xs has a leading batch axis: one IPC round trip
    smallest_arena(model_bytes)                      # search for the smallest arena that allocates

Ticks are host nanoseconds around ``Invoke()`` (honest host time, not emulated cycles).
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from device_harness.twin.tflm_errors import (
    BY_NAME, ArenaTooSmall, BadArgument, DeviceFault, ModelInvalid, NoModel, OpUnsupported,
    TflmInternalError,
)
from tinyfarm import child_process
from tinyfarm.tflite_file import has_tflite_identifier


# -- data -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorDetails:
    """One input or output tensor as TFLM sees it (per-tensor quantization)."""

    dtype: np.dtype
    shape: tuple[int, ...]
    scale: float
    zero_point: int
    nbytes: int

    @classmethod
    def from_child(cls, d: dict) -> "TensorDetails":
        return cls(np.dtype(d["dtype"]), tuple(d["shape"]), d["scale"], d["zero_point"], d["nbytes"])


@dataclass(frozen=True)
class LoadInfo:
    arena_size: int
    arena_used: int  # from TFLM's RecordingMicroAllocator (0 when unknown)
    inputs: list[TensorDetails] = field(default_factory=list)
    outputs: list[TensorDetails] = field(default_factory=list)
    decompression_bytes: int = 0  # alternate decompression memory beside the arena


def check_tflite_bytes(model: bytes) -> None:
    """Cheap checks before the bytes reach C++: size and the ``TFL3`` file identifier."""
    if len(model) < 16:
        raise ModelInvalid(f"not a TFLite model: only {len(model)} bytes")
    if not has_tflite_identifier(model):
        raise ModelInvalid("not a TFLite model (no 'TFL3' flatbuffer identifier)")


def _signal_name(code: int) -> str:
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


# -- the process ----------------------------------------------------------------------------------
class TflmProcess:
    """A TFLM interpreter in a child process; restartable, thread-safe (one call at a time).

    ``timeout_s`` bounds each call (a hung child is killed and reported as a fault). After a fault
    the model is dropped (like RAM after a reset) unless ``reload_after_fault`` is set, in which case
    the next call reloads the last model first.
    """

    def __init__(self, timeout_s: float = 60.0, reload_after_fault: bool = False) -> None:
        self.timeout_s = timeout_s
        self.reload_after_fault = reload_after_fault
        self._proc: subprocess.Popen | None = None
        self._stderr = None
        self._lock = threading.RLock()
        self._model: bytes | None = None
        self._arena_size = 0
        self._decompression_bytes = 0
        self.info: LoadInfo | None = None
        self.faults = 0

    # lifecycle
    def start(self) -> None:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return
            self._stderr = tempfile.TemporaryFile()
            env = dict(os.environ)
            env.setdefault("PYTHONUNBUFFERED", "1")
            self._proc = child_process.spawn(
                [sys.executable, "-m", "device_harness.twin.tflm_child"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                bufsize=0, env=env, close_fds=True,
            )
            status, _ = self._recv(timeout=max(self.timeout_s, 30.0), op="start")
            assert status == "ready"

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None:
                try:
                    proc.stdin.close()
                    proc.wait(timeout=2)
                except Exception:
                    proc.kill()
                    proc.wait()
                proc.stdout.close()
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None

    def __enter__(self) -> "TflmProcess":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def loaded(self) -> bool:
        return self.info is not None

    # operations
    def load(self, model: bytes, arena_size: int, *, decompression_bytes: int = 0,
             preserve: bool = False) -> LoadInfo:
        """Load ``model`` on an arena of ``arena_size`` bytes (replaces any loaded model).

        ``decompression_bytes``: alternate decompression memory for a compressed model's DECODE
        outputs (``alt_decompression_memory_size`` of the runtime); 0 decodes into the arena.
        """
        model = bytes(model)
        check_tflite_bytes(model)
        with self._lock:
            self.info = None
            self._model = None
            res = self._call("load", model, int(arena_size), int(decompression_bytes), bool(preserve))
            self._model, self._arena_size = model, int(arena_size)
            self._decompression_bytes = int(decompression_bytes)
            self.info = LoadInfo(int(arena_size), res["arena_used"],
                                 [TensorDetails.from_child(d) for d in res["inputs"]],
                                 [TensorDetails.from_child(d) for d in res["outputs"]],
                                 int(decompression_bytes))
            return self.info

    def unload(self) -> None:
        with self._lock:
            self.info = None
            self._model = None
            if self._proc is not None and self._proc.poll() is None:
                self._call("unload")

    @property
    def input_details(self) -> list[TensorDetails]:
        return self._need_info().inputs

    @property
    def output_details(self) -> list[TensorDetails]:
        return self._need_info().outputs

    def invoke(self, inputs: Sequence[np.ndarray]) -> tuple[list[np.ndarray], int]:
        """One inference: inputs in the model's order and dtypes -> (outputs, host ns of Invoke)."""
        with self._lock:
            arrays = self._check_inputs(inputs, batched=False)
            res = self._call("invoke", arrays)
            return res["outputs"], int(res["ticks"])

    def invoke_batch(self, inputs: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
        """Many inferences in one round trip: each input has a leading batch axis of length N.

        Returns outputs stacked on a leading axis of N and the per-sample ns of Invoke.
        """
        with self._lock:
            arrays = self._check_inputs(inputs, batched=True)
            res = self._call("invoke_batch", arrays)
            return res["outputs"], res["ticks"]

    def bench(self, warmup: int, runs: int, inputs: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """Per-run ns of ``runs`` timed Invokes after ``warmup`` untimed ones (on the current inputs)."""
        with self._lock:
            arrays = self._check_inputs(inputs, batched=False) if inputs is not None else None
            return self._call("bench", arrays, int(warmup), int(runs))["ticks"]

    def read_tensor(self, index: int) -> tuple[np.dtype, bytes]:
        """(dtype, bytes) of tensor ``index`` (subgraph 0) after an invoke, for a model loaded with
        ``preserve``; BadArgument for an index past the model's tensors."""
        with self._lock:
            self._need_info()
            res = self._call("read_tensor", int(index))
            return np.dtype(res["dtype"]), res["data"]

    def reset_state(self) -> None:
        """Reset variable tensors (stateful models) to their initial values."""
        with self._lock:
            self._call("reset_state")

    def crash(self) -> None:
        """Test hook: make the child segfault (raises :class:`DeviceFault`)."""
        with self._lock:
            self._call("crash")

    # internals
    def _need_info(self) -> LoadInfo:
        if self.info is None:
            if self.reload_after_fault and self._model is not None:
                self.load(self._model, self._arena_size, decompression_bytes=self._decompression_bytes)
            else:
                raise NoModel("no model is loaded")
        return self.info

    def _check_inputs(self, inputs: Sequence[np.ndarray], batched: bool) -> list[np.ndarray]:
        details = self._need_info().inputs
        if len(inputs) != len(details):
            raise BadArgument(f"the model has {len(details)} input(s), got {len(inputs)}")
        out = []
        n = None
        for i, (arr, d) in enumerate(zip(inputs, details)):
            arr = np.asarray(arr)
            if arr.dtype != d.dtype:
                raise BadArgument(f"input {i}: dtype {arr.dtype} but the model expects {d.dtype}")
            shape = arr.shape[1:] if batched else arr.shape
            if batched:
                if arr.ndim < 1:
                    raise BadArgument(f"input {i}: a batch needs a leading axis")
                n = arr.shape[0] if n is None else n
                if arr.shape[0] != n:
                    raise BadArgument("inputs of a batch differ in length")
            if int(np.prod(shape, dtype=np.int64)) != int(np.prod(d.shape, dtype=np.int64)):
                raise BadArgument(f"input {i}: shape {tuple(shape)} but the model expects {d.shape}")
            want = ((arr.shape[0],) if batched else ()) + tuple(d.shape)
            out.append(np.ascontiguousarray(arr.reshape(want)))
        return out

    def _call(self, op: str, *args: Any) -> Any:
        if self._proc is None or self._proc.poll() is not None:
            self._discard()
            self.start()
        data = pickle.dumps((op, args), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self._proc.stdin.write(struct.pack("<I", len(data)) + data)
        except (BrokenPipeError, OSError):
            self._fault(op)
        reply = self._recv(self.timeout_s, op)
        if reply[0] == "ok":
            return reply[1]
        _, kind, message = reply
        raise BY_NAME.get(kind, TflmInternalError)(message)

    def _recv(self, timeout: float, op: str) -> tuple:
        fd = self._proc.stdout.fileno()
        head = self._read(fd, 4, timeout, op)
        (n,) = struct.unpack("<I", head)
        return pickle.loads(self._read(fd, n, timeout, op))

    def _read(self, fd: int, n: int, timeout: float, op: str) -> bytes:
        buf = bytearray()
        deadline = time.monotonic() + timeout
        while len(buf) < n:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0))
            if not ready:
                self._fault(op, hung=True)
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                self._fault(op)
            buf += chunk
        return bytes(buf)

    def _fault(self, op: str, hung: bool = False) -> None:
        proc = self._proc
        if hung and proc is not None:
            proc.kill()
        code = proc.wait() if proc is not None else 0
        last = self._last_stderr_line()
        self._discard()
        self.faults += 1
        self.info = None
        if not self.reload_after_fault:
            self._model = None
        what = f"hung for more than {self.timeout_s:g} s" if hung else f"died ({_signal_name(code)})"
        raise DeviceFault(f"TFLM process {what} during {op}{': ' + last if last else ''}; it was reset")

    def _last_stderr_line(self) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0)
            lines = [ln for ln in self._stderr.read().decode("utf-8", "replace").splitlines() if ln.strip()]
            return lines[-1].strip()[:200] if lines else ""
        except OSError:
            return ""

    def _discard(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for s in (proc.stdin, proc.stdout):
                try:
                    s.close()
                except OSError:
                    pass
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


# -- arena search ---------------------------------------------------------------------------------
def smallest_arena(model: bytes, *, lo: int = 0, hi: int | None = None, limit: int = 64 << 20,
                   align: int = 16, verify_invoke: bool = True, timeout_s: float = 60.0,
                   decompression_bytes: int = 0) -> int:
    """The smallest tensor-arena size (a multiple of ``align``) on which ``model`` loads (with
    ``decompression_bytes`` of alternate decompression memory beside it, see :meth:`TflmProcess.load`).

    Binary search over loads in one child process; a crash during a probe (LSTM kernels segfault on
    small arenas) counts as "too small" and the child is restarted. With ``verify_invoke`` the result
    is also invoked once on zero inputs. Raises :class:`ModelInvalid`/:class:`OpUnsupported` for a
    model that cannot load at any size, :class:`ArenaTooSmall` if it needs more than ``limit``.
    """
    check_tflite_bytes(model)
    loaded_at: list[int] = []  # sizes the model loaded on
    with TflmProcess(timeout_s=timeout_s) as tflm:

        def fits(size: int) -> bool:
            try:
                tflm.load(model, size, decompression_bytes=decompression_bytes)
                loaded_at.append(size)
                return True
            except (ArenaTooSmall, DeviceFault):
                return False
            except (OpUnsupported, ModelInvalid):
                # A DECODE (compressed weights) that runs out of arena can leave TFLM's temporary
                # allocations in disorder, and a later kernel then rejects garbage: a refusal is the
                # arena's when the model loads on a bigger one.
                if any(s > size for s in loaded_at) or (size < limit and fits(limit)):
                    return False
                raise

        if hi is None:
            hi = max(1024, (len(model) // align + 1) * align)
            while not fits(hi):
                if hi >= limit:
                    raise ArenaTooSmall(f"the model does not load even on a {limit}-byte arena")
                hi = min(hi * 2, limit)
        elif not fits(hi):
            raise ArenaTooSmall(f"the model does not load on a {hi}-byte arena")
        lo_units, hi_units = lo // align, -(-hi // align)  # invariant: hi fits, lo does not (or 0)
        while hi_units - lo_units > 1:
            mid = (lo_units + hi_units) // 2
            if fits(mid * align):
                hi_units = mid
            else:
                lo_units = mid
        best = hi_units * align
        if verify_invoke:
            info = tflm.load(model, best, decompression_bytes=decompression_bytes)
            tflm.invoke([np.zeros(d.shape, d.dtype) for d in info.inputs])
        return best
