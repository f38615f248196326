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
import zlib
from dataclasses import dataclass

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
    payload: bytes = b""

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
    head += _U16.pack(zlib.crc32(head) & 0xFFFF)
    crc = zlib.crc32(payload, zlib.crc32(head))
    return b"".join((SYNC, head, payload, _U32.pack(crc)))


class FrameDecoder:
    """Feed bytes in, get :class:`Frame` / :class:`CrcError` events out.

    ``max_payload`` is the negotiated limit: a header announcing more is treated as corrupt.
    Counters (``dropped_bytes``, ``header_errors``, ``crc_errors``) help diagnose a noisy line.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD_LIMIT) -> None:
        self.max_payload = max_payload
        self._buf = bytearray()
        self.dropped_bytes = 0
        self.header_errors = 0
        self.crc_errors = 0
        self.frames = 0

    def reset(self) -> None:
        self._buf.clear()

    @property
    def pending(self) -> int:
        return len(self._buf)

    @property
    def wanted(self) -> int:
        """Bytes still missing from a frame whose (valid) header is already buffered, else 0.

        Lets a reader fetch a large payload in one tight loop instead of decoding every 4 KB."""
        buf = self._buf
        if len(buf) < HEADER_BYTES or buf[:2] != SYNC:
            return 0
        head = bytes(buf[2:8])
        type_, flags, seq, length = _HDR.unpack(head)
        if (zlib.crc32(head) & 0xFFFF) != _U16.unpack_from(buf, 8)[0] or length > self.max_payload:
            return 0
        return max(0, HEADER_BYTES + length + TRAILER_BYTES - len(buf))

    def abandon_partial(self) -> list[Frame | CrcError]:
        """Give up on the frame at the head of the buffer (its tail never came) and resync from the
        next sync marker after it; returns any complete frames found behind it."""
        if not self._buf:
            return []
        nxt = self._buf.find(SYNC, 1)
        cut = len(self._buf) if nxt < 0 else nxt
        self.dropped_bytes += cut
        del self._buf[:cut]
        return self.feed(b"")

    def feed(self, data: bytes) -> list[Frame | CrcError]:
        buf = self._buf
        buf += data
        events: list[Frame | CrcError] = []
        pos = 0
        n = len(buf)
        while True:
            i = buf.find(SYNC, pos)
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
            head = bytes(buf[i + 2:i + 8])
            (hcrc,) = _U16.unpack_from(buf, i + 8)
            type_, flags, seq, length = _HDR.unpack(head)
            if (zlib.crc32(head) & 0xFFFF) != hcrc or length > self.max_payload:
                self.header_errors += 1
                self.dropped_bytes += 1
                pos = i + 1
                continue
            end = i + HEADER_BYTES + length + TRAILER_BYTES
            if end > n:
                pos = i
                break
            (crc,) = _U32.unpack_from(buf, end - TRAILER_BYTES)
            with memoryview(buf) as mv:
                ok = zlib.crc32(mv[i + 2:end - TRAILER_BYTES]) == crc
                payload = bytes(mv[i + HEADER_BYTES:end - TRAILER_BYTES]) if ok else b""
            if not ok:
                self.crc_errors += 1
                self.dropped_bytes += 1
                events.append(CrcError(type_, flags, seq, length))
                pos = i + 1
                continue
            self.frames += 1
            events.append(Frame(type_, flags, seq, payload))
            pos = end
        if pos:
            del buf[:pos]
        return events


def frame_size(payload_len: int) -> int:
    return FRAME_OVERHEAD + payload_len
