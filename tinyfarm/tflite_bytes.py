"""Where the bytes of a ``.tflite`` go, and a trimmer that drops what TFLite Micro never reads.

At a few KB a flatbuffer's own overhead (names, signatures, metadata, tables) is a large share of a
model's flash. :func:`byte_breakdown` walks the flatbuffer with plain ``struct`` and claims byte
ranges for categories, each byte once (weights first), so the counts sum exactly to the file size:

- ``weights``: data bytes (not the length prefix) of every buffer a tensor references: the
  constants ops read (filters, biases, shape operands); exact;
- ``quantization``: QuantizationParameters tables, their min/max/scale/zero_point vectors, details;
- ``tensors``: Tensor tables, shape/shape_signature vectors, the subgraphs' tensors/inputs/outputs
  vectors, the buffers vector, Buffer tables and the length prefixes of their data;
- ``operators``: Operator tables, their inputs/outputs/intermediates vectors, builtin options tables
  (and RESHAPE/SQUEEZE options' vectors), custom options, operator codes and custom op names;
- ``metadata``: Metadata entries, their names and their buffers (e.g. ``min_runtime_version``,
  ``CONVERSION_METADATA``); ``signatures``: SignatureDefs, TensorMaps and all their strings;
- ``strings``: tensor and subgraph names, the model description;
- ``padding_and_structure``: the rest: root offset, file identifier, Model and SubGraph tables,
  vtables (shared between tables), alignment padding, data of buffers nothing references, and what
  the walk does not know (e.g. sparsity parameters).

A table counts with its inline size from its vtable (its own padding included): approximate only
where a table has sub-objects the walk does not know.

:func:`trim_for_tflm` keeps what TFLM reads, checked in tflite-micro's source (commit 90b983c2,
``tensorflow/lite/micro/micro_allocator.cc``, ``micro_allocation_info.cc``,
``micro_interpreter_graph.cc``): metadata only by the names ``OfflineMemoryAllocation`` (an offline
memory plan) and ``COMPRESSION_METADATA`` (``USE_TFLM_COMPRESSION``); never tensor or subgraph
names, the description, signature defs, ``min_runtime_version``, ``shape_signature`` or
quantization min/max. A tensor's quantization is filled only when both ``scale`` and
``zero_point`` are non-empty, with ``zero_point[i]`` if the array is as long as ``scale``, else
``zero_point[0]`` for every channel (per-channel ops still see ``zero_point->size == channels``).
LiteRT, however, refuses zero_point and scale arrays of different lengths ("QuantizationParam has
%d zero_point values and %d scale values"): shrinking them is opt-in, for TFLM-only models.
"""
from __future__ import annotations

import struct

import flatbuffers
import numpy as np

from tinyfarm.errors import ModelError
from tinyfarm.tflite_file import IDENTIFIER, check_tflite

CATEGORIES = ("weights", "quantization", "tensors", "operators", "metadata", "signatures", "strings",
              "padding_and_structure")
COMPRESSION_METADATA = b"COMPRESSION_METADATA"
TFLM_METADATA = frozenset({b"OfflineMemoryAllocation", COMPRESSION_METADATA})  # all TFLM reads

_W, _Q, _T, _O, _M, _SIG, _S = range(7)
_VECTOR_OPTIONS = (17, 30)  # BuiltinOptions ReshapeOptions (new_shape), SqueezeOptions (squeeze_dims)
_CUSTOM = 32  # BuiltinOperator CUSTOM
# Bytes per element of each TensorType (for a buffer's natural alignment).
_ITEMSIZE = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 5: 1, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8,
             15: 4, 16: 2, 17: 1}


