"""The link: frames over a serial port, made reliable. The client API (:mod:`.client`) sits on it.

Every request carries a sequence number; a response is matched by it. Stop-and-wait requests are
retried with the same seq (the device answers a retransmission from its cache) after a timeout
scaled to the line time, or at once when the device reports CRC_MISMATCH or a response arrives
corrupted. The chunk size for bulk transfers (:mod:`.bulk_transfer`) adapts to the line: it halves
on a CRC error or timeout and grows after a run of clean answers.

The port is any pyserial port (``serial_for_url``). Writes go through ``port.write``, except on a
stock pyserial POSIX port, whose fd takes the frame's parts with one uncopied ``writev``.
"""

from __future__ import annotations

import logging
import os
import select
import time
from dataclasses import dataclass, field
from typing import Any

import serial

from device_harness.protocol import (
    MAX_PAYLOAD_LIMIT, CrcError, ErrorCode, Frame, FrameDecoder, MsgType, encode_frame_parts,
    pack_request, unpack_error, unpack_response,
)
from device_harness.protocol.device_errors import error_class
from device_harness.protocol.spec import FRAME_OVERHEAD, RESPONSE_MS, RETRIES
from tinyfarm.errors import DeviceError, DeviceTimeout, LinkLost

log = logging.getLogger(__name__)

#: seconds a write may make no progress before the device counts as not reading
WRITE_STALL_S = 5.0


@dataclass
class LinkStats:
    frames_sent: int = 0
    bytes_sent: int = 0
    retries: int = 0
    crc_errors_reported: int = 0
    corrupt_responses: int = 0
    timeouts: int = 0
    extra: dict = field(default_factory=dict)


class Timeout(Exception):
    """No event before the deadline (the caller decides: retransmit, shrink, give up)."""


def direct_write_fd(port: Any) -> int | None:
    """The fd a frame may be ``writev``'d to: a stock pyserial POSIX port's (its ``write`` would
    copy and re-slice the buffer for every partial write, halving the rate on a pty). A port class
    that overrides ``write`` (a fault injector, a spy) must see every byte: None."""
    posix = getattr(serial, "serialposix", None)
    if posix is None or not isinstance(port, posix.Serial) or type(port).write is not posix.Serial.write:
        return None
    return port.fileno()


def error_code(frame: Frame) -> int:
    """The protocol error code of an error frame (-1 when its payload is too short to hold one)."""
    return unpack_error(frame.payload)["code"] if len(frame.payload) >= 3 else -1


def raise_error(frame: Frame, request: str) -> None:
    """Raise the generated error class for an error frame's code, with the device's message."""
    try:
        err = unpack_error(frame.payload)
        code, message = err["code"], err["message"]
    except Exception:  # noqa: BLE001 - a damaged error payload is still an error
        code, message = ErrorCode.INTERNAL, f"malformed error payload {bytes(frame.payload[:32])!r}"
    cls = error_class(code)
    exc = cls(message, request)
    if cls.code != code:  # a code this host does not know
        exc.code = code
    raise exc


def message_name(type_: int) -> str:
    return MsgType(type_).name if type_ in MsgType._value2member_map_ else f"type {type_:#x}"


