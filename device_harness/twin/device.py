"""The twin's protocol state machine: one request frame in, one response frame out.

Transport-free (the server feeds it), so it is unit-testable and behaves exactly like the firmware
should: same error codes, same upload rules, same retransmission cache. TFLM runs in a
:class:`~device_harness.twin.tflm_process.TflmProcess`; when it dies the twin answers DEVICE_FAULT
and resets (model dropped), like a board after a HardFault — and the next command works.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from device_harness.boards import BoardProfile
from device_harness.protocol import (
    MAX_PAYLOAD_LIMIT, MIN_PAYLOAD, VERSION, Capability, CrcError, ErrorCode, Flag, Frame,
    ModelStatus, MsgType, PayloadError, encode_frame, pack_error, pack_response, unpack_request,
)
from device_harness.protocol.spec import DTYPE_OF_NUMPY, MESSAGES
from device_harness.twin import tflm_process as tp
from device_harness.twin.tflm_errors import ArenaTooSmall, DeviceFault, TflmError
from tinyfarm.tflite_file import decompression_bytes, is_compressed

FIRMWARE_VERSION = "twin-1"
RX_WINDOW = 16
HOST_NS_HZ = 1_000_000_000
#: HELLO's tick_source of a twin whose ticks are the board's estimated cycles (see :func:`estimated_cycles`)
TICKS_ESTIMATE = "estimate"
#: HELLO's tick_source of a twin whose ticks are host nanoseconds around ``Invoke()``
TICKS_HOST_NS = "host-ns"
#: environment variable: ``host`` makes twins started without an explicit choice report host time
HOST_TIME_ENV = "TINYFARM_TWIN_TICKS"


def host_time_default() -> bool:
    """Does the environment ask for host-time ticks (``TINYFARM_TWIN_TICKS=host``)?"""
    import os  # noqa: PLC0415

    value = os.environ.get(HOST_TIME_ENV, "").strip().lower()
    if value and value not in ("host", "host-ns", "estimate", "board"):
        from tinyfarm.errors import ConfigError  # noqa: PLC0415

        raise ConfigError(f"{HOST_TIME_ENV}={value!r}: use 'host' (host ns) or 'estimate' (board cycles)")
    return value in ("host", "host-ns")


def estimates_ticks(profile: BoardProfile) -> bool:
    """Can a twin of ``profile`` report board-tick estimates (a real core with cost-model figures)?"""
    from device_harness.fit import cycles_per_mac  # noqa: PLC0415

    return profile.cpu != "host" and profile.cpu_hz > 0 and cycles_per_mac(profile.cpu, profile.kernels) is not None


def estimated_cycles(model: bytes, profile: BoardProfile) -> int:
    """One inference of ``model`` on ``profile``'s core, in cycles, from the cost model
    (:func:`device_harness.fit.latency`): the same number for every input."""
    from device_harness.fit import latency  # noqa: PLC0415
    from tinyfarm.tflite_macs import op_costs  # noqa: PLC0415

    cycles = latency(op_costs(model), profile.cpu, profile.cpu_hz, profile.kernels)["cycles"]
    return int(cycles or 0)


class _Reply(Exception):
    """Raised inside a handler to answer an error frame."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def tflm_version() -> str:
    try:
        from importlib.metadata import version  # noqa: PLC0415

        return f"tflite-micro {version('tflite-micro')}"
    except Exception:
        return "tflite-micro"