# -- byte_breakdown ------------------------------------------------------------------------------
class _Painter:
    """A flatbuffer reader that assigns byte ranges to categories, each byte at most once."""

    def __init__(self, data: bytes) -> None:
        self.d = data
        self.owner = np.full(len(data), -1, np.int8)

    def deref(self, pos: int) -> int:
        return pos + struct.unpack_from("<I", self.d, pos)[0]

    def _vtable(self, table: int) -> tuple[int, int, int]:  # (position, size, table's inline size)
        vt = table - struct.unpack_from("<i", self.d, table)[0]
        return (vt, *struct.unpack_from("<HH", self.d, vt))

    def field(self, table: int, slot: int) -> int | None:
        vt, vt_size, _ = self._vtable(table)
        if 4 + 2 * slot + 2 > vt_size:
            return None
        off = struct.unpack_from("<H", self.d, vt + 4 + 2 * slot)[0]
        return table + off if off else None

    def scalar(self, table: int, slot: int, fmt: str, default: int = 0) -> int:
        pos = self.field(table, slot)
        return default if pos is None else struct.unpack_from("<" + fmt, self.d, pos)[0]

    def paint(self, cat: int, start: int, end: int) -> None:
        if end > len(self.d) or start < 0:
            raise IndexError(end)
        seg = self.owner[start:end]
        seg[seg < 0] = cat

    def table(self, cat: int, table: int) -> int:
        """Claim a table's inline part (its vtable stays structure)."""
        self.paint(cat, table, table + self._vtable(table)[2])
        return table

    def child(self, cat: int, table: int, slot: int) -> int | None:  # a sub-table, claimed
        pos = self.field(table, slot)
        return None if pos is None else self.table(cat, self.deref(pos))

    def vector(self, cat: int | None, table: int, slot: int, elem: int = 4,
               extra: int = 0) -> tuple[int, int] | None:
        """``(first element, length)`` of a vector field; claims it with its prefix unless cat is None."""
        pos = self.field(table, slot)
        if pos is None:
            return None
        vec = self.deref(pos)
        n = struct.unpack_from("<I", self.d, vec)[0]
        if cat is not None:
            self.paint(cat, vec, vec + 4 + n * elem + extra)
        return vec + 4, n

    def string(self, cat: int, table: int, slot: int) -> None:
        self.vector(cat, table, slot, 1, extra=1)  # + the terminating NUL

    def named(self, cat: int, table: int, name_slot: int) -> None:  # a table and its name string
        self.table(cat, table)
        self.string(cat, table, name_slot)

    def tables(self, cat: int | None, table: int, slot: int) -> list[int]:
        """The tables of a vector-of-tables field (the vector claimed, the tables not)."""
        v = self.vector(cat, table, slot)
        return [self.deref(v[0] + 4 * i) for i in range(v[1])] if v else []


def byte_breakdown(model: bytes) -> dict[str, int]:
    """Bytes of ``model`` per category of :data:`CATEGORIES` (module docstring), summing exactly to
    ``len(model)``; :class:`ModelError` for something that is not a complete ``.tflite``."""
    model = bytes(model)
    check_tflite(model)
    p = _Painter(model)
    try:
        _walk(p)
    except (IndexError, struct.error):
        raise ModelError("the .tflite flatbuffer is corrupt (a reference points outside it)") from None
    counts = np.bincount(p.owner.astype(np.int64) + 1, minlength=len(CATEGORIES) + 1)
    named = {name: int(counts[i + 1]) for i, name in enumerate(CATEGORIES[:-1])}
    named["padding_and_structure"] = int(counts[0])
    return named


