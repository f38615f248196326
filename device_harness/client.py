"""DeviceClient: the host side of the wire protocol over any serial.Serial-like port.

    with DeviceClient.open("socket://127.0.0.1:5555") as dev:   # or a pty path, loop://, rfc2217://
        info = dev.hello()
        result = dev.upload(model_bytes)                          # chunked, pipelined, verified
        outputs, ticks = dev.invoke([x])
        ticks_per_run = dev.bench(warmup=5, runs=100)

Reliability: every request carries a sequence number; a response is matched by it. Stop-and-wait
requests are retried with the same seq (the device answers a retransmission from its cache) after a
timeout scaled to the line time, or at once when the device reports CRC_MISMATCH or a response
arrives corrupted. Bulk transfers (model chunks, input writes, output reads) are pipelined up to the
device's advertised ``rx_window``; uploads use go-back-N on the device's cumulative ``received``
acknowledgement. The chunk size adapts to the line: it halves on a CRC error or timeout and grows
after a run of clean answers, so an upload completes even with 1% of its bytes corrupted.

Device errors are raised as :class:`DeviceError` subclasses carrying the protocol ``code``.
"""

from __future__ import annotations

import hashlib
import os
import select
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from device_harness.protocol import (
    MAX_PAYLOAD_LIMIT, MIN_PAYLOAD, VERSION, Capability, CrcError, ErrorCode, Flag, Frame,
    FrameDecoder, ModelStatus, MsgType, encode_frame_parts, pack_request, unpack_error, unpack_response,
)
from device_harness.protocol.spec import FRAME_OVERHEAD, NUMPY_DTYPES, RESPONSE_MS, RETRIES
from tinyfarm import errors

__all__ = ["DeviceClient", "DeviceInfo", "TensorInfo", "UploadResult", "DeviceError",
           "DeviceTimeout", "DeviceFaultError", "error_class"]

DeviceError = errors.DeviceError


class ProtocolDeviceError(DeviceError):
    """The device answered an error frame: ``code`` (ErrorCode) and the device's ``message``."""

    code: int = ErrorCode.INTERNAL

    def __init__(self, message: str, code: int | None = None, request: str = "") -> None:
        if code is not None:
            self.code = int(code)
        self.device_message = message
        self.request = request
        try:
            name = ErrorCode(self.code).name
        except ValueError:
            name = f"error {self.code}"
        where = f" ({request})" if request else ""
        super().__init__(f"device error {name}{where}: {message}")


class DeviceTimeout(DeviceError):
    """No (valid) answer after the bounded retries: link down, wrong URL, or a hung device."""


def _make(name: str, code: int, base: type = ProtocolDeviceError) -> type:
    return type(name, (base,), {"code": int(code), "__doc__": f"Device answered {ErrorCode(code).name}."})


DeviceFaultError = _make("DeviceFaultError", ErrorCode.DEVICE_FAULT)
_ERROR_CLASSES: dict[int, type] = {ErrorCode.DEVICE_FAULT: DeviceFaultError}
for _code in ErrorCode:
    if _code not in _ERROR_CLASSES and _code != ErrorCode.OK:
        _cls_name = "".join(part.title() for part in _code.name.split("_")) + "Error"
        _ERROR_CLASSES[_code] = _make(_cls_name, _code)
        globals()[_cls_name] = _ERROR_CLASSES[_code]
        __all__.append(_cls_name)


def error_class(code: int) -> type:
    """The :class:`ProtocolDeviceError` subclass for an ErrorCode (e.g. ``error_class(13)``)."""
    return _ERROR_CLASSES.get(int(code), ProtocolDeviceError)


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

    @property
    def has_engine(self) -> bool:
        return bool(self.capabilities & Capability.ENGINE)

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
            raise DeviceError(f"device reported an unknown tensor type {self.dtype}") from None


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

    @property
    def bytes_per_second(self) -> float:
        return self.size / self.seconds if self.seconds > 0 else float("inf")

    @property
    def transfer_bytes_per_second(self) -> float:
        return self.size / self.transfer_seconds if self.transfer_seconds > 0 else float("inf")


