"""DeviceClient: the protocol's commands over a :class:`~device_harness.link.Link`.

    with DeviceClient.open("socket://127.0.0.1:5555") as dev:   # or a pty path, loop://, rfc2217://
        info = dev.hello()
        result = dev.upload(model_bytes)                          # chunked, pipelined, verified
        outputs, ticks = dev.invoke([x])
        ticks_per_run = dev.bench(warmup=5, runs=100)

The link (framing, retransmission, window, chunking) is :mod:`device_harness.link`; device errors
are the classes generated from the protocol spec (:mod:`device_harness.protocol.device_errors`).
To bring a device up by its ``--device`` name, use :class:`device_harness.session.DeviceSession`.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np

from device_harness.bulk_transfer import pipelined, stream_model
from device_harness.link import Link
from device_harness.protocol import (
    MAX_PAYLOAD_LIMIT, MIN_PAYLOAD, VERSION, Capability, ModelStatus, MsgType, pack_request, unpack_response,
)
from device_harness.protocol.device_errors import (
    BadStateError, CompressionUnsupportedError, HashMismatchError, ModelTooLargeError, NoModelError,
)
from device_harness.protocol.spec import FRAME_OVERHEAD, NUMPY_DTYPES, RESPONSE_MS, RETRIES
from tinyfarm import errors
from tinyfarm.tflite_file import decompression_bytes, is_compressed

__all__ = ["DeviceClient", "DeviceInfo", "TensorInfo", "TensorsUnsupported", "UploadResult"]


class TensorsUnsupported(errors.DeviceError):
    """The device cannot read intermediate tensors (no TENSORS capability)."""
    retryable = False


@dataclass(frozen=True)
class DeviceInfo:
    """HELLO fields, with the negotiated payload size."""

    protocol_version: int
    max_payload: int
    rx_window: int
    capabilities: int
    cpu_hz: int
    tick_hz: int
    arena_bytes: int
    max_model_bytes: int
    firmware_version: str
    tflm_version: str
    board: str
    tick_source: str
    #: the engine's kernel library (KERNELS, sent after HELLO): "reference", "cmsis-nn", ...; "none"
    #: without an engine; "unknown" for an engine on firmware older than the KERNELS capability
    kernels: str = "unknown"

    @property
    def has_engine(self) -> bool:
        return bool(self.capabilities & Capability.ENGINE)

    @property
    def decodes(self) -> bool:
        """The engine runs TFLM-compressed models (DECODE operators): the DECODE capability."""
        return bool(self.capabilities & Capability.DECODE)

    @property
    def reads_tensors(self) -> bool:
        """PRESERVE_TENSORS and READ_TENSOR work: the TENSORS capability."""
        return bool(self.capabilities & Capability.TENSORS)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["capability_names"] = [c.name for c in Capability if self.capabilities & c]
        return d


@dataclass(frozen=True)
class TensorInfo:
    dtype: int  # TfLiteType (protocol DType)
    bytes: int
    scale: float
    zero_point: int
    dims: tuple[int, ...]

    @property
    def numpy_dtype(self) -> np.dtype:
        try:
            return np.dtype(NUMPY_DTYPES[self.dtype])
        except KeyError:
            raise errors.DeviceError(f"device reported an unknown tensor type {self.dtype}") from None


@dataclass
class UploadResult:
    size: int
    seconds: float
    verified: bool
    loaded: bool
    arena_used: int
    inputs: int
    outputs: int
    frames_sent: int = 0
    retransmitted_bytes: int = 0
    final_chunk: int = 0
    #: MODEL_BEGIN sent -> last chunk acknowledged (the rest of ``seconds`` is verify + engine load)
    transfer_seconds: float = 0.0
    #: the model uses TFLM weight compression (DECODE operators)
    compressed: bool = False
    #: alternate decompression memory the loaded model's DECODE outputs use, and its size (DECOMPRESSION;
    #: 0, 0 for an uncompressed model or a device without it): apart from ``arena_used``
    decompression_used: int = 0
    decompression_capacity: int = 0

    @property
    def bytes_per_second(self) -> float:
        return self.size / self.seconds if self.seconds > 0 else float("inf")

    @property
    def transfer_bytes_per_second(self) -> float:
        return self.size / self.transfer_seconds if self.transfer_seconds > 0 else float("inf")


class DeviceClient:
    """The protocol's commands on an open pyserial ``port``.

    ``max_payload``: the host's limit offered in HELLO; ``upload_restarts``: how often an upload
    starts over when the device lost it (reset mid-transfer) or reports a hash mismatch. The other
    keywords configure the :class:`~device_harness.link.Link` (baud, window, chunk, timeouts).
    """

    def __init__(self, port: Any, *, baud: int | None = None, max_payload: int = MAX_PAYLOAD_LIMIT,
                 window: int = 16, chunk: int | None = None, response_ms: int = RESPONSE_MS,
                 retries: int = RETRIES, min_chunk: int = 32, upload_restarts: int = 1,
                 name: str = "") -> None:
        self.link = Link(port, baud=baud, window=window, chunk=chunk, response_ms=response_ms,
                         retries=retries, min_chunk=min_chunk, name=name)
        self.host_max_payload = max(MIN_PAYLOAD, min(int(max_payload), MAX_PAYLOAD_LIMIT))
        self.link.max_payload = self.host_max_payload
        self.upload_restarts = upload_restarts
        self.info: DeviceInfo | None = None
        self.inputs: list[TensorInfo] = []
        self.outputs: list[TensorInfo] = []

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def open(cls, url: str, *, baud: int | None = None, exclusive: bool = False,
             **kwargs: Any) -> "DeviceClient":
        """Open a pyserial URL or device path and wrap it (``exclusive``: lock a device path, so a
        port another program holds is reported, not shared). One clear DeviceError line when the
        port cannot be opened."""
        from device_harness.transports import open_port  # noqa: PLC0415

        port = open_port(url, baud=baud, exclusive=exclusive)
        try:
            return cls(port, baud=baud, name=kwargs.pop("name", url), **kwargs)
        except BaseException:
            port.close()
            raise

    def close(self) -> None:
        self.link.close()

    def __enter__(self) -> "DeviceClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, type_: int, payload: bytes = b"", **kwargs: Any):
        """One raw request (see :meth:`Link.request`)."""
        return self.link.request(type_, payload, **kwargs)

    def call(self, type_: int, **kwargs: Any) -> dict[str, Any]:
        """One request packed and unpacked per the spec (see :meth:`Link.call`)."""
        return self.link.call(type_, **kwargs)

    # ---- commands -----------------------------------------------------------------------------
    def hello(self) -> DeviceInfo:
        """Negotiate version and payload size; returns (and caches) the device's description."""
        r = self.call(MsgType.HELLO, protocol_version=VERSION, max_payload=self.host_max_payload,
                      response_bytes=1100)
        if r["protocol_version"] != VERSION:
            raise errors.DeviceError(f"{self.link.name} speaks protocol version {r['protocol_version']}, "
                                     f"this host speaks {VERSION}")
        r["max_payload"] = max(MIN_PAYLOAD, min(self.host_max_payload, r["max_payload"]))
        self.link.negotiated(r["max_payload"], r["rx_window"])
        if r["capabilities"] & Capability.KERNELS:
            r["kernels"] = self.call(MsgType.KERNELS, response_bytes=256)["kernels"]
        else:
            r["kernels"] = "unknown" if r["capabilities"] & Capability.ENGINE else "none"
        self.info = DeviceInfo(**r)
        if not self.link.baud and self.link.measured_rate is None:
            self.link.measure_rate()
        return self.info

    def _need_info(self) -> DeviceInfo:
        return self.info if self.info is not None else self.hello()

    def reset(self) -> None:
        """Drop the model and interpreter on the device (the answer precedes the reset)."""
        self._need_info()
        self.call(MsgType.RESET)
        self.inputs, self.outputs = [], []

    def echo(self, data: bytes) -> bytes:
        self._need_info()
        return self.call(MsgType.ECHO, data=data, response_bytes=len(data))["data"]

    def arena(self) -> tuple[int, int]:
        """(used, capacity) bytes of the tensor arena for the loaded model."""
        self._need_info()
        r = self.call(MsgType.ARENA)
        return r["used"], r["capacity"]

    def decompression(self) -> tuple[int, int]:
        """(used, capacity) bytes of the alternate decompression memory for the loaded model, where
        DECODE operators put decoded weights outside the arena; (0, 0) without the DECODE capability
        (the device is not asked: older firmware does not know the message)."""
        if not self._need_info().decodes:
            return 0, 0
        r = self.call(MsgType.DECOMPRESSION)
        return r["used"], r["capacity"]

    def check_model(self, model: bytes) -> bool:
        """Whether ``model`` is compressed; :class:`CompressionUnsupportedError` (one line, before any
        byte is sent) when it is and the device has an engine without the DECODE capability."""
        info = self._need_info()
        compressed = is_compressed(model)
        if compressed and info.has_engine and not info.decodes:
            need = decompression_bytes(model)
            raise CompressionUnsupportedError(
                f"the model uses TFLM weight compression (DECODE operators, up to {need:,} B "
                f"decoded at once); {self.link.name} ({info.board}, firmware {info.firmware_version}) was "
                "built without it: rebuild the firmware against a TFLM with compression "
                "(-DTINYFARM_TFLM_COMPRESSION=ON, firmware/README.md)", "MODEL_BEGIN")
        return compressed

    def upload(self, model: bytes, progress: Callable[[int, int], None] | None = None,
               fetch_tensor_info: bool = True) -> UploadResult:
        """Upload ``model`` (MODEL_BEGIN size+sha256, pipelined MODEL_CHUNKs, MODEL_END verify).

        ``progress(done, total)`` is called as the device acknowledges bytes. Returns the device's
        verdict; with an engine and ``fetch_tensor_info`` the tensor layouts are fetched too.
        """
        info = self._need_info()
        model = bytes(model)
        size = len(model)
        compressed = self.check_model(model)
        if size > info.max_model_bytes:
            raise ModelTooLargeError(
                f"the model is {size:,} bytes, the device accepts at most {info.max_model_bytes:,}",
                "MODEL_BEGIN")
        digest = list(hashlib.sha256(model).digest())
        stats = self.link.stats
        restarts = 0
        while True:
            t0 = time.perf_counter()
            frames0, bytes0 = stats.frames_sent, stats.bytes_sent
            try:
                self.call(MsgType.MODEL_BEGIN, size=size, sha256=digest)
                stream_model(self.link, model, progress)
                transfer_seconds = time.perf_counter() - t0
                end_timeout = self.link.response_s * 10 + self.link.line_time(256)  # verify + load
                r = self.call(MsgType.MODEL_END, timeout=end_timeout)
                break
            except (BadStateError, HashMismatchError) as exc:
                # the device lost the upload (it reset mid-transfer) or the bytes arrived damaged
                # past the CRC: start over, a bounded number of times
                if restarts >= self.upload_restarts:
                    raise
                restarts += 1
                stats.extra["upload_restarts"] = stats.extra.get("upload_restarts", 0) + 1
                stats.extra["last_restart_reason"] = str(exc)
        seconds = time.perf_counter() - t0
        status = ModelStatus(r["status"])
        frames = stats.frames_sent - frames0
        result = UploadResult(size=size, seconds=seconds, verified=bool(status & ModelStatus.VERIFIED),
                              loaded=bool(status & ModelStatus.LOADED), arena_used=r["arena_used"],
                              inputs=r["inputs"], outputs=r["outputs"], frames_sent=frames,
                              retransmitted_bytes=max(0, stats.bytes_sent - bytes0 - size
                                                      - frames * (FRAME_OVERHEAD + 4)),
                              final_chunk=self.link.chunk, transfer_seconds=transfer_seconds,
                              compressed=compressed)
        if not result.verified:
            raise HashMismatchError("the device did not verify the model", "MODEL_END")
        self.inputs, self.outputs = [], []
        if result.loaded and compressed:
            result.decompression_used, result.decompression_capacity = self.decompression()
        if result.loaded and fetch_tensor_info:
            self.inputs = [self.tensor_info(0, i) for i in range(result.inputs)]
            self.outputs = [self.tensor_info(1, i) for i in range(result.outputs)]
        return result

    def tensor_info(self, direction: int, index: int) -> TensorInfo:
        """Layout of input (direction 0) or output (1) tensor ``index``."""
        self._need_info()
        r = self.call(MsgType.TENSOR_INFO, direction=direction, index=index)
        return TensorInfo(r["dtype"], r["bytes"], r["scale"], r["zero_point"], tuple(r["dims"]))

    def _check_inputs(self, inputs: Sequence[np.ndarray]) -> list[bytes]:
        if not self.inputs:
            raise NoModelError("no model with tensor info is loaded (upload one first)", "SET_INPUT")
        if len(inputs) != len(self.inputs):
            raise errors.ModelError(f"the model has {len(self.inputs)} input(s), {len(inputs)} given")
        out = []
        for i, (arr, t) in enumerate(zip(inputs, self.inputs)):
            arr = np.asarray(arr)
            if arr.dtype != t.numpy_dtype:
                raise errors.ModelError(f"input {i}: dtype {arr.dtype}, the model expects {t.numpy_dtype}")
            if arr.size != int(np.prod(t.dims, dtype=np.int64)) or arr.nbytes != t.bytes:
                raise errors.ModelError(f"input {i}: shape {arr.shape}, the model expects {t.dims}")
            out.append(np.ascontiguousarray(arr).tobytes())
        return out

    def _bulk_step(self) -> int:
        return max(self.link.min_chunk, min(self.link.chunk, self.link.max_payload - 8))

    def set_inputs(self, inputs: Sequence[np.ndarray]) -> None:
        raw = self._check_inputs(inputs)
        step = self._bulk_step()
        reqs = [(MsgType.SET_INPUT, pack_request(MsgType.SET_INPUT, index=i, offset=off,
                                                 data=data[off:off + step]), 16)
                for i, data in enumerate(raw) for off in range(0, len(data), step)]
        pipelined(self.link, reqs)

    def run(self) -> int:
        """INVOKE on the current inputs; returns the device's ticks."""
        return self.call(MsgType.INVOKE, timeout=self.link.response_s * 30)["ticks"]

    def get_outputs(self) -> list[np.ndarray]:
        outs = []
        for i, t in enumerate(self.outputs):
            step = min(self._bulk_step(), 0xFFFF)
            reqs = [(MsgType.GET_OUTPUT, pack_request(MsgType.GET_OUTPUT, index=i, offset=off,
                                                     length=min(step, t.bytes - off)), min(step, t.bytes - off))
                    for off in range(0, t.bytes, step)]
            frames = pipelined(self.link, reqs)
            data = b"".join(unpack_response(MsgType.GET_OUTPUT, f.payload)["data"] for f in frames)
            if len(data) != t.bytes:
                raise errors.DeviceError(f"output {i}: {len(data)} bytes received, {t.bytes} expected")
            outs.append(np.frombuffer(data, dtype=t.numpy_dtype).reshape(t.dims).copy())
        return outs

    def invoke(self, inputs: Sequence[np.ndarray]) -> tuple[list[np.ndarray], int]:
        """SET_INPUT (chunked) + INVOKE + GET_OUTPUT (chunked): (outputs, ticks)."""
        self.set_inputs(inputs)
        ticks = self.run()
        return self.get_outputs(), ticks

    def bench(self, warmup: int = 5, runs: int = 100, inputs: Sequence[np.ndarray] | None = None) -> list[int]:
        """Per-run ticks of ``runs`` timed invokes after ``warmup`` untimed ones (on current inputs).

        Runs beyond one payload's worth are split over several BENCH calls (warm-up only on the first).
        """
        self._need_info()
        if inputs is not None:
            self.set_inputs(inputs)
        per_call = max(1, (self.link.max_payload - 4) // 4)
        ticks: list[int] = []
        first = True
        while len(ticks) < runs:
            n = min(per_call, runs - len(ticks))
            w = warmup if first else 0
            est = self.link.response_s * 30 + (w + n) * 0.5
            r = self.call(MsgType.BENCH, warmup=w, runs=n, response_bytes=4 + 4 * n, timeout=est)
            ticks.extend(r["ticks"])
            first = False
        return ticks

    # ---- intermediate tensors (TENSORS capability) -----------------------------------------------
    def _need_tensors(self) -> None:
        info = self._need_info()
        if not info.reads_tensors:
            raise TensorsUnsupported(
                f"{self.link.name} ({info.board}, firmware {info.firmware_version}) cannot read intermediate "
                "tensors (no TENSORS capability): use the twin, or firmware built with a TFLM engine and "
                "-DTINYFARM_TENSOR_DEBUG=ON (firmware/README.md)")

    def preserve_tensors(self, enable: bool = True) -> None:
        """Models uploaded from now on keep every tensor (preserve-all-tensors: a bigger arena)."""
        self._need_tensors()
        self.call(MsgType.PRESERVE_TENSORS, enable=int(bool(enable)))

    def read_tensor(self, index: int) -> np.ndarray:
        """Tensor ``index`` (the model's tensor numbering, subgraph 0) after INVOKE, flat, in its dtype."""
        self._need_tensors()
        head = self.call(MsgType.READ_TENSOR, index=index, offset=0, length=0)
        size, step, t = head["bytes"], min(self._bulk_step(), 0xFFFF), MsgType.READ_TENSOR
        reqs = [(t, pack_request(t, index=index, offset=o, length=min(step, size - o)), 5 + min(step, size - o))
                for o in range(0, size, step)]
        data = b"".join(unpack_response(t, f.payload)["data"] for f in pipelined(self.link, reqs))
        if len(data) != size:
            raise errors.DeviceError(f"tensor {index}: {len(data)} bytes received, {size} expected")
        return np.frombuffer(data, dtype=TensorInfo(head["dtype"], size, 0.0, 0, ()).numpy_dtype).copy()