def _walk(p: _Painter) -> None:
    root = p.deref(0)
    buffers = p.tables(None, root, 4)
    subgraphs = p.tables(None, root, 2)
    metadata = p.tables(None, root, 6)
    tensor_bufs = {p.scalar(t, 2, "I") for sg in subgraphs for t in p.tables(None, sg, 0)}
    meta_bufs = {p.scalar(m, 1, "I") for m in metadata} - tensor_bufs
    for i in sorted(tensor_bufs):  # weights first: exact
        if i < len(buffers):
            data = p.vector(None, buffers[i], 0, 1)
            if data:
                p.paint(_W, data[0], data[0] + data[1])
            offset, size = p.scalar(buffers[i], 1, "Q"), p.scalar(buffers[i], 2, "Q")
            if offset > 1:  # data stored after the flatbuffer
                p.paint(_W, offset, offset + size)
    p.vector(_M, root, 6)
    p.vector(_M, root, 5)  # deprecated metadata_buffer
    for m in metadata:
        p.named(_M, m, 0)
    for i in sorted(i for i in meta_bufs if i < len(buffers)):
        p.vector(_M, p.table(_M, buffers[i]), 0, 1)
    p.vector(_T, root, 4)
    for b in buffers:
        data = p.vector(None, p.table(_T, b), 0, 1)
        if data:
            p.paint(_T, data[0] - 4, data[0])  # the length prefix; unreferenced data stays structure
    for sig in p.tables(_SIG, root, 7):
        p.named(_SIG, sig, 2)
        for tm in (*p.tables(_SIG, sig, 0), *p.tables(_SIG, sig, 1)):  # TensorMaps
            p.named(_SIG, tm, 0)
    p.string(_S, root, 3)  # description
    p.vector(_O, root, 1)
    for code in p.tables(_O, root, 1):
        p.named(_O, code, 1)
    for sg in subgraphs:
        _walk_subgraph(p, sg)


def _walk_subgraph(p: _Painter, sg: int) -> None:
    p.string(_S, sg, 4)
    p.vector(_T, sg, 1)
    p.vector(_T, sg, 2)
    for t in p.tables(_T, sg, 0):
        p.table(_T, t)
        p.vector(_T, t, 0)
        p.vector(_T, t, 7)  # shape_signature
        p.string(_S, t, 3)
        for vt in p.tables(_T, t, 9):  # variant_tensors
            p.table(_T, vt)
            p.vector(_T, vt, 0)
        q = p.child(_Q, t, 4)
        if q is not None:
            for slot, elem in ((0, 4), (1, 4), (2, 4), (3, 8)):
                p.vector(_Q, q, slot, elem)
            details = p.child(_Q, q, 5)
            if details is not None and p.scalar(q, 4, "B") == 1:  # CustomQuantization
                p.vector(_Q, details, 0, 1)
    for op in p.tables(_O, sg, 3):
        p.table(_O, op)
        for slot, elem in ((1, 4), (2, 4), (5, 1), (7, 1), (8, 4)):
            p.vector(_O, op, slot, elem)
        options = p.child(_O, op, 4)
        if options is not None and p.scalar(op, 3, "B") in _VECTOR_OPTIONS:
            p.vector(_O, options, 0)
        p.child(_O, op, 12)  # builtin_options_2
        offset, size = p.scalar(op, 9, "Q"), p.scalar(op, 10, "Q")
        if offset > 1:
            p.paint(_O, offset, offset + size)


def format_breakdown(before: dict[str, int], after: dict[str, int] | None = None) -> str:
    """A text table of one breakdown, or of two (before, after) with the bytes saved."""
    rows = [f"{'category':<22}{'bytes':>8}" + (f"{'trimmed':>9}{'saved':>8}" if after else "")]
    for name in (*CATEGORIES, "total"):
        b, a = ((sum(d.values()) if name == "total" else d[name]) if d else 0 for d in (before, after))
        rows.append(f"{name:<22}{b:>8,}" + (f"{a:>9,}{b - a:>8,}" if after else ""))
    return "\n".join(rows)


