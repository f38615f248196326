"""Everything tinyfarm reads out of a ``.tflite`` file, in one place.

- :func:`has_tflite_identifier`: the one check of the flatbuffer file identifier (``TFL3``), used
  by every part that accepts a ``.tflite`` (pipeline, device commands, farm, TFLM twin);
- :func:`check_tflite` / :func:`read_model`: a structural walk of the flatbuffer (root table,
  subgraphs, buffers) with plain ``struct``, no TensorFlow (importing its generated schema costs a
  second): rejects what is obviously not a model, or a truncated one, before it goes over a slow
  serial line. The device still verifies the real thing;
- :func:`inspect_tflite`: what is really inside a model: operators, weight buffers, their sparsity
  and parameter count (imports TensorFlow's flatbuffer reader when called).

Sparsity is measured in the flatbuffer's weight buffers, not in the Keras model: conversion
(BatchNorm folding, quantization, float16 casting) must not be trusted to keep zeros. A zero weight
stays an exact zero in every variant kind (symmetric int8 weights have zero point 0), so the count
of zero elements in a weight buffer is the sparsity a sparse kernel or compressor can use.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyfarm.errors import ModelError

IDENTIFIER = b"TFL3"


def has_tflite_identifier(data: bytes) -> bool:
    """Whether ``data`` (a whole file or at least its first 8 bytes) carries the ``TFL3`` identifier."""
    return len(data) >= 8 and bytes(data[4:8]) == IDENTIFIER


# -- structural check (no TensorFlow) -------------------------------------------------------------
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
    if len(data) < 16 or not has_tflite_identifier(data):
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


DECODE_CUSTOM_CODE = b"TFLM_DECODE"  # TFLM's DECODE operator (weights compressed for TFLM)


def _decode_opcodes(fb: "_Flatbuffer", data: bytes, model: int) -> set[int]:
    """Indices of the operator codes that are TFLM's DECODE (custom code ``TFLM_DECODE``)."""
    codes = fb.vector(model, 1)
    decode = set()
    for i in range(codes[1] if codes else 0):
        custom = fb.vector(fb.deref(codes[0] + 4 * i), 1, elem_size=1)  # custom_code
        if custom and data[custom[0]: custom[0] + custom[1]] == DECODE_CUSTOM_CODE:
            decode.add(i)
    return decode


def is_compressed(data: bytes) -> bool:
    """Whether an operator of the model is TFLM's DECODE (``pipeline.tflm_compress`` output): it
    then needs a TFLM built with compression and, ideally, alternate decompression memory."""
    if not has_tflite_identifier(data):
        return False
    fb = _Flatbuffer(data)
    try:
        model = fb.deref(0)
        decode = _decode_opcodes(fb, data, model)
        subgraphs = fb.vector(model, 2)
        for s in range(subgraphs[1] if decode and subgraphs else 0):
            ops = fb.vector(fb.deref(subgraphs[0] + 4 * s), 3)
            for o in range(ops[1] if ops else 0):
                pos = fb.field(fb.deref(ops[0] + 4 * o), 0)  # opcode_index (default 0)
                if (fb.u32(pos) if pos is not None else 0) in decode:
                    return True
    except (IndexError, struct.error):
        return False
    return False


# TfLiteType -> bytes per element (int4 is unpacked to one byte per element when decoded)
_TYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8, 15: 4,
               16: 2, 17: 1, 18: 2}
DECODE_ALIGNMENT = 16  # TFLM's MicroArenaBufferAlignment(): every DECODE output starts aligned


def decompression_bytes(data: bytes) -> int:
    """Alternate decompression memory that holds every DECODE output of ``data`` (0: not compressed).

    TFLM's DECODE kernel restarts the alternate memory at each DECODE operator and places that
    operator's outputs one after the other, each 16-byte aligned (``kernels/decode.cc``); so the
    size is the largest, over DECODE operators, of their outputs laid out that way. Decoded tensors
    that do not fit go into the tensor arena instead.
    """
    if not is_compressed(data):
        return 0
    fb = _Flatbuffer(data)
    try:
        model = fb.deref(0)
        decode = _decode_opcodes(fb, data, model)
        subgraphs = fb.vector(model, 2)
        need = 0
        for s in range(subgraphs[1] if subgraphs else 0):
            sg = fb.deref(subgraphs[0] + 4 * s)
            tensors, ops = fb.vector(sg, 0), fb.vector(sg, 3)
            for o in range(ops[1] if ops else 0):
                op = fb.deref(ops[0] + 4 * o)
                pos = fb.field(op, 0)  # opcode_index (default 0)
                outputs = fb.vector(op, 2)
                if (fb.u32(pos) if pos is not None else 0) not in decode or not outputs:
                    continue
                end = 0
                for k in range(outputs[1]):
                    tensor = fb.deref(tensors[0] + 4 * struct.unpack_from("<i", data, outputs[0] + 4 * k)[0])
                    shape = fb.vector(tensor, 0)
                    elements = 1
                    for d in range(shape[1] if shape else 0):
                        elements *= max(0, struct.unpack_from("<i", data, shape[0] + 4 * d)[0])
                    tpos = fb.field(tensor, 1)  # type (default FLOAT32)
                    ttype = data[tpos] if tpos is not None else 0
                    end = -(-end // DECODE_ALIGNMENT) * DECODE_ALIGNMENT + elements * _TYPE_BYTES.get(ttype, 1)
                need = max(need, end)
    except (IndexError, struct.error, TypeError):
        raise ModelError("the model's DECODE operators point past its flatbuffer") from None
    return need


# -- contents (TensorFlow's flatbuffer reader) -------------------------------------------------
# Operators whose input 1 is a weight tensor (kernel) and input 2 a bias.
WEIGHTED_OPS = {"CONV_2D": (1, 2), "DEPTHWISE_CONV_2D": (1, 2), "FULLY_CONNECTED": (1, 2),
                "TRANSPOSE_CONV": (1, 3), "CONV_3D": (1, 2)}

_NUMPY_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 7: np.int16,
                9: np.int8, 10: np.float64, 15: np.uint32, 16: np.uint16}


