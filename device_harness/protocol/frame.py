"""Frame codec: encode, and an incremental decoder that resynchronises after garbage.

Layout (spec.yaml ``frame``): sync A5 5A | type u8 | flags u8 | seq u16 | length u16 | hcrc u16 |
payload | crc u32. ``hcrc`` (low 16 bits of CRC-32 over type..length) lets a receiver reject a
corrupted length at once instead of waiting for a payload that never comes; ``crc`` covers type
through the payload end. The decoder never blocks and never raises on input: a bad header is
skipped (rescan from sync+1), a bad payload CRC is reported as :class:`CrcError` so a device can
answer CRC_MISMATCH with the header's seq.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from device_harness.protocol.crc import crc32

from device_harness.protocol.spec import (
    FRAME_OVERHEAD, HEADER_BYTES, MAX_PAYLOAD_LIMIT, SYNC, TRAILER_BYTES, Flag,
)

_HDR = struct.Struct("<BBHH")  # type flags seq length (the 6 bytes hcrc covers)
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class Frame:
    type: int
    flags: int
    seq: int
    payload: bytes | memoryview = b""  # a view only from FrameDecoder.parse(copy=False)

    @property
    def is_response(self) -> bool:
        return bool(self.flags & Flag.RESPONSE)

    @property
    def is_error(self) -> bool:
        return bool(self.flags & Flag.ERROR)


@dataclass(frozen=True, slots=True)
class CrcError:
    """A frame whose header was sound but whose payload CRC failed."""

    type: int
    flags: int
    seq: int
    length: int


def encode_frame(type_: int, seq: int, payload: bytes = b"", flags: int = 0) -> bytes:
    if len(payload) > MAX_PAYLOAD_LIMIT:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_LIMIT}")
    head = _HDR.pack(type_ & 0xFF, flags & 0xFF, seq & 0xFFFF, len(payload))
    head += _U16.pack(crc32(head) & 0xFFFF)
    crc = crc32(payload, crc32(head))
    return b"".join((SYNC, head, payload, _U32.pack(crc)))


def encode_frame_parts(type_: int, seq: int, prefix: bytes, data: memoryview | bytes,
                       flags: int = 0) -> tuple[bytes, memoryview | bytes, bytes]:
    """One frame as (sync+header+``prefix``, ``data``, trailer) without copying ``data``: for
    ``os.writev`` of bulk payloads (a model chunk is a small prefix plus a slice of the model)."""
    length = len(prefix) + len(data)
    if length > MAX_PAYLOAD_LIMIT:
        raise ValueError(f"payload of {length} bytes exceeds {MAX_PAYLOAD_LIMIT}")
    head = _HDR.pack(type_ & 0xFF, flags & 0xFF, seq & 0xFFFF, length)
    head += _U16.pack(crc32(head) & 0xFFFF)
    crc = crc32(data, crc32(prefix, crc32(head)))
    return SYNC + head + prefix, data, _U32.pack(crc)


class FrameDecoder:
    """Feed bytes in, get :class:`Frame` / :class:`CrcError` events out.

    ``max_payload`` is the negotiated limit: a header announcing more is treated as corrupt.
    Counters (``dropped_bytes``, ``header_errors``, ``crc_errors``) help diagnose a noisy line.

    Bytes live in one fixed staging buffer (room for two largest frames), so a receiver can read
    straight into it with :meth:`fill` and get payloads as views into it from :meth:`parse`: on a
    fast line the copies, not the CRC, are what a Python receiver pays for (see
    benchmarks/upload_goodput.py). :meth:`feed` is the copying convenience form.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD_LIMIT) -> None:
        self.max_payload = max_payload
        self._buf = bytearray(2 * (FRAME_OVERHEAD + MAX_PAYLOAD_LIMIT) + 4096)
        self._view = memoryview(self._buf)
        self._start = self._end = 0  # unparsed bytes are _buf[_start:_end]
        self.dropped_bytes = 0
        self.header_errors = 0
        self.crc_errors = 0
        self.frames = 0

    def reset(self) -> None:
        self._start = self._end = 0

    @property
    def pending(self) -> int:
        return self._end - self._start

    @property
    def wanted(self) -> int:
        """Bytes still missing from a frame whose (valid) header is already buffered, else 0.

        Lets a reader fetch the rest of a large payload in a tight loop instead of going back to
        its event loop for every few KB a pty or UART driver hands over."""
        i, buf = self._start, self._buf
        if self._end - i < HEADER_BYTES or buf[i] != SYNC[0] or buf[i + 1] != SYNC[1]:
            return 0
        header = self._header_at(i)
        if header is None:
            return 0
        return max(0, HEADER_BYTES + header[3] + TRAILER_BYTES - (self._end - i))

    def _header_at(self, i: int) -> tuple[int, int, int, int] | None:
        """(type, flags, seq, length) of the header at ``i``, or None when its hcrc fails or its
        length exceeds the negotiated maximum."""
        header = _HDR.unpack_from(self._buf, i + 2)
        if (crc32(self._view[i + 2:i + 8]) & 0xFFFF) != _U16.unpack_from(self._buf, i + 8)[0] \
                or header[3] > self.max_payload:
            return None
        return header

    def abandon_partial(self) -> list[Frame | CrcError]:
        """Give up on the frame at the head of the buffer (its tail never came) and resync from the
        next sync marker after it; returns any complete frames found behind it."""
        if not self.pending:
            return []
        nxt = self._buf.find(SYNC, self._start + 1, self._end)
        cut = self._end if nxt < 0 else nxt
        self.dropped_bytes += cut - self._start
        self._start = cut
        return self.parse(copy=True)

    def feed(self, data: bytes) -> list[Frame | CrcError]:
        """Append ``data`` and return the events it completes (payloads are ``bytes``)."""
        events: list[Frame | CrcError] = []
        view = memoryview(data)
        while True:
            room = self._room()
            n = min(len(room), len(view))
            room[:n] = view[:n]
            self._end += n
            view = view[n:]
            events += self.parse(copy=True)
            if not view:
                return events

    def fill(self, read: Callable[[memoryview], int | None]) -> int:
        """Let ``read`` write straight into the staging buffer and return how many bytes it wrote,
        e.g. ``dec.fill(lambda v: os.readv(fd, [v]))`` or ``dec.fill(sock.recv_into)``.

        Invalidates the payload views of the events from the previous :meth:`parse`."""
        n = read(self._room()) or 0
        self._end += n
        return n

    def parse(self, copy: bool = False) -> list[Frame | CrcError]:
        """The complete frames buffered so far. With ``copy=False`` a payload is a memoryview into
        the staging buffer, valid until the next :meth:`fill` or :meth:`feed`."""
        buf, mv = self._buf, self._view
        events: list[Frame | CrcError] = []
        pos, n = self._start, self._end
        while True:
            i = buf.find(SYNC, pos, n)
            if i < 0:
                # keep a trailing first sync byte: it may start the next frame
                keep = n - 1 if n > pos and buf[n - 1] == SYNC[0] else n
                self.dropped_bytes += keep - pos
                pos = keep
                break
            self.dropped_bytes += i - pos
            if n - i < HEADER_BYTES:
                pos = i
                break
            header = self._header_at(i)
            if header is None:
                self.header_errors += 1
                self.dropped_bytes += 1
                pos = i + 1
                continue
            type_, flags, seq, length = header
            end = i + HEADER_BYTES + length + TRAILER_BYTES
            if end > n:
                pos = i
                break
            if crc32(mv[i + 2:end - TRAILER_BYTES]) != _U32.unpack_from(buf, end - TRAILER_BYTES)[0]:
                self.crc_errors += 1
                self.dropped_bytes += 1
                events.append(CrcError(type_, flags, seq, length))
                pos = i + 1
                continue
            payload = mv[i + HEADER_BYTES:end - TRAILER_BYTES]
            self.frames += 1
            events.append(Frame(type_, flags, seq, bytes(payload) if copy else payload))
            pos = end
        if pos == n:
            pos = n = 0
        self._start, self._end = pos, n
        return events

    def _room(self) -> memoryview:
        """Free space at the end of the staging buffer, moving unparsed bytes to the front first
        when less than one largest frame is left (at most one partial frame is ever moved)."""
        if len(self._buf) - self._end < FRAME_OVERHEAD + MAX_PAYLOAD_LIMIT and self._start:
            k = self._end - self._start
            self._buf[:k] = self._view[self._start:self._end]
            self._start, self._end = 0, k
        return self._view[self._end:]


def frame_size(payload_len: int) -> int:
    return FRAME_OVERHEAD + payload_len