# -- trim_for_tflm -------------------------------------------------------------------------------
def trim_for_tflm(model: bytes, *, shrink_zero_points: bool = False, align: int | None = None) -> bytes:
    """``model`` without what TFLite Micro does not read; the same outputs on TFLM and LiteRT.

    Removes tensor and subgraph names, the description, signature defs, every metadata entry but
    ``OfflineMemoryAllocation`` / ``COMPRESSION_METADATA`` and the buffers of the removed ones,
    ``shape_signature``, quantization min/max (and emptied quantization tables), unused operator
    codes. Every empty buffer becomes buffer 0 (the empty sentinel), identical constant buffers
    are stored once, unreferenced ones dropped (``COMPRESSION_METADATA`` uses buffer indices: such a
    model keeps them; trim before compressing). Equal quantization tables, scalar-only options
    tables and numeric vectors (shapes, scales, zero points, op inputs) are written once, shared.

    ``align``: alignment of each buffer's data; ``None`` gives each its natural alignment,
    max(4, element size of the tensors reading it), and 16 to the buffers of custom ops and
    metadata (the converter aligns all to 16: pass ``align=16`` for kernel ports that assume it).
    ``shrink_zero_points``: store a zero_point array whose values are all equal as one value; TFLM
    reads it the same (module docstring) but LiteRT refuses the model: for TFLM-only deployment.
    """
    from ai_edge_litert import schema_py_generated as schema

    check_tflite(bytes(model))
    try:
        m = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    except Exception as exc:  # noqa: BLE001 - a damaged flatbuffer fails in many ways
        raise ModelError(f"cannot parse the .tflite flatbuffer: {exc}") from None
    m.buffers, m.metadata = m.buffers or [], m.metadata or []
    if any(b.offset > 1 for b in m.buffers):
        raise ModelError("cannot trim a model whose buffers are stored outside the flatbuffer")
    kept_meta = [x for x in m.metadata if bytes(x.name or b"") in TFLM_METADATA]
    m.description = m.signatureDefs = m.metadataBuffer = None
    for sg in m.subgraphs:
        sg.tensors, sg.operators = sg.tensors or [], sg.operators or []
        sg.name, sg.debugMetadataIndex = None, -1
        for t in sg.tensors:
            t.name, t.shapeSignature = None, None
            t.quantization = _trim_quantization(t.quantization, shrink_zero_points)
        for op in sg.operators:
            op.debugMetadataIndex = -1
    _drop_unused_opcodes(m)
    _share_tables(m)
    if any(bytes(x.name) == COMPRESSION_METADATA for x in kept_meta):
        # Its value tables are buffers only it knows: keep all indices, empty removed metadata's.
        used = {x.buffer for x in kept_meta} | {t.buffer for sg in m.subgraphs for t in sg.tensors}
        dropped = {x.buffer for x in m.metadata if x not in kept_meta} - used
        m.buffers = [_AlignedBuffer(b"" if i in dropped else _buffer_bytes(m.buffers, i), align or 16)
                     for i in range(len(m.buffers))]
    else:
        _renumber_buffers(m, kept_meta, align)
    m.metadata = kept_meta or None
    builder = _SharingBuilder(len(model) + 1024)
    builder.Finish(m.Pack(builder), file_identifier=IDENTIFIER)
    return bytes(builder.Output())


def _trim_quantization(q, shrink_zero_points: bool):
    if q is None:
        return None
    q.min = q.max = None
    if (q.scale is None or len(q.scale) == 0) and not q.detailsType:
        return None  # neither TFLM nor LiteRT reads a quantization without scales
    zp = np.asarray(q.zeroPoint if q.zeroPoint is not None else [], np.int64)
    if shrink_zero_points and len(zp) > 1 and np.all(zp == zp[0]):
        q.zeroPoint = zp[:1]
    return q


def _drop_unused_opcodes(m) -> None:
    used = sorted({op.opcodeIndex for sg in m.subgraphs for op in sg.operators})
    if len(used) < len(m.operatorCodes or []):
        new_index = {old: new for new, old in enumerate(used)}
        m.operatorCodes = [m.operatorCodes[i] for i in used]
        for op in (op for sg in m.subgraphs for op in sg.operators):
            op.opcodeIndex = new_index[op.opcodeIndex]