class Link:
    """Reliable request/response over an open pyserial ``port``.

    ``baud``: the line rate when known (timeouts are scaled to the line time of the frames in
    flight); ``window``: cap on pipelined requests (the device's ``rx_window`` applies too, see
    :meth:`negotiated`); ``chunk``: initial bulk chunk size.
    """

    def __init__(self, port: Any, *, baud: int | None = None, window: int = 16, chunk: int | None = None,
                 response_ms: int = RESPONSE_MS, retries: int = RETRIES, min_chunk: int = 32,
                 name: str = "") -> None:
        self.port = port
        self.name = name or str(getattr(port, "port", "") or port)
        self.baud = baud
        self.max_payload = MAX_PAYLOAD_LIMIT
        self.window_cap = max(1, int(window))
        self.window = 1
        self.response_s = response_ms / 1000.0
        self.retries = retries
        self.min_chunk = min_chunk
        self._chunk = chunk
        self._initial_chunk = chunk
        self._clean_streak = 0
        self._seq = int.from_bytes(os.urandom(2), "little")
        self.decoder = FrameDecoder(MAX_PAYLOAD_LIMIT)
        self._pending: list[Frame | CrcError] = []
        self.stats = LinkStats()
        self._srtt: float | None = None
        self.measured_rate: float | None = None  # bytes/s, from an ECHO when the baud is unknown
        self._line_clear = 0.0  # when everything written so far will have reached the device
        self._write_fd = direct_write_fd(port)
        try:
            self._fd: int | None = port.fileno()
        except (AttributeError, OSError, serial.SerialException, NotImplementedError):
            self._fd = None
        if self._fd is not None:
            port.timeout = 0  # we select() ourselves, then take what is there
        else:
            port.timeout = 0.01
        if self._write_fd is not None:
            # non-blocking: _writev waits in select() with a deadline, so a device that stops
            # reading raises DeviceTimeout instead of hanging the host forever
            os.set_blocking(self._write_fd, False)
        try:
            port.reset_input_buffer()
        except (OSError, serial.SerialException) as exc:  # the device hung up as we connected
            raise LinkLost(f"lost the line to {self.name}: {_first_line(exc)}") from None

    def close(self) -> None:
        try:
            self.port.close()
        except (OSError, serial.SerialException):
            pass

    # ---- after HELLO ----------------------------------------------------------------------------
    def negotiated(self, max_payload: int, rx_window: int) -> None:
        """Adopt the negotiated payload size and window; pick the first bulk chunk size."""
        self.max_payload = max_payload
        self.window = max(1, min(self.window_cap, rx_window))
        if self._initial_chunk:
            self._chunk = self._initial_chunk
        elif self.baud:  # a quarter second of line time: retransmissions stay cheap on slow lines
            self._chunk = max(256, self.baud // 40)
        else:
            self._chunk = self.max_chunk()
        self._chunk = min(self._chunk, self.max_chunk())

    def measure_rate(self, nbytes: int = 512) -> None:
        """Time one ECHO round trip to learn roughly how fast the line is (scales timeouts)."""
        probe = bytes(range(256)) * (nbytes // 256)
        try:
            t0 = time.perf_counter()
            self.request(MsgType.ECHO, probe, response_bytes=len(probe))
            rtt = time.perf_counter() - t0
        except DeviceError:
            return
        self.measured_rate = 2 * (len(probe) + FRAME_OVERHEAD) / max(rtt, 1e-6)

    # ---- line primitives ------------------------------------------------------------------------
    def next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFF
        return self._seq

    def line_time(self, nbytes: int) -> float:
        """Seconds ``nbytes`` take on the line: 10 bits a byte at ``baud`` when known, else at half
        the rate measured by an ECHO after HELLO (conservative); 0 when neither is known."""
        if self.baud:
            return nbytes * 10.0 / self.baud
        if self.measured_rate:
            return nbytes * 2.0 / self.measured_rate
        return 0.0

    def send(self, type_: int, seq: int, payload: bytes, prefix: bytes = b"") -> float:
        """Write one frame whose payload is ``prefix + payload`` without joining them (a model chunk
        is a few header bytes plus a view into the model). Returns when the frame will have fully
        reached the device (line clock)."""
        parts = encode_frame_parts(type_, seq, prefix, payload)
        size = sum(len(p) for p in parts)
        try:
            if self._write_fd is not None:
                self._writev(parts)
            else:
                self.port.write(b"".join(parts))
        except (OSError, serial.SerialException) as exc:
            raise LinkLost(f"lost the line to {self.name}: {_first_line(exc)}") from None
        self.stats.frames_sent += 1
        self.stats.bytes_sent += size
        # frames queue on the line behind each other: a timeout must count from when this one
        # has crossed it, not from when it was written (5% slack for real UART clocks)
        now = time.monotonic()
        self._line_clear = max(self._line_clear, now) + 1.05 * self.line_time(size)
        return self._line_clear

    def _writev(self, parts: tuple[bytes | memoryview, ...]) -> None:
        """``writev`` to the non-blocking fd; bounded: if the device takes no byte for
        ``WRITE_STALL_S`` (plus the frame's line time), it has stopped reading (DeviceTimeout)."""
        views = [memoryview(p) for p in parts if len(p)]
        fd = self._write_fd
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
        try:
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
        except (OSError, serial.SerialException) as exc:
            raise LinkLost(f"lost the line to {self.name}: {_first_line(exc)}") from None

    def next_event(self, deadline: float) -> Frame | CrcError:
        """The next response frame (or corrupt-response event); raises Timeout at ``deadline``."""
        while True:
            while self._pending:
                ev = self._pending.pop(0)
                if isinstance(ev, CrcError) or ev.is_response:
                    return ev
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout
            data = self._read_some(min(left, 0.25))
            if data:
                self._pending.extend(self.decoder.feed(data))

    # ---- stop-and-wait ----------------------------------------------------------------------------
    def _timeout_for(self, req_bytes: int, resp_bytes: int) -> float:
        return self.response_s + self.line_time(req_bytes + resp_bytes + 2 * FRAME_OVERHEAD)

    def request(self, type_: int, payload: bytes = b"", *, response_bytes: int = 64,
                timeout: float | None = None) -> Frame:
        """Send one request, return its response frame (error frames raise).

        Retransmits with the same seq on timeout, on a CRC_MISMATCH answer and on a corrupted
        answer, at most ``retries`` times for timeouts (corruption retries are bounded separately).
        """
        seq = self.next_seq()
        name = message_name(type_)
        limit = self._timeout_for(len(payload), response_bytes) if timeout is None else timeout
        timeouts = corrupt = 0
        t0 = self.send(type_, seq, payload)  # measured from its arrival at the device
        while True:
            try:
                ev = self.next_event(time.monotonic() + limit)
            except Timeout:
                timeouts += 1
                self.stats.timeouts += 1
                if timeouts > self.retries:
                    raise DeviceTimeout(
                        f"no answer from {self.name} to {name} after {self.retries} retries "
                        f"({limit:.2f} s each)") from None
                log.debug("%s: no answer to %s in %.2f s, retransmitting", self.name, name, limit)
                self.send(type_, seq, payload)
                self.stats.retries += 1
                continue
            if ev.seq != seq:
                continue  # a stale answer to an earlier request
            if isinstance(ev, CrcError):
                self.stats.corrupt_responses += 1
            elif ev.is_error and error_code(ev) == ErrorCode.CRC_MISMATCH:
                self.stats.crc_errors_reported += 1
            else:
                self.note_rtt(time.monotonic() - t0)
                if ev.is_error:
                    raise_error(ev, name)
                return ev
            corrupt += 1
            log.debug("%s: %s answer corrupted, retransmitting", self.name, name)
            if corrupt > 16 * self.retries:
                raise DeviceError(f"{name}: the line to {self.name} corrupts every attempt")
            self.send(type_, seq, payload)
            self.stats.retries += 1

    def call(self, type_: int, *, response_bytes: int = 64, timeout: float | None = None,
             **fields: Any) -> dict[str, Any]:
        """Pack ``fields`` per the spec, :meth:`request`, and unpack the response per the spec."""
        frame = self.request(type_, pack_request(type_, **fields), response_bytes=response_bytes,
                             timeout=timeout)
        try:
            return unpack_response(type_, frame.payload)
        except ValueError as exc:
            raise DeviceError(f"{MsgType(type_).name}: malformed response from the device: {exc}") from None

    # ---- timing and chunk size ------------------------------------------------------------------
    def note_rtt(self, rtt: float) -> None:
        rtt = max(rtt, 0.0)
        self._srtt = rtt if self._srtt is None else 0.875 * self._srtt + 0.125 * rtt

    def service_timeout(self) -> float:
        """How long after a frame has crossed the line its answer may take (from the smoothed
        service time, bounded by the spec's response timeout)."""
        return self.response_s if self._srtt is None else min(self.response_s, max(0.05, 4 * self._srtt))

    @property
    def chunk(self) -> int:
        """Current bulk chunk size in bytes (payload data per frame)."""
        if self._chunk is None:
            self._chunk = self.max_chunk()
        return self._chunk

    def max_chunk(self) -> int:
        return max(self.min_chunk, self.max_payload - 8)

    def chunk_failed(self) -> None:
        self._clean_streak = 0
        self._chunk = max(self.min_chunk, self.chunk // 2)
        log.debug("%s: chunk size down to %d B", self.name, self._chunk)

    def chunk_ok(self) -> None:
        self._clean_streak += 1
        if self._clean_streak >= 8 and self.chunk < self.max_chunk():
            self._chunk = min(self.max_chunk(), self.chunk * 2)
            self._clean_streak = 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
