"""Read a ``.tflite`` and reject what is obviously not one, before it goes over a slow serial line.

A structural walk of the flatbuffer (root table, subgraphs, buffers) with plain ``struct``: no
TensorFlow, no generated schema (importing that costs a second), just bounds checks that catch files
that are not TFLite models and truncated ones. The device still verifies the real thing.
"""

from __future__ import annotations

import struct
from pathlib import Path

from tinyfarm.errors import ModelError

IDENTIFIER = b"TFL3"


class _Flatbuffer:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.n = len(data)

    def u32(self, pos: int) -> int:
        if pos < 0 or pos + 4 > self.n:
            raise IndexError(pos)
        return struct.unpack_from("<I", self.data, pos)[0]

    def deref(self, pos: int) -> int:
        target = pos + self.u32(pos)
        if target >= self.n:
            raise IndexError(target)
        return target

    def field(self, table: int, slot: int) -> int | None:
        vt = table - struct.unpack_from("<i", self.data, table)[0]
        if vt < 0 or vt + 4 > self.n:
            raise IndexError(vt)
        vt_size = struct.unpack_from("<H", self.data, vt)[0]
        if vt + vt_size > self.n:
            raise IndexError(vt)
        if 4 + 2 * slot + 2 > vt_size:
            return None
        off = struct.unpack_from("<H", self.data, vt + 4 + 2 * slot)[0]
        return table + off if off else None

    def vector(self, table: int, slot: int, elem_size: int = 4) -> tuple[int, int] | None:
        pos = self.field(table, slot)
        if pos is None:
            return None
        vec = self.deref(pos)
        length = self.u32(vec)
        if vec + 4 + length * elem_size > self.n:
            raise IndexError(vec)
        return vec + 4, length


def check_tflite(data: bytes, name: str = "model") -> None:
    """Raise :class:`ModelError` unless ``data`` looks like a complete TFLite flatbuffer."""
    if len(data) < 16 or data[4:8] != IDENTIFIER:
        raise ModelError(f"{name} is not a TFLite model (no 'TFL3' flatbuffer identifier)")
    fb = _Flatbuffer(data)
    try:
        model = fb.deref(0)
        subgraphs = fb.vector(model, 2)
        if not subgraphs or subgraphs[1] == 0:
            raise ModelError(f"{name} has no subgraph")
        for i in range(subgraphs[1]):
            sg = fb.deref(subgraphs[0] + 4 * i)
            for slot in (0, 1, 2, 3):  # tensors, inputs, outputs, operators
                fb.vector(sg, slot)
        for slot in (1, 6, 7):  # operator_codes, metadata, signature_defs
            vec = fb.vector(model, slot)
            for i in range(vec[1] if vec else 0):
                fb.deref(vec[0] + 4 * i)
        fb.vector(model, 3, elem_size=1)  # description
        for i in range(subgraphs[1]):
            sg = fb.deref(subgraphs[0] + 4 * i)
            tensors = fb.vector(sg, 0)
            for t in range(tensors[1] if tensors else 0):
                tensor = fb.deref(tensors[0] + 4 * t)
                fb.vector(tensor, 0)  # shape
                fb.vector(tensor, 3, elem_size=1)  # name
        buffers = fb.vector(model, 4)
        for i in range(buffers[1] if buffers else 0):
            buf = fb.deref(buffers[0] + 4 * i)
            fb.vector(buf, 0, elem_size=1)
            off_pos, size_pos = fb.field(buf, 1), fb.field(buf, 2)
            if off_pos is not None and size_pos is not None:
                off, size = struct.unpack_from("<QQ", data[off_pos:off_pos + 8] + data[size_pos:size_pos + 8])
                if off and off + size > len(data):
                    raise IndexError(off)
    except (IndexError, struct.error):
        raise ModelError(f"{name} is truncated or corrupt (its flatbuffer points past the end of "
                         f"its {len(data):,} bytes)") from None


def read_model(path: str | Path) -> bytes:
    """The bytes of a ``.tflite`` file, checked; one-line ModelError for anything wrong."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: no such file")
    data = p.read_bytes()
    check_tflite(data, p.name)
    return data