@dataclass
class WeightTensor:
    name: str
    op: str
    shape: list[int]
    dtype: str
    elements: int
    zeros: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.elements if self.elements else 0.0


@dataclass
class TfliteInfo:
    ops: list[str]
    weights: list[WeightTensor] = field(default_factory=list)
    bias_elements: int = 0
    input_types: list[str] = field(default_factory=list)
    output_types: list[str] = field(default_factory=list)

    @property
    def weight_elements(self) -> int:
        return sum(w.elements for w in self.weights)

    @property
    def sparsity(self) -> float:
        """Zeros over all weight elements (0 when the model has no weights)."""
        total = self.weight_elements
        return sum(w.zeros for w in self.weights) / total if total else 0.0

    @property
    def parameter_count(self) -> int:
        """Weights plus biases of the conv/dense operators (folded BatchNorm included)."""
        return self.weight_elements + self.bias_elements

    def per_layer(self) -> dict[str, float]:
        return {w.name: round(w.sparsity, 6) for w in self.weights}


def _op_names() -> dict[int, str]:
    from tensorflow.lite.python import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def _type_names() -> dict[int, str]:
    from tensorflow.lite.python import schema_py_generated as schema

    return {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}


def inspect_tflite(model_bytes: bytes) -> TfliteInfo:
    """Parse a ``.tflite`` flatbuffer; raises :class:`ModelError` if it is not one."""
    from tensorflow.lite.tools import flatbuffer_utils

    if not has_tflite_identifier(model_bytes):
        raise ModelError("not a .tflite flatbuffer (no TFL3 identifier)")
    try:
        model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    except Exception as exc:  # noqa: BLE001 - a damaged flatbuffer can fail in many ways
        raise ModelError(f"cannot parse the .tflite flatbuffer: {exc}") from None
    op_names, type_names = _op_names(), _type_names()

    def code_name(idx: int) -> str:
        code = model.operatorCodes[idx]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        if builtin == 32:  # CUSTOM
            custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
            return f"CUSTOM:{custom}"
        return op_names.get(builtin, f"BUILTIN_{builtin}")

    def tensor_data(sg, t_idx: int) -> np.ndarray | None:
        tensor = sg.tensors[t_idx]
        buf = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
        if buf is None or buf.data is None or len(buf.data) == 0:
            return None
        dtype = _NUMPY_TYPES.get(int(tensor.type))
        if dtype is None:
            return None
        return np.frombuffer(np.asarray(buf.data, dtype=np.uint8).tobytes(), dtype=dtype)

    info = TfliteInfo(ops=[])
    seen: set[tuple[int, int]] = set()
    for s_idx, sg in enumerate(model.subgraphs):
        producers = {}
        for op in sg.operators:
            for o in (op.outputs if op.outputs is not None else []):
                producers[int(o)] = op
        if s_idx == 0:
            info.input_types = [type_names.get(int(sg.tensors[i].type), "?") for i in sg.inputs]
            info.output_types = [type_names.get(int(sg.tensors[i].type), "?") for i in sg.outputs]
        for op_index, op in enumerate(sg.operators):
            name = code_name(op.opcodeIndex)
            info.ops.append(name)
            if name not in WEIGHTED_OPS:
                continue
            inputs = list(op.inputs) if op.inputs is not None else []
            w_pos, b_pos = WEIGHTED_OPS[name]
            for pos, is_weight in ((w_pos, True), (b_pos, False)):
                if pos >= len(inputs) or inputs[pos] < 0:
                    continue
                t_idx = int(inputs[pos])
                # float16 / sparse weights reach the op through a DEQUANTIZE/DENSIFY of a constant.
                src = producers.get(t_idx)
                if src is not None and code_name(src.opcodeIndex) in ("DEQUANTIZE", "DENSIFY"):
                    t_idx = int(src.inputs[0])
                if (s_idx, t_idx) in seen:
                    continue
                data = tensor_data(sg, t_idx)
                if data is None:
                    continue
                seen.add((s_idx, t_idx))
                if is_weight:
                    tensor = sg.tensors[t_idx]
                    tname = tensor.name.decode() if isinstance(tensor.name, bytes) else (tensor.name or "")
                    # Stripped models have no tensor names: name the weight by its operator.
                    prefix = f"sg{s_idx}_" if s_idx else ""
                    tname = f"{prefix}op{op_index:02d}_{name.lower()}" + (f" ({tname})" if tname else "")
                    info.weights.append(WeightTensor(
                        name=tname, op=name, shape=[int(d) for d in tensor.shape],
                        dtype=type_names.get(int(tensor.type), "?"), elements=int(data.size),
                        zeros=int(np.count_nonzero(data == 0))))
                else:
                    info.bias_elements += int(data.size)
    return info
