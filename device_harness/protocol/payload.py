"""Generic payload pack/unpack driven by the field lists in spec.yaml (no per-message code).

Field types: u8/u16/u32/u64/i32/f32 little-endian; ``str8`` (u8 length + UTF-8); ``bytes`` (the rest
of the payload, last field only); ``T[N]`` a fixed array of N; ``T[field]`` an array whose count is an
earlier field (packing fills the count field from the array when it is not given).
"""

from __future__ import annotations

import re
import struct
from functools import lru_cache
from typing import Any, Iterable

from device_harness.protocol.spec import ERROR_PAYLOAD, MESSAGES, Field

_SCALARS = {"u8": "B", "u16": "H", "u32": "I", "u64": "Q", "i32": "i", "f32": "f"}
_ARRAY = re.compile(r"^(\w+)\[(\w+)\]$")


class PayloadError(ValueError):
    """A payload does not match its message layout (answered as MALFORMED)."""


@lru_cache(maxsize=None)
def _parse_type(t: str) -> tuple[str, str | int | None]:
    m = _ARRAY.match(t)
    if m:
        base, count = m.groups()
        if base not in _SCALARS:
            raise ValueError(f"array of unsupported type {t!r}")
        return base, int(count) if count.isdigit() else count
    if t not in _SCALARS and t not in ("str8", "bytes"):
        raise ValueError(f"unknown field type {t!r}")
    return t, None


def pack(fields: Iterable[Field], values: dict[str, Any] | None = None) -> bytes:
    values = dict(values or {})
    fields = tuple(fields)
    for f in fields:  # fill count fields from their arrays
        base, count = _parse_type(f.type)
        if isinstance(count, str) and count not in values:
            values[count] = len(values.get(f.name, ()))
    out = bytearray()
    for i, f in enumerate(fields):
        base, count = _parse_type(f.type)
        try:
            v = values[f.name]
        except KeyError:
            raise PayloadError(f"missing field {f.name!r}") from None
        try:
            if base == "bytes":
                if i != len(fields) - 1:
                    raise PayloadError("'bytes' must be the last field")
                out += bytes(v)
            elif base == "str8":
                raw = str(v).encode("utf-8")[:255]
                out += bytes([len(raw)]) + raw
            elif count is None:
                out += struct.pack("<" + _SCALARS[base], v)
            else:
                n = count if isinstance(count, int) else values[count]
                items = list(v)
                if len(items) != n:
                    raise PayloadError(f"{f.name}: {len(items)} items, count says {n}")
                out += struct.pack(f"<{n}{_SCALARS[base]}", *items)
        except (struct.error, TypeError, OverflowError) as exc:
            raise PayloadError(f"field {f.name!r}: {exc}") from None
    return bytes(out)


def unpack(fields: Iterable[Field], data: bytes | memoryview) -> dict[str, Any]:
    """Field values of ``data``. A ``bytes`` field is a view into ``data`` when ``data`` is a
    memoryview (the receiver's zero-copy path: the caller copies what it keeps), else ``bytes``."""
    fields = tuple(fields)
    view_in = isinstance(data, memoryview)
    mv = memoryview(data)
    pos = 0
    out: dict[str, Any] = {}
    for i, f in enumerate(fields):
        base, count = _parse_type(f.type)
        if base == "bytes":
            out[f.name] = mv[pos:] if view_in else bytes(mv[pos:])
            pos = len(mv)
        elif base == "str8":
            if pos >= len(mv):
                raise PayloadError(f"payload ends before {f.name!r}")
            n = mv[pos]
            if pos + 1 + n > len(mv):
                raise PayloadError(f"string {f.name!r} runs past the payload")
            out[f.name] = bytes(mv[pos + 1:pos + 1 + n]).decode("utf-8", "replace")
            pos += 1 + n
        else:
            n = 1 if count is None else (count if isinstance(count, int) else out.get(count))
            if not isinstance(n, int) or n < 0:
                raise PayloadError(f"bad count for {f.name!r}")
            fmt = f"<{n}{_SCALARS[base]}"
            size = struct.calcsize(fmt)
            if pos + size > len(mv):
                raise PayloadError(f"payload ends inside {f.name!r}")
            vals = struct.unpack_from(fmt, mv, pos)
            out[f.name] = vals[0] if count is None else list(vals)
            pos += size
    if pos != len(mv):
        raise PayloadError(f"{len(mv) - pos} unexpected trailing byte(s)")
    return out


def pack_request(msg_type: int, **values: Any) -> bytes:
    return pack(MESSAGES[msg_type].request, values)


def unpack_request(msg_type: int, data: bytes) -> dict[str, Any]:
    return unpack(MESSAGES[msg_type].request, data)


def pack_response(msg_type: int, **values: Any) -> bytes:
    return pack(MESSAGES[msg_type].response, values)


def unpack_response(msg_type: int, data: bytes) -> dict[str, Any]:
    return unpack(MESSAGES[msg_type].response, data)


def pack_error(code: int, message: str) -> bytes:
    return pack(ERROR_PAYLOAD, {"code": int(code), "message": message})


def unpack_error(data: bytes) -> dict[str, Any]:
    return unpack(ERROR_PAYLOAD, data)
