"""Pruning encoding for TFLM's DECODE operator (decode type 2), which the wheel cannot write yet.

The ``tflite-micro`` wheel's runtime decodes it (``DecodeStatePrune``), but its Python
``pruning.PruningCompressor`` is a stub that raises "not yet implemented". :class:`PruningEncoder`
writes the runtime's format and plugs into the wheel's own ``compress()`` (DECODE insertion,
buffer dedup, flatbuffer alignment) under its own spec type, :class:`Pruning`, so the wheel's stub
keeps its entry. The format, as ``tensorflow/lite/micro/kernels/decode_state_prune.cc`` reads it:

- encoded tensor: one bit per element of the decoded tensor in row-major order, most significant
  bit first (element ``i`` is bit ``7 - i % 8`` of byte ``i // 8``); 1 = the next value of the value
  table, 0 = the zero point;
- ancillary tensor: the 16-byte DECODE common metadata (byte 0: decode type 2, byte 1: DCM version
  1, byte 4: pruning version 1, the rest 0), then the value table: the kept elements in order, in
  the tensor's own type (little-endian);
- the zero point comes from the *decoded tensor's quantization*, not from the encoding: per channel
  only for int8 with more than one channel and some non-zero zero point (channel = the slice along
  ``quantized_dimension``, which must be 0 or the last axis), else ``zero_point[0]`` (0 when
  unquantized); other types need all zero points 0 and decode their 0 bit pattern.
"""

from __future__ import annotations

import importlib

import numpy as np
from tflite_micro.tensorflow.lite.micro.compression import compressor, decode, model_editor, spec

PRUNING_VERSION = 1
# numpy kinds of the element types DecodeStatePrune::Decode handles (float32 goes through int32)
_SUPPORTED = {np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64, np.float32, np.bool_)}


class Pruning(spec.PruningCompression):
    """Spec entry for :class:`PruningEncoder` (the wheel's ``PruningCompression`` maps to its stub)."""


def zero_points(tensor: model_editor.Tensor) -> np.ndarray:
    """The value each element decodes to when its bit is 0, as ``DecodeStatePrune::Setup`` picks it.

    Raises :class:`compressor.CompressionError` for what that ``Setup`` rejects.
    """
    shape = tuple(tensor.shape)
    dtype = np.dtype(tensor.numpy_dtype)
    q = tensor.quantization
    if q is None:
        return np.zeros(shape, dtype)
    scales = [q.scales] if isinstance(q.scales, (int, float)) else list(q.scales)
    zps = [q.zero_points] if isinstance(q.zero_points, int) else [int(z) for z in q.zero_points]
    channels, axis = len(scales), q.axis or 0
    last_axis = axis == len(shape) - 1 and channels > 1
    if not last_axis and axis != 0:
        raise compressor.CompressionError(f"unsupported quantization axis {axis} for pruning")
    if len(zps) < channels:
        raise compressor.CompressionError(f"{channels} scales but {len(zps)} zero points")
    non_zero = any(z != 0 for z in zps[:channels])
    if dtype != np.int8 and non_zero:
        raise compressor.CompressionError("pruning needs all zero points 0 for non-int8 tensors")
    if channels > 1 and non_zero:
        zp = np.asarray(zps[:channels], np.int8)
        count = int(np.prod(shape, dtype=np.int64))
        if count % channels:
            raise compressor.CompressionError(f"{count} elements do not split into {channels} channels")
        flat = np.tile(zp, count // channels) if last_axis else np.repeat(zp, count // channels)
        return flat.reshape(shape)
    return np.full(shape, zps[0], dtype)


def encode(values: np.ndarray, zero: np.ndarray) -> tuple[bytes, bytes]:
    """(encoded bitmask, value table) of ``values`` against per-element zero values ``zero``."""
    flat = np.ascontiguousarray(values).reshape(-1)
    zero = np.broadcast_to(np.asarray(zero, flat.dtype), values.shape).reshape(-1)
    if flat.dtype == np.float32:  # the runtime copies bit patterns: -0.0 is a value, not "zero"
        keep = flat.view(np.int32) != zero.view(np.int32)
    else:
        keep = flat != zero
    table = flat[keep].astype(flat.dtype.newbyteorder("<"), copy=False)
    return np.packbits(keep, bitorder="big").tobytes(), table.tobytes()


class PruningEncoder(compressor.Compressor):
    """The wheel's compressor plugin protocol, for the runtime's pruning format (see module doc)."""

    @property
    def decode_type(self) -> decode.DecodeType:
        return decode.DecodeType.PRUNING

    def compress(self, tensor: model_editor.Tensor,
                 method: spec.CompressionMethod) -> compressor.CompressionResult:
        if not isinstance(method, spec.PruningCompression):
            raise compressor.CompressionError(f"PruningEncoder needs a pruning spec, got {type(method)}")
        values = tensor.array
        if values is None:
            raise compressor.CompressionError("tensor has no data to compress")
        if np.dtype(values.dtype) not in _SUPPORTED:
            raise compressor.CompressionError(f"pruning does not decode {values.dtype} tensors")
        encoded, table = encode(values, zero_points(tensor))
        user_data = bytes([PRUNING_VERSION]) + bytes(11)
        dcm = decode.DecodeCommonMetadata(decode_type=self.decode_type, user_data=user_data)
        return compressor.CompressionResult(encoded_data=encoded, ancillary_data=dcm.to_bytes() + table)


def register() -> None:
    """Make the wheel's ``compress()`` encode :class:`Pruning` entries with :class:`PruningEncoder`.

    Adds one entry to the wheel's plugin table (keyed by our own type, so its stub stays as it is).
    The table is private: the wheel is pinned, and the bit-exactness tests catch a change.
    """
    # the package's ``compress`` attribute is the function; the plugin table is in the module
    module = importlib.import_module("tflite_micro.tensorflow.lite.micro.compression.compress")
    table = getattr(module, "_COMPRESSORS", None)
    if not isinstance(table, dict):
        raise RuntimeError("tflite_micro's compress module has no plugin table (_COMPRESSORS): "
                           "the pinned tflite-micro wheel is required")
    table.setdefault(Pruning, PruningEncoder())