class TwinDevice:
    """Protocol behaviour of a TFLM board described by ``profile``.

    ``decode``: the DECODE capability (the wheel's TFLM runs compressed models; a compressed model
    gets alternate decompression memory sized to its DECODE outputs, beside the board's arena).
    ``decode=False`` plays a firmware built without compression: MODEL_END of a compressed model
    answers COMPRESSION_UNSUPPORTED.

    Ticks: on a profile with a real core (``cpu`` not ``host``, ``cpu_hz`` > 0) INVOKE and BENCH
    report the loaded model's *estimated* cycles on that board (``tick_source: estimate``,
    ``tick_hz`` = ``cpu_hz``; the cost model of ``tinyfarm fit``, the same for every input and run).
    ``host_time=True`` (or the ``host`` profile) reports host nanoseconds around ``Invoke()``
    instead (``tick_source: host-ns``). ``host_time=None``: ``TINYFARM_TWIN_TICKS=host`` decides.
    ``tensors``: the TENSORS capability (a model loaded after PRESERVE_TENSORS 1 keeps every tensor).
    """

    def __init__(self, profile: BoardProfile, *, paced: bool = False, max_payload: int = MAX_PAYLOAD_LIMIT,
                 tflm: tp.TflmProcess | None = None, decode: bool = True,
                 host_time: bool | None = None, tensors: bool = True) -> None:
        self.profile = profile
        if host_time is None:
            host_time = host_time_default()
        self.estimate_ticks = not host_time and estimates_ticks(profile)
        self.paced = paced
        self.decode = decode
        self.tensors = tensors
        self._preserve = False  # PRESERVE_TENSORS: the next loads keep every tensor (until RESET)
        self.device_max_payload = max(MIN_PAYLOAD, min(max_payload, MAX_PAYLOAD_LIMIT))
        self.max_payload = self.device_max_payload
        self.tflm = tflm or tp.TflmProcess(timeout_s=120.0)
        self._tflm_version = tflm_version()
        self.faults = 0
        self._last: tuple[int, int, bytes] | None = None  # (seq, type, response frame)
        # the board's model area: chunks are written into place, reused across uploads
        self._model_area = bytearray()
        self._reset_state()
        self.tflm.start()  # pay the runtime's start-up now, not inside the first upload

    def close(self) -> None:
        self.tflm.close()

    # ---- state ---------------------------------------------------------------------------------
    def _reset_state(self) -> None:
        self._upload: dict[str, Any] | None = None
        self._model: bytes | None = None
        self._info: tp.LoadInfo | None = None
        self._decompression = (0, 0)  # (used, capacity) of the loaded model's decompression memory
        self._estimate = 0  # the loaded model's estimated cycles (estimate_ticks)
        self._inputs: list[bytearray] = []
        self._outputs: list[bytes] = []
        self._invoked = False  # an INVOKE since the model was loaded (READ_TENSOR)
        self._preserved = False  # the model was loaded keeping every tensor

    def _fault(self, exc: Exception, during: str) -> _Reply:
        self.faults += 1
        self._reset_state()
        try:
            self.tflm.unload()
            self.tflm.start()  # the "reboot": a fresh TFLM process, ready for the next command
        except Exception:
            pass
        detail = str(exc).removesuffix("; it was reset")
        return _Reply(ErrorCode.DEVICE_FAULT, f"{detail}; the twin reset itself (during {during}, model dropped)")

    # ---- entry points --------------------------------------------------------------------------
    def handle(self, event: Frame | CrcError) -> bytes | None:
        """The response frame for one decoded event (None: nothing to answer, e.g. a response)."""
        if isinstance(event, CrcError):
            if event.flags & Flag.RESPONSE:
                return None
            return self._error_frame(event.type, event.seq, ErrorCode.CRC_MISMATCH,
                                     f"payload CRC failed ({event.length} bytes); retransmit")
        if event.flags & Flag.RESPONSE:
            return None
        if self._last is not None and self._last[0] == event.seq and self._last[1] == event.type:
            return self._last[2]  # a retransmission: the remembered answer, not re-executed
        reset_after = False
        try:
            spec = MESSAGES.get(event.type)
            if spec is None:
                raise _Reply(ErrorCode.UNKNOWN_COMMAND, f"unknown message type {event.type:#04x}")
            if len(event.payload) > self.max_payload:
                raise _Reply(ErrorCode.PAYLOAD_TOO_LARGE,
                             f"{len(event.payload)} bytes > max payload {self.max_payload}")
            try:
                args = unpack_request(event.type, event.payload)
            except PayloadError as exc:
                raise _Reply(ErrorCode.MALFORMED, f"{spec.name}: {exc}") from None
            handler = getattr(self, f"_on_{spec.name.lower()}")
            values = handler(**args)
            payload = pack_response(event.type, **values)
            reset_after = event.type == MsgType.RESET
            out = encode_frame(event.type, event.seq, payload, Flag.RESPONSE)
        except _Reply as reply:
            out = self._error_frame(event.type, event.seq, reply.code, str(reply))
        except Exception as exc:  # a twin bug must not kill the line
            out = self._error_frame(event.type, event.seq, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")
        self._last = (event.seq, event.type, out)
        if reset_after:
            self._reset_state()
            self.tflm.unload()
        return out

    def _error_frame(self, type_: int, seq: int, code: int, message: str) -> bytes:
        return encode_frame(type_, seq, pack_error(code, message[:255]), Flag.RESPONSE | Flag.ERROR)

    # ---- handlers (named _on_<message>) ----------------------------------------------------------
    def _on_hello(self, protocol_version: int, max_payload: int) -> dict:
        if protocol_version != VERSION:
            raise _Reply(ErrorCode.BAD_ARGUMENT, f"protocol version {protocol_version} not supported (device: {VERSION})")
        self.max_payload = max(MIN_PAYLOAD, min(self.device_max_payload, max_payload))
        caps = (Capability.ENGINE | (Capability.PACED if self.paced else 0)
                | (Capability.DECODE if self.decode else 0) | Capability.KERNELS
                | (Capability.TENSORS if self.tensors else 0))
        p = self.profile
        return dict(protocol_version=VERSION, max_payload=self.max_payload, rx_window=RX_WINDOW,
                    capabilities=int(caps), cpu_hz=p.cpu_hz,
                    tick_hz=p.cpu_hz if self.estimate_ticks else HOST_NS_HZ,
                    arena_bytes=p.arena_bytes, max_model_bytes=p.max_model_bytes,
                    firmware_version=FIRMWARE_VERSION, tflm_version=self._tflm_version,
                    board=f"twin:{p.name}",
                    tick_source=TICKS_ESTIMATE if self.estimate_ticks else TICKS_HOST_NS)

    def _on_reset(self) -> dict:
        self._preserve = False
        return {}  # state is dropped after the answer is built (see handle)

    def _on_echo(self, data: bytes) -> dict:
        return {"data": data}

    def _on_kernels(self) -> dict:
        return {"kernels": "reference"}  # the tflite-micro wheel's TFLM runs its reference kernels

    def _on_model_begin(self, size: int, sha256: list[int]) -> dict:
        if size > self.profile.max_model_bytes:
            raise _Reply(ErrorCode.MODEL_TOO_LARGE,
                         f"model of {size} bytes > {self.profile.max_model_bytes} bytes of model buffer "
                         f"on {self.profile.name}")
        if size == 0:
            raise _Reply(ErrorCode.BAD_ARGUMENT, "empty model")
        # the old model is gone for the protocol from here on; the TFLM process keeps its
        # interpreter until MODEL_END's load replaces it (an unload round trip here would sit
        # between MODEL_BEGIN and the first chunk, about a millisecond)
        self._reset_state()
        if len(self._model_area) < size:
            self._model_area = bytearray(size)
        self._upload = {"size": size, "sha256": bytes(sha256), "received": 0}
        return {}

    def _on_model_chunk(self, offset: int, data: bytes | memoryview) -> dict:
        up = self._upload
        if up is None:
            raise _Reply(ErrorCode.BAD_STATE, "MODEL_CHUNK without MODEL_BEGIN")
        received = up["received"]
        end = offset + len(data)
        if end > up["size"]:
            raise _Reply(ErrorCode.BAD_ARGUMENT, f"chunk ends at {end}, past the model size {up['size']}")
        if offset > received:
            raise _Reply(ErrorCode.OUT_OF_ORDER, f"expected offset {received}")
        if end > received:  # a retransmitted overlap only adds its new tail
            self._model_area[received:end] = data[received - offset:]
            up["received"] = end
        return {"received": up["received"]}

    def _on_model_end(self) -> dict:
        up = self._upload
        if up is None:
            raise _Reply(ErrorCode.BAD_STATE, "MODEL_END without MODEL_BEGIN")
        if up["received"] != up["size"]:
            raise _Reply(ErrorCode.BAD_STATE, f"received {up['received']} of {up['size']} bytes")
        model = bytes(memoryview(self._model_area)[:up["size"]])
        self._upload = None
        if hashlib.sha256(model).digest() != up["sha256"]:
            raise _Reply(ErrorCode.HASH_MISMATCH, "SHA-256 of the received bytes differs from MODEL_BEGIN's")
        compressed = is_compressed(model)
        if compressed and not self.decode:
            raise _Reply(ErrorCode.COMPRESSION_UNSUPPORTED,
                         "the model uses TFLM weight compression (DECODE operators); this twin runs "
                         "without the DECODE capability")
        extra = self._decompression_kwargs(model) if compressed else {}
        try:
            preserve = {"preserve": True} if self._preserve else {}  # only then: stand-ins lack it
            info = self.tflm.load(model, self.profile.arena_bytes, **preserve, **extra)
        except DeviceFault as exc:
            if self._preserve and "failed to allocate" in str(exc).lower():
                # the wheel's preserve-all-tensors allocation ends the process instead of failing
                why = str(exc).split(": ", 1)[-1].removesuffix("; it was reset")
                raise _Reply(ErrorCode.ARENA_TOO_SMALL, f"{self.profile.arena_bytes}-byte arena of "
                             f"{self.profile.name} with every tensor preserved (PRESERVE_TENSORS): {why}") from None
            raise self._fault(exc, "model load") from None
        except ArenaTooSmall as exc:
            raise _Reply(ErrorCode.ARENA_TOO_SMALL,
                         f"{self.profile.arena_bytes}-byte arena of {self.profile.name}: {exc}") from None
        except TflmError as exc:
            raise _Reply(exc.code, str(exc)) from None
        self._model, self._info = model, info
        if self.estimate_ticks:
            try:
                self._estimate = estimated_cycles(model, self.profile)
            except Exception:  # noqa: BLE001 - TFLM loaded it; a model the cost model cannot read gets 0
                self._estimate = 0
        self._preserved = self._preserve
        memory = extra.get("decompression_bytes", 0)
        self._decompression = (memory, memory)
        self._inputs = [bytearray(d.nbytes) for d in info.inputs]
        self._outputs = [bytes(d.nbytes) for d in info.outputs]
        return dict(status=int(ModelStatus.VERIFIED | ModelStatus.LOADED), arena_used=info.arena_used,
                    inputs=len(info.inputs), outputs=len(info.outputs))

    def _decompression_kwargs(self, model: bytes) -> dict:
        """Alternate decompression memory for a compressed model: exactly what its DECODE outputs
        take, so the board's arena holds only what a board's arena would."""
        return {"decompression_bytes": decompression_bytes(model)}

    def _need_model(self) -> tp.LoadInfo:
        if self._info is None:
            raise _Reply(ErrorCode.NO_MODEL, "no verified model is loaded")
        return self._info

    def _on_tensor_info(self, direction: int, index: int) -> dict:
        info = self._need_model()
        if direction not in (0, 1):
            raise _Reply(ErrorCode.BAD_ARGUMENT, f"direction {direction} (0 input, 1 output)")
        tensors = info.inputs if direction == 0 else info.outputs
        if index >= len(tensors):
            raise _Reply(ErrorCode.BAD_ARGUMENT, f"{'input' if direction == 0 else 'output'} {index} "
                                                 f"of {len(tensors)}")
        d = tensors[index]
        dtype = DTYPE_OF_NUMPY.get(d.dtype.name)
        if dtype is None:
            raise _Reply(ErrorCode.INTERNAL, f"tensor type {d.dtype} has no protocol code")
        return dict(dtype=dtype, bytes=d.nbytes, scale=d.scale, zero_point=d.zero_point, dims=list(d.shape))

    def _on_set_input(self, index: int, offset: int, data: bytes) -> dict:
        self._need_model()
        if index >= len(self._inputs):
            raise _Reply(ErrorCode.BAD_ARGUMENT, f"input {index} of {len(self._inputs)}")
        buf = self._inputs[index]
        if offset + len(data) > len(buf):
            raise _Reply(ErrorCode.BAD_ARGUMENT, f"write of {len(data)} at {offset} past input size {len(buf)}")
        buf[offset:offset + len(data)] = data
        return {}

    def _input_arrays(self) -> list[np.ndarray]:
        info = self._need_model()
        return [np.frombuffer(bytes(b), dtype=d.dtype).reshape(d.shape) for b, d in zip(self._inputs, info.inputs)]

    def _run_tflm(self, what: str, fn, *args):
        try:
            return fn(*args)
        except DeviceFault as exc:
            raise self._fault(exc, what) from None
        except TflmError as exc:
            raise _Reply(exc.code, str(exc)) from None

    def _on_invoke(self) -> dict:
        inputs = self._input_arrays()
        outputs, ticks = self._run_tflm("INVOKE", self.tflm.invoke, inputs)
        self._outputs = [np.ascontiguousarray(o).tobytes() for o in outputs]
        self._invoked = True
        return {"ticks": self._estimate if self.estimate_ticks else int(ticks)}

    def _on_get_output(self, index: int, offset: int, length: int) -> dict:
        self._need_model()
        if index >= len(self._outputs):
            raise _Reply(ErrorCode.BAD_ARGUMENT, f"output {index} of {len(self._outputs)}")
        out = self._outputs[index]
        if offset > len(out) or length > self.max_payload:
            raise _Reply(ErrorCode.BAD_ARGUMENT, f"read of {length} at {offset} (output has {len(out)} bytes)")
        return {"data": out[offset:offset + length]}

    def _on_bench(self, warmup: int, runs: int) -> dict:
        limit = (self.max_payload - 4) // 4
        if runs < 1 or runs > limit:
            raise _Reply(ErrorCode.BAD_ARGUMENT, f"runs must be 1..{limit}")
        inputs = self._input_arrays()
        ticks = self._run_tflm("BENCH", self.tflm.bench, warmup, runs, inputs)
        if self.estimate_ticks:  # TFLM still ran every run (faults show); the ticks are the estimate
            ticks = [self._estimate] * len(ticks)
        return {"count": len(ticks), "ticks": [min(int(t), 0xFFFFFFFF) for t in ticks]}

    def _on_arena(self) -> dict:
        info = self._need_model()
        return {"used": info.arena_used, "capacity": self.profile.arena_bytes}

    def _on_decompression(self) -> dict:
        self._need_model()
        used, capacity = self._decompression
        return {"used": used, "capacity": capacity}

    # ---- TENSORS: intermediate tensors (PRESERVE_TENSORS, READ_TENSOR) --------------------------
    def _need_tensors(self) -> None:
        if not self.tensors:
            raise _Reply(ErrorCode.UNKNOWN_COMMAND, "this twin runs without the TENSORS capability")

    def _on_preserve_tensors(self, enable: int) -> dict:
        self._need_tensors()
        if enable not in (0, 1):
            raise _Reply(ErrorCode.BAD_ARGUMENT, f"enable {enable} (0 or 1)")
        self._preserve = bool(enable)
        return {}

    def _on_read_tensor(self, index: int, offset: int, length: int) -> dict:
        self._need_tensors()
        self._need_model()
        if not self._preserved:
            raise _Reply(ErrorCode.BAD_STATE, "the model was not loaded with PRESERVE_TENSORS 1 "
                                              "(send it before the upload)")
        if not self._invoked:
            raise _Reply(ErrorCode.BAD_STATE, "no INVOKE since the model was loaded")
        dtype, data = self._run_tflm("READ_TENSOR", self.tflm.read_tensor, index)
        code = DTYPE_OF_NUMPY.get(dtype.name)
        if code is None:
            raise _Reply(ErrorCode.INTERNAL, f"tensor type {dtype} has no protocol code")
        if offset > len(data) or length > self.max_payload - 5:
            raise _Reply(ErrorCode.BAD_ARGUMENT, f"read of {length} at {offset} (tensor {index} has "
                                                 f"{len(data)} bytes)")
        return {"dtype": code, "bytes": len(data), "data": data[offset:offset + length]}