class _SharingBuilder(flatbuffers.Builder):
    """A flatbuffer builder that writes each distinct numeric vector once; the tables holding an
    equal one point to it (a flatbuffer is a DAG: readers only follow offsets)."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self._vectors: dict[tuple[str, bytes], int] = {}

    def CreateNumpyVector(self, x):
        key = (np.asarray(x).dtype.str, np.ascontiguousarray(x).tobytes())
        if key not in self._vectors:
            self._vectors[key] = super().CreateNumpyVector(x)
        return self._vectors[key]


class _Shared:
    """One table object standing for equal ones: packed once, every holder points to it."""

    def __init__(self, obj, key, packed: dict) -> None:
        self.obj, self.key, self.packed = obj, key, packed

    def Pack(self, builder):
        if self.key not in self.packed:
            self.packed[self.key] = self.obj.Pack(builder)
        return self.packed[self.key]


def _share_tables(m) -> None:
    """Equal quantization parameters and equal scalar-only builtin options become one table each."""
    packed: dict = {}
    for sg in m.subgraphs:
        for t in sg.tensors:
            q = t.quantization
            if q is not None and not q.detailsType:
                zp = np.asarray(q.zeroPoint if q.zeroPoint is not None else [], np.int64)
                key = ("q", np.asarray(q.scale, np.float32).tobytes(), zp.tobytes(),
                       q.zeroPoint is None, q.quantizedDimension)
                t.quantization = _Shared(q, key, packed)
        for op in sg.operators:
            for attr in ("builtinOptions", "builtinOptions2"):
                options = getattr(op, attr, None)
                values = tuple(sorted(vars(options).items())) if options is not None else ()
                if values and all(v is None or isinstance(v, (bool, int, float)) for _, v in values):
                    setattr(op, attr, _Shared(options, (type(options).__name__, values), packed))


class _AlignedBuffer:
    """A Buffer whose data is packed at a chosen alignment (the flatbuffers object API aligns a
    ``[ubyte]`` vector only to 4, ignoring the schema's ``force_align: 16``)."""

    def __init__(self, data: bytes, align: int) -> None:
        self.data, self.align = data, align

    def Pack(self, builder):
        from ai_edge_litert import schema_py_generated as schema

        vec = None
        if self.data:
            builder.StartVector(1, len(self.data), self.align)
            builder.head -= len(self.data)
            builder.Bytes[builder.head: builder.head + len(self.data)] = self.data
            vec = builder.EndVector()
        schema.BufferStart(builder)
        if vec is not None:
            schema.BufferAddData(builder, vec)
        return schema.BufferEnd(builder)


def _buffer_bytes(buffers: list, index: int) -> bytes:
    if not 0 <= index < len(buffers) or buffers[index].data is None:
        return b""
    return np.asarray(buffers[index].data, dtype=np.uint8).tobytes()


def _renumber_buffers(m, kept_meta: list, align: int | None) -> None:
    old = m.buffers
    data: list[bytes] = [b""]  # buffer 0: the empty sentinel
    alignment = [1]
    by_content: dict[bytes, int] = {}

    def place(index: int, want: int, share: bool) -> int:
        content = _buffer_bytes(old, index)
        if not content:
            return 0
        new = by_content.get(content) if share else None
        if new is None:
            data.append(content)
            alignment.append(1)
            new = len(data) - 1
            if share:
                by_content[content] = new
        alignment[new] = max(alignment[new], want)
        return new

    for sg in m.subgraphs:
        custom = set()  # tensors of custom ops (e.g. an Ethos-U command stream): 16, as converted
        for op in sg.operators:
            code = m.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) == _CUSTOM:
                custom.update(int(i) for v in (op.inputs, op.outputs) if v is not None for i in v)
        for k, t in enumerate(sg.tensors):
            want = align or (16 if k in custom else max(4, _ITEMSIZE.get(t.type, 16)))
            t.buffer = place(t.buffer, want, share=not t.isVariable)  # a variable keeps its own
    for x in kept_meta:
        x.buffer = place(x.buffer, align or 16, share=False)
    m.buffers = [_AlignedBuffer(d, a) for d, a in zip(data, alignment)]