@dataclass
class LinkStats:
    frames_sent: int = 0
    bytes_sent: int = 0
    retries: int = 0
    crc_errors_reported: int = 0
    corrupt_responses: int = 0
    timeouts: int = 0
    extra: dict = field(default_factory=dict)


#: seconds a write may make no progress before the device counts as not reading
WRITE_STALL_S = 5.0


class _Timeout(Exception):
    pass


class DeviceClient:
    """Protocol client over an open serial.Serial-like ``port`` (read/write/in_waiting/timeout).

    ``baud``: the line rate when known (timeouts are scaled to the line time of the frames in
    flight); ``max_payload``: the host's limit offered in HELLO; ``window``: cap on pipelined
    requests (the device's ``rx_window`` applies too); ``chunk``: initial bulk chunk size;
    ``upload_restarts``: how often an upload starts over when the device lost it (reset mid-transfer)
    or reports a hash mismatch.
    """

    def __init__(self, port: Any, *, baud: int | None = None, max_payload: int = MAX_PAYLOAD_LIMIT,
                 window: int = 16, chunk: int | None = None, response_ms: int = RESPONSE_MS,
                 retries: int = RETRIES, min_chunk: int = 32, upload_restarts: int = 1,
                 name: str = "") -> None:
        self.port = port
        self.name = name or str(getattr(port, "port", "") or port)
        self.baud = baud
        self.host_max_payload = max(MIN_PAYLOAD, min(int(max_payload), MAX_PAYLOAD_LIMIT))
        self.max_payload = self.host_max_payload
        self.window_cap = max(1, int(window))
        self.window = 1
        self.response_s = response_ms / 1000.0
        self.retries = retries
        self.min_chunk = min_chunk
        self.upload_restarts = upload_restarts
        self._chunk = chunk
        self._initial_chunk = chunk
        self._clean_streak = 0
        self._seq = int.from_bytes(os.urandom(2), "little")
        self.decoder = FrameDecoder(MAX_PAYLOAD_LIMIT)
        self._pending: list[Frame | CrcError] = []
        self.info: DeviceInfo | None = None
        self.inputs: list[TensorInfo] = []
        self.outputs: list[TensorInfo] = []
        self.stats = LinkStats()
        self._srtt: float | None = None
        self._measured_rate: float | None = None  # bytes/s, from an ECHO when the baud is unknown
        self._line_clear = 0.0  # when everything written so far will have reached the device
        self._fd: int | None = None
        # direct fd writes only for pyserial's own posix ports (wrappers must see every byte)
        self._raw_write = type(port).__module__ == "serial.serialposix"
        try:
            self._fd = port.fileno()
            port.timeout = 0  # we select() ourselves, then take what is there
            if self._raw_write:
                # non-blocking: _write_fd waits in select() with a deadline, so a device that
                # stops reading raises DeviceTimeout instead of hanging the host forever
                os.set_blocking(self._fd, False)
        except Exception:
            self._fd = None
            try:
                port.timeout = 0.01
            except Exception:
                pass
        try:
            port.reset_input_buffer()
        except Exception:
            pass

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def open(cls, url: str, *, baud: int | None = None, **kwargs: Any) -> "DeviceClient":
        """Open a pyserial URL or device path (``serial.serial_for_url``) and wrap it.

        Raises :class:`DeviceError` with one clear line when the port cannot be opened.
        """
        from device_harness.transports import open_port  # noqa: PLC0415

        port = open_port(url, baud=baud)
        return cls(port, baud=baud, name=url, **kwargs)

    def close(self) -> None:
        try:
            self.port.close()
        except Exception:
            pass

    def __enter__(self) -> "DeviceClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- link primitives ----------------------------------------------------------------------
    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFF
        return self._seq

    def line_time(self, nbytes: int) -> float:
        """Seconds ``nbytes`` take on the line: 10 bits a byte at ``baud`` when known, else at half
        the rate measured by an ECHO after HELLO (conservative); 0 when neither is known."""
        if self.baud:
            return nbytes * 10.0 / self.baud
        if self._measured_rate:
            return nbytes * 2.0 / self._measured_rate
        return 0.0

    def _send(self, type_: int, seq: int, payload: bytes) -> float:
        """Write one frame; return when it will have fully reached the device (line clock)."""
        return self._send_parts(type_, seq, b"", payload)

    def _send_parts(self, type_: int, seq: int, prefix: bytes, data: bytes | memoryview) -> float:
        """Write one frame whose payload is ``prefix + data`` without joining them: a model chunk
        is a few header bytes plus a view into the model, handed to ``writev`` uncopied.
        Returns when the frame will have fully reached the device (line clock)."""
        parts = encode_frame_parts(type_, seq, prefix, data)
        size = sum(len(p) for p in parts)
        if self._raw_write:
            self._write_fd(parts)
        else:
            self.port.write(b"".join(parts))
        self.stats.frames_sent += 1
        self.stats.bytes_sent += size
        # frames queue on the line behind each other: a timeout must count from when this one
        # has crossed it, not from when it was written (5% slack for real UART clocks)
        now = time.monotonic()
        self._line_clear = max(self._line_clear, now) + 1.05 * self.line_time(size)
        return self._line_clear

    def _write_fd(self, parts: tuple[bytes | memoryview, ...]) -> None:
        """``writev`` straight to the port's non-blocking fd: pyserial's write copies the buffer,
        re-slices it and re-arms its timeout for every partial write, which halves the rate on a pty.

        Bounded: if the device takes no byte for ``WRITE_STALL_S`` (plus the frame's line time),
        it has stopped reading and DeviceTimeout is raised.
        """
        views = [memoryview(p) for p in parts if len(p)]
        fd = self._fd
        stall = WRITE_STALL_S + 2 * self.line_time(sum(len(v) for v in views))
        deadline = time.monotonic() + stall
        while views:
            try:
                written = os.writev(fd, views)
            except BlockingIOError:
                written = 0
            if written:
                while written:  # drop what went out, keep the rest of a partly written part
                    if written >= len(views[0]):
                        written -= len(views.pop(0))
                    else:
                        views[0] = views[0][written:]
                        written = 0
                deadline = time.monotonic() + stall
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                left = sum(len(v) for v in views)
                raise DeviceTimeout(f"device stopped reading: {left} bytes not taken in {stall:.1f} s")
            select.select([], [fd], [], remaining)

    def _read_some(self, timeout: float) -> bytes:
        if self._fd is not None:
            ready, _, _ = select.select([self._fd], [], [], max(timeout, 0.0))
            if not ready:
                return b""
            return self.port.read(1 << 16)
        deadline = time.monotonic() + timeout
        while True:
            data = self.port.read(1)
            if data:
                waiting = self.port.in_waiting
                return data + (self.port.read(waiting) if waiting else b"")
            if time.monotonic() >= deadline:
                return b""

    def _next_event(self, deadline: float) -> Frame | CrcError:
        """The next response frame (or corrupt-response event); raises _Timeout at ``deadline``."""
        while True:
            while self._pending:
                ev = self._pending.pop(0)
                if isinstance(ev, CrcError) or ev.is_response:
                    return ev
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Timeout
            data = self._read_some(min(left, 0.25))
            if data:
                self._pending.extend(self.decoder.feed(data))

    def _raise_error(self, frame: Frame, request: str) -> None:
        try:
            err = unpack_error(frame.payload)
            code, message = err["code"], err["message"]
        except Exception:
            code, message = ErrorCode.INTERNAL, f"malformed error payload {frame.payload[:32]!r}"
        raise error_class(code)(message, code, request)

    def _timeout_for(self, req_bytes: int, resp_bytes: int) -> float:
        return self.response_s + self.line_time(req_bytes + resp_bytes + 2 * FRAME_OVERHEAD)

    def request(self, type_: int, payload: bytes = b"", *, response_bytes: int = 64,
                timeout: float | None = None) -> Frame:
        """Stop-and-wait: send one request, return its response frame (error frames raise).

        Retransmits with the same seq on timeout, on a CRC_MISMATCH answer and on a corrupted
        answer, at most ``retries`` times for timeouts (corruption retries are bounded separately).
        """
        seq = self._next_seq()
        name = MsgType(type_).name if type_ in MsgType._value2member_map_ else f"type {type_:#x}"
        limit = self._timeout_for(len(payload), response_bytes) if timeout is None else timeout
        timeouts = corrupt = 0
        t0 = self._send(type_, seq, payload)  # measured from its arrival at the device
        while True:
            try:
                ev = self._next_event(time.monotonic() + limit)
            except _Timeout:
                timeouts += 1
                self.stats.timeouts += 1
                if timeouts > self.retries:
                    raise DeviceTimeout(
                        f"no answer from {self.name} to {name} after {self.retries} retries "
                        f"({limit:.2f} s each)") from None
                self._send(type_, seq, payload)
                self.stats.retries += 1
                continue
            if isinstance(ev, CrcError):
                if ev.seq != seq:
                    continue
                self.stats.corrupt_responses += 1
            elif ev.seq != seq:
                continue  # stale answer to an earlier request
            elif ev.is_error:
                err = unpack_error(ev.payload) if len(ev.payload) >= 3 else {"code": -1}
                if err.get("code") != ErrorCode.CRC_MISMATCH:
                    self._note_rtt(time.monotonic() - t0)
                    self._raise_error(ev, name)
                self.stats.crc_errors_reported += 1
            else:
                self._note_rtt(time.monotonic() - t0)
                return ev
            corrupt += 1
            if corrupt > 16 * self.retries:
                raise DeviceError(f"{name}: the line to {self.name} corrupts every attempt")
            self._send(type_, seq, payload)
            self.stats.retries += 1

    def _note_rtt(self, rtt: float) -> None:
        rtt = max(rtt, 0.0)
        self._srtt = rtt if self._srtt is None else 0.875 * self._srtt + 0.125 * rtt

    def call(self, type_: int, *, response_bytes: int = 64, timeout: float | None = None,
             **fields: Any) -> dict[str, Any]:
        """Pack ``fields`` per the spec, :meth:`request`, and unpack the response per the spec."""
        frame = self.request(type_, pack_request(type_, **fields), response_bytes=response_bytes,
                             timeout=timeout)
        try:
            return unpack_response(type_, frame.payload)
        except ValueError as exc:
            raise DeviceError(f"{MsgType(type_).name}: malformed response from the device: {exc}") from None

    # ---- adaptive chunking --------------------------------------------------------------------
    @property
    def chunk(self) -> int:
        """Current bulk chunk size in bytes (payload data per frame)."""
        if self._chunk is None:
            self._chunk = self._max_chunk()
        return self._chunk

    def _max_chunk(self) -> int:
        return max(self.min_chunk, self.max_payload - 8)

    def _chunk_failed(self) -> None:
        self._clean_streak = 0
        self._chunk = max(self.min_chunk, self.chunk // 2)

    def _chunk_ok(self) -> None:
        self._clean_streak += 1
        if self._clean_streak >= 8 and self.chunk < self._max_chunk():
            self._chunk = min(self._max_chunk(), self.chunk * 2)
            self._clean_streak = 0

    def _service_timeout(self) -> float:
        """How long after a frame has crossed the line its answer may take (from the smoothed
        service time, bounded by the spec's response timeout)."""
        return self.response_s if self._srtt is None else min(self.response_s, max(0.05, 4 * self._srtt))

    # ---- commands -----------------------------------------------------------------------------
    def hello(self) -> DeviceInfo:
        """Negotiate version and payload size; returns (and caches) the device's description."""
        r = self.call(MsgType.HELLO, protocol_version=VERSION, max_payload=self.host_max_payload,
                      response_bytes=1100)
        if r["protocol_version"] != VERSION:
            raise DeviceError(f"{self.name} speaks protocol version {r['protocol_version']}, "
                              f"this host speaks {VERSION}")
        self.max_payload = max(MIN_PAYLOAD, min(self.host_max_payload, r["max_payload"]))
        self.decoder.max_payload = MAX_PAYLOAD_LIMIT  # answers may use the full negotiated size
        self.window = max(1, min(self.window_cap, r["rx_window"]))
        if self._initial_chunk:
            self._chunk = self._initial_chunk
        elif self.baud:  # a quarter second of line time: retransmissions stay cheap on slow lines
            self._chunk = max(256, self.baud // 40)
        else:
            self._chunk = self._max_chunk()
        self._chunk = min(self._chunk, self._max_chunk())
        r["max_payload"] = self.max_payload
        self.info = DeviceInfo(**r)
        if not self.baud and self._measured_rate is None:
            self._measure_rate()
        return self.info

    def _measure_rate(self, nbytes: int = 512) -> None:
        """Time one ECHO round trip to learn roughly how fast the line is (scales timeouts)."""
        probe = bytes(range(256)) * (nbytes // 256)
        try:
            t0 = time.perf_counter()
            self.request(MsgType.ECHO, probe, response_bytes=len(probe))
            rtt = time.perf_counter() - t0
        except DeviceError:
            return
        self._measured_rate = 2 * (len(probe) + FRAME_OVERHEAD) / max(rtt, 1e-6)

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

    def upload(self, model: bytes, progress: Callable[[int, int], None] | None = None,
               fetch_tensor_info: bool = True) -> UploadResult:
        """Upload ``model`` (MODEL_BEGIN size+sha256, pipelined MODEL_CHUNKs, MODEL_END verify).

        ``progress(done, total)`` is called as the device acknowledges bytes. Returns the device's
        verdict; with an engine and ``fetch_tensor_info`` the tensor layouts are fetched too.
        """
        info = self._need_info()
        model = bytes(model)
        size = len(model)
        if size > info.max_model_bytes:
            raise ModelTooLargeError(
                f"the model is {size:,} bytes, the device accepts at most {info.max_model_bytes:,}",
                ErrorCode.MODEL_TOO_LARGE, "MODEL_BEGIN")
        digest = list(hashlib.sha256(model).digest())
        restarts = 0
        while True:
            t0 = time.perf_counter()
            frames0, bytes0 = self.stats.frames_sent, self.stats.bytes_sent
            try:
                self.call(MsgType.MODEL_BEGIN, size=size, sha256=digest)
                self._upload_chunks(model, progress)
                transfer_seconds = time.perf_counter() - t0
                end_timeout = self.response_s * 10 + self.line_time(256)  # verification + engine load
                r = self.call(MsgType.MODEL_END, timeout=end_timeout)
                break
            except (BadStateError, HashMismatchError) as exc:
                # the device lost the upload (it reset mid-transfer) or the bytes arrived damaged
                # past the CRC: start over, a bounded number of times
                if restarts >= self.upload_restarts:
                    raise
                restarts += 1
                self.stats.extra["upload_restarts"] = self.stats.extra.get("upload_restarts", 0) + 1
                self.stats.extra["last_restart_reason"] = str(exc)
        seconds = time.perf_counter() - t0
        status = ModelStatus(r["status"])
        result = UploadResult(size=size, seconds=seconds, verified=bool(status & ModelStatus.VERIFIED),
                              loaded=bool(status & ModelStatus.LOADED), arena_used=r["arena_used"],
                              inputs=r["inputs"], outputs=r["outputs"],
                              frames_sent=self.stats.frames_sent - frames0,
                              retransmitted_bytes=max(0, self.stats.bytes_sent - bytes0 - size
                                                      - (self.stats.frames_sent - frames0) * (FRAME_OVERHEAD + 4)),
                              final_chunk=self.chunk, transfer_seconds=transfer_seconds)
        if not result.verified:
            raise HashMismatchError("the device did not verify the model", ErrorCode.HASH_MISMATCH, "MODEL_END")
        self.inputs, self.outputs = [], []
        if result.loaded and fetch_tensor_info:
            self.inputs = [self.tensor_info(0, i) for i in range(result.inputs)]
            self.outputs = [self.tensor_info(1, i) for i in range(result.outputs)]
        return result

    def _upload_chunks(self, model: bytes, progress: Callable[[int, int], None] | None) -> None:
        size = len(model)
        acked = 0
        next_off = 0
        outstanding: dict[int, tuple[int, int, float]] = {}  # seq -> (offset, length, sent_at)
        stalls = 0
        inflight = 0
        cwnd = float(self.window)  # congestion-style window: halves on a loss, grows on clean acks
        view = memoryview(model)
        while acked < size:
            while len(outstanding) < int(cwnd) and next_off < size:
                n = min(self.chunk, size - next_off)
                seq = self._next_seq()
                # spec layout: the fields before the trailing `data`, then the data uncopied
                prefix = pack_request(MsgType.MODEL_CHUNK, offset=next_off, data=b"")
                arrival = self._send_parts(MsgType.MODEL_CHUNK, seq, prefix, view[next_off:next_off + n])
                outstanding[seq] = (next_off, n, arrival)
                inflight += n
                next_off += n
            deadline = min(o[2] for o in outstanding.values()) + self._service_timeout()
            go_back = False
            try:
                ev = self._next_event(deadline)
            except _Timeout:
                self.stats.timeouts += 1
                if self.chunk <= self.min_chunk:
                    stalls += 1  # only give up once the chunk cannot shrink any further
                if stalls > self.retries:
                    raise DeviceTimeout(f"upload to {self.name} stalled at byte {acked:,} of {size:,}") from None
                self._chunk_failed()
                go_back = True
                ev = None
            if isinstance(ev, CrcError):
                # an answer arrived corrupted. If it was an error answer, the chunk failed: go back;
                # otherwise the chunk got through and a later cumulative ack will cover it.
                self.stats.corrupt_responses += 1
                if ev.flags & Flag.ERROR and ev.seq in outstanding:
                    self._chunk_failed()
                    go_back = True
            elif isinstance(ev, Frame):
                if ev.type != MsgType.MODEL_CHUNK:
                    continue
                if ev.is_error:
                    code = unpack_error(ev.payload)["code"] if len(ev.payload) >= 3 else -1
                    if code == ErrorCode.CRC_MISMATCH:
                        self.stats.crc_errors_reported += 1
                        self._chunk_failed()
                        go_back = ev.seq in outstanding
                    elif code == ErrorCode.OUT_OF_ORDER:
                        go_back = ev.seq in outstanding
                    else:
                        self._raise_error(ev, "MODEL_CHUNK")
                else:
                    try:
                        received = unpack_response(MsgType.MODEL_CHUNK, ev.payload)["received"]
                    except ValueError:
                        received = acked
                    if ev.seq in outstanding:
                        self._note_rtt(time.monotonic() - outstanding[ev.seq][2])
                        self._chunk_ok()
                        cwnd = min(float(self.window), cwnd + 1.0 / cwnd)
                    if received > acked:
                        acked = min(received, size)
                        stalls = 0
                        if progress:
                            progress(acked, size)
                    for s, (off, n, _) in list(outstanding.items()):
                        if off + n <= acked:
                            del outstanding[s]
                            inflight -= n
                    if next_off < acked:
                        next_off = acked
            if go_back:
                self.stats.retries += 1
                cwnd = max(min(4.0, float(self.window)), cwnd / 2)
                outstanding.clear()
                inflight = 0
                next_off = acked

    def tensor_info(self, direction: int, index: int) -> TensorInfo:
        """Layout of input (direction 0) or output (1) tensor ``index``."""
        self._need_info()
        r = self.call(MsgType.TENSOR_INFO, direction=direction, index=index)
        return TensorInfo(r["dtype"], r["bytes"], r["scale"], r["zero_point"], tuple(r["dims"]))

    def _pipelined(self, requests: Sequence[tuple[int, bytes, int]]) -> list[Frame]:
        """Idempotent requests (type, payload, expected response bytes), up to ``window`` in flight.

        A request whose answer is lost or corrupt, or answered CRC_MISMATCH, is resent (same seq:
        the device re-executes it or answers from its cache — both are harmless for these).
        """
        results: list[Frame | None] = [None] * len(requests)
        outstanding: dict[int, tuple[int, float, int]] = {}  # seq -> (index, sent_at, attempts)
        nxt = 0
        done = 0
        while done < len(requests):
            while len(outstanding) < self.window and nxt < len(requests):
                seq = self._next_seq()
                t, p, _ = requests[nxt]
                outstanding[seq] = (nxt, self._send(t, seq, p), 0)
                nxt += 1
            # answers queue on the line too: allow for the expected response bytes in flight
            answer_bytes = sum(requests[i][2] + FRAME_OVERHEAD for i, _, _ in outstanding.values())
            deadline = (min(o[1] for o in outstanding.values()) + self._service_timeout()
                        + 1.05 * self.line_time(answer_bytes))
            resend: list[int] = []
            try:
                ev = self._next_event(deadline)
            except _Timeout:
                self.stats.timeouts += 1
                self._chunk_failed()
                resend = list(outstanding)
                ev = None
            if isinstance(ev, CrcError):
                self.stats.corrupt_responses += 1
                if ev.seq in outstanding:
                    resend = [ev.seq]
            elif isinstance(ev, Frame) and ev.seq in outstanding:
                idx = outstanding[ev.seq][0]
                if ev.is_error:
                    code = unpack_error(ev.payload)["code"] if len(ev.payload) >= 3 else -1
                    if code != ErrorCode.CRC_MISMATCH:
                        self._raise_error(ev, MsgType(requests[idx][0]).name)
                    self.stats.crc_errors_reported += 1
                    resend = [ev.seq]
                else:
                    self._note_rtt(time.monotonic() - outstanding[ev.seq][1])
                    results[idx] = ev
                    del outstanding[ev.seq]
                    done += 1
            for seq in resend:
                idx, _, attempts = outstanding[seq]
                if attempts >= 16 * self.retries:
                    raise DeviceTimeout(f"{MsgType(requests[idx][0]).name} to {self.name} failed after "
                                        f"{attempts} attempts")
                t, p, _ = requests[idx]
                self.stats.retries += 1
                outstanding[seq] = (idx, self._send(t, seq, p), attempts + 1)
        return results  # type: ignore[return-value]

    def _check_inputs(self, inputs: Sequence[np.ndarray]) -> list[bytes]:
        if not self.inputs:
            raise NoModelError("no model with tensor info is loaded (upload one first)",
                               ErrorCode.NO_MODEL, "SET_INPUT")
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

    def set_inputs(self, inputs: Sequence[np.ndarray]) -> None:
        raw = self._check_inputs(inputs)
        reqs = []
        step = max(self.min_chunk, min(self.chunk, self.max_payload - 8))
        for i, data in enumerate(raw):
            for off in range(0, len(data), step):
                reqs.append((MsgType.SET_INPUT,
                             pack_request(MsgType.SET_INPUT, index=i, offset=off, data=data[off:off + step]), 16))
        self._pipelined(reqs)

    def run(self) -> int:
        """INVOKE on the current inputs; returns the device's ticks."""
        timeout = self.response_s * 30
        return self.call(MsgType.INVOKE, timeout=timeout)["ticks"]

    def get_outputs(self) -> list[np.ndarray]:
        outs = []
        for i, t in enumerate(self.outputs):
            step = max(self.min_chunk, min(self.chunk, self.max_payload - 8, 0xFFFF))
            reqs = [(MsgType.GET_OUTPUT, pack_request(MsgType.GET_OUTPUT, index=i, offset=off,
                                                     length=min(step, t.bytes - off)), min(step, t.bytes - off))
                    for off in range(0, t.bytes, step)]
            frames = self._pipelined(reqs)
            data = b"".join(unpack_response(MsgType.GET_OUTPUT, f.payload)["data"] for f in frames)
            if len(data) != t.bytes:
                raise DeviceError(f"output {i}: {len(data)} bytes received, {t.bytes} expected")
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
        per_call = max(1, (self.max_payload - 4) // 4)
        ticks: list[int] = []
        first = True
        while len(ticks) < runs:
            n = min(per_call, runs - len(ticks))
            w = warmup if first else 0
            est = self.response_s * 30 + (w + n) * 0.5
            r = self.call(MsgType.BENCH, warmup=w, runs=n, response_bytes=4 + 4 * n, timeout=est)
            ticks.extend(r["ticks"])
            first = False
        return ticks


# names used in type hints above are created dynamically
ModelTooLargeError: type = _ERROR_CLASSES[ErrorCode.MODEL_TOO_LARGE]
HashMismatchError: type = _ERROR_CLASSES[ErrorCode.HASH_MISMATCH]
BadStateError: type = _ERROR_CLASSES[ErrorCode.BAD_STATE]
NoModelError: type = _ERROR_CLASSES[ErrorCode.NO_MODEL]
