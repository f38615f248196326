"""TFLM's own weight compression for a full-int8 ``.tflite``: clustered or pruned weights shrink flash.

The ``tflite-micro`` wheel's compressor (``tflite_micro.tensorflow.lite.micro.compression``) rewrites
chosen constant tensors into an encoded form plus an ancillary tensor, and inserts a DECODE
operator before each reader; TFLM decodes at Invoke time. Two encodings:

- ``lut``: each value becomes a 1..7-bit index into a value table; the table is per channel when
  the tensor is quantized per channel. The table layout MUST follow the tensor's quantization (more
  than one scale: ``PerChannel(axis=quantized_dimension)``, else ``PerTensor()``): the runtime
  reads the layout from the quantization, not from the header, and a mismatch runs and gives
  silently wrong outputs;
- ``prune``: a bitmask of the non-zero-point elements and their values (:mod:`pipeline.pruning_encoder`,
  our encoder for the runtime's format; the wheel's own one is a stub).

Decoded weights need RAM while their operator runs. :attr:`CompressedModel.decompression_bytes` is
the alternate decompression memory to give TFLM for them (a 16-byte aligned region); without it the
decoded tensors are planned into the tensor arena, which then grows by about the largest one.

    cm = compress_weights(model_bytes, "auto")            # None: nothing worth compressing
    report = verify_bit_identical(model_bytes, cm, x_test_int8)
    assert report["identical"] == report["compared"]
"""

from __future__ import annotations

import importlib
import logging
import warnings
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass

import numpy as np

from tinyfarm import tflite_file
from tinyfarm.errors import ModelError

logger = logging.getLogger(__name__)

METHODS = ("lut", "prune", "auto")
# Operators whose weights may be compressed: op name -> (input position, role for display names).
# Their reference kernels read only the weights' quantization in Prepare, never the values.
WEIGHT_INPUTS = {"CONV_2D": (1, "filter"), "DEPTHWISE_CONV_2D": (1, "filter"),
                 "FULLY_CONNECTED": (1, "weights")}
MAX_LUT_BITS = 7
_COMPRESSION = "tflite_micro.tensorflow.lite.micro.compression"


@dataclass(frozen=True)
class TensorCompression:
    """How one weight tensor was compressed."""

    tensor: int  # tensor index in subgraph 0 (of the uncompressed model)
    name: str  # tensor name if any, else the op that reads it, e.g. "CONV_2D#2 filter" (op index)
    method: str  # "lut" | "prune"
    bits: int  # lut: index bit width; prune: bits per stored value (8)
    bytes_before: int  # the buffer's bytes uncompressed
    bytes_after: int  # encoded + ancillary bytes


@dataclass(frozen=True)
class CompressedModel:
    model: bytes  # the compressed, aligned flatbuffer (with DECODE ops)
    tensors: tuple[TensorCompression, ...]
    decompression_bytes: int  # alternate decompression memory: the largest DECODE's outputs laid
    # out as TFLM places them, each 16-byte aligned (tinyfarm.tflite_file.decompression_bytes)

    def as_dict(self) -> dict:
        before = sum(t.bytes_before for t in self.tensors)
        after = sum(t.bytes_after for t in self.tensors)
        return {"model_bytes": len(self.model), "decompression_bytes": self.decompression_bytes,
                "weight_bytes_before": before, "weight_bytes_after": after,
                "weight_bytes_saved": before - after,
                "methods": dict(Counter(t.method for t in self.tensors)),
                "tensors": [asdict(t) for t in self.tensors]}


def _wheel():
    """The wheel's compression modules (imported on first use: they pull in flatbuffers, yaml)."""
    from tflite_micro.tensorflow.lite.micro.compression import (  # noqa: PLC0415
        compressor, lut, model_editor, spec,
    )

    return compressor, lut, model_editor, spec


# -- which tensors ------------------------------------------------------------------------------
def _scales(tensor) -> list[float]:
    q = tensor.quantization
    if q is None:
        return []
    return [q.scales] if isinstance(q.scales, (int, float)) else list(q.scales)


def _candidates(model) -> list[tuple[str, object]]:
    """(display name, tensor) of subgraph 0's constant int8 weights that only weight inputs read."""
    _, _, model_editor, _ = _wheel()
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema  # noqa: PLC0415

    sg = model.subgraphs[0]
    readers: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for op in sg.operators:
        for pos, t in enumerate(op.inputs):
            if t is not None:
                readers[id(t)].append((op.opcode_name, pos))
    buffer_users = Counter(id(t.buffer) for t in model_editor.iter_tensors(model) if t.buffer is not None)
    ends = {id(t) for t in (*sg.inputs, *sg.outputs)}
    found, seen = [], set()
    for op in sg.operators:
        pos, role = WEIGHT_INPUTS.get(op.opcode_name, (None, None))
        if pos is None or len(op.inputs) <= pos or op.inputs[pos] is None:
            continue
        t = op.inputs[pos]
        if id(t) in seen:
            continue
        seen.add(id(t))
        if (t.dtype != schema.TensorType.INT8 or t.buffer is None or not t.buffer.data
                or t.is_variable or id(t) in ends or buffer_users[id(t.buffer)] > 1):
            continue
        if any(WEIGHT_INPUTS.get(name, (None,))[0] != p for name, p in readers[id(t)]):
            continue  # also read as something other than weights
        found.append((t.name or f"{op.opcode_name}#{op.index} {role}", t))
    return found


# -- how ------------------------------------------------------------------------------------------
def lut_spec(tensor):
    """The LUT spec the runtime decodes correctly for ``tensor`` (mode from its quantization, the
    smallest index width holding every table), or ``None`` when LUT cannot apply."""
    _, _, _, spec = _wheel()
    values = tensor.array
    q, scales = tensor.quantization, _scales(tensor)
    axis = (q.axis or 0) if q is not None else 0
    if len(scales) > 1:
        if axis not in (0, values.ndim - 1):
            return None
        slices = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
        distinct = max(len(np.unique(s)) for s in slices)
        mode = spec.PerChannel(axis=axis)
    else:
        if axis != 0:  # one scale on another axis: the runtime rejects it
            return None
        distinct = len(np.unique(values))
        mode = spec.PerTensor()
    bits = max(1, (distinct - 1).bit_length())
    return spec.LookUpTableCompression(index_bitwidth=bits, mode=mode) if bits <= MAX_LUT_BITS else None


def _options(tensor, method: str) -> list[tuple[str, int, object, int]]:
    """(method, bits, spec entry, encoded + ancillary bytes) of each encoding that applies."""
    from pipeline import pruning_encoder  # noqa: PLC0415

    compressor, lut, _, _ = _wheel()
    found = []
    if method in ("lut", "auto"):
        entry = lut_spec(tensor)
        if entry is not None:
            res = lut.LutCompressor().compress(tensor, entry)
            found.append(("lut", entry.index_bitwidth, entry,
                          len(res.encoded_data) + len(res.ancillary_data)))
    if method in ("prune", "auto"):
        entry = pruning_encoder.Pruning()
        try:
            res = pruning_encoder.PruningEncoder().compress(tensor, entry)
        except compressor.CompressionError as exc:
            logger.debug("tensor %s: no pruning encoding (%s)", tensor.index, exc)
        else:
            found.append(("prune", 8 * tensor.array.itemsize, entry,
                          len(res.encoded_data) + len(res.ancillary_data)))
    return found


def compress_weights(model: bytes, method: str = "auto", *, min_saving_bytes: int = 64,
                     require_smaller: bool = True) -> CompressedModel | None:
    """Compress the weights of a full-int8 ``.tflite`` with TFLM's DECODE encodings.

    Only constant int8 conv/depthwise filters and FC weights of subgraph 0 are considered (their
    kernels do not read the values at Prepare time). ``method``: ``"lut"`` (tensors with at most
    128 distinct values, per channel for per-channel tensors), ``"prune"`` (the pruning encoding),
    ``"auto"`` (per tensor, the smaller of the two). A tensor is left alone when its encoding
    does not save at least ``min_saving_bytes``. Returns ``None`` when no tensor qualifies, or when
    the compressed flatbuffer (DECODE operators, extra tensors, alignment) is not smaller.
    """
    if method not in METHODS:
        raise ValueError(f"unknown compression method {method!r} (one of {', '.join(METHODS)})")
    model = bytes(model)
    tflite_file.check_tflite(model)
    if tflite_file.is_compressed(model):
        raise ModelError("the model is already compressed (it has DECODE operators)")
    _, _, model_editor, spec = _wheel()
    edit = model_editor.read(model)
    chosen = []
    for name, tensor in _candidates(edit):
        options = _options(tensor, method)
        if not options:
            continue
        kind, bits, entry, after = min(options, key=lambda o: o[3])
        before = len(tensor.buffer.data)
        if before - after < min_saving_bytes:
            logger.debug("%s: %s saves %d B only, left alone", name, kind, before - after)
            continue
        chosen.append((TensorCompression(tensor.index, name, kind, bits, before, after), entry))
    if not chosen:
        return None
    out = _compress(model, [spec.Tensor(subgraph=0, tensor=tc.tensor, compression=[entry])
                            for tc, entry in chosen])
    if require_smaller and len(out) >= len(model):
        logger.info("compression would not shrink the model (%d -> %d B)", len(model), len(out))
        return None
    return CompressedModel(out, tuple(tc for tc, _ in chosen), tflite_file.decompression_bytes(out))


def store_for_tflm(model: bytes, method: str = "auto", *, min_saving_bytes: int = 64) -> CompressedModel | None:
    """``model`` as stored in a TFLM device's flash: weights compressed with ``method`` (``"none"``:
    not compressed), then trimmed of what only other runtimes read (:func:`tinyfarm.tflite_bytes.
    trim_for_tflm` with ``shrink_zero_points``: one zero point per tensor, which LiteRT refuses and
    TFLM reads the same; with ``align=None`` its natural alignment also drops the 16-byte padding the
    wheel's aligner adds to every buffer). ``None`` when ``method`` compresses nothing.

    The result runs on TFLM only: prove it with :func:`verify_bit_identical` against ``model``.
    """
    from tinyfarm.tflite_bytes import trim_for_tflm  # noqa: PLC0415

    plain = trim_for_tflm(bytes(model), shrink_zero_points=True)
    if method == "none":
        return CompressedModel(plain, (), 0)
    # The wheel's aligner pads every buffer to 16 bytes; judge the size after the trim drops that.
    compressed = compress_weights(model, method, min_saving_bytes=min_saving_bytes, require_smaller=False)
    if compressed is None:
        return None
    packed = trim_for_tflm(compressed.model, shrink_zero_points=True)
    if len(packed) >= len(plain):
        logger.info("%s compression does not shrink the stored model (%d -> %d B)", method,
                    len(plain), len(packed))
        return None
    return CompressedModel(packed, compressed.tensors, tflite_file.decompression_bytes(packed))


def _compress(model: bytes, specs: list) -> bytes:
    """The wheel's ``compress()`` (DECODE insertion, dedup, alignment), our pruning encoder added."""
    from pipeline import pruning_encoder  # noqa: PLC0415

    pruning_encoder.register()
    wheel_compress = importlib.import_module(f"{_COMPRESSION}.compress").compress
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = bytes(wheel_compress(model, specs))
    for w in caught:
        logger.warning("tflite-micro compression: %s", w.message)
    return out


# -- proof ----------------------------------------------------------------------------------------
def tflm_reference(original: bytes, inputs: np.ndarray) -> dict:
    """``original`` on the host TFLM, once: ``{"arena_bytes", "outputs"}`` (``outputs`` None and an
    ``"error"`` when it does not run) — what :func:`verify_bit_identical` compares every storage of
    the same model with."""
    from device_harness.twin import TflmError, find_arena, host_outputs  # noqa: PLC0415

    plain = find_arena(bytes(original))
    if plain.arena_bytes is None:
        return {"arena_bytes": None, "outputs": None,
                "error": f"the original model does not run on TFLM: {plain.error}"}
    try:
        outputs = np.concatenate(list(host_outputs(bytes(original), plain.arena_bytes, np.asarray(inputs))))
    except TflmError as exc:
        return {"arena_bytes": plain.arena_bytes, "outputs": None, "error": f"{type(exc).__name__}: {exc}"}
    return {"arena_bytes": plain.arena_bytes, "outputs": outputs}


def verify_bit_identical(original: bytes, compressed: CompressedModel, inputs: np.ndarray, *,
                         reference: dict | None = None) -> dict:
    """Run ``original`` and ``compressed`` on the host TFLM (the wheel's runtime, in the twin's child
    process) over every row of ``inputs`` (one sample a row, the model's input dtype) and count the
    samples whose output 0 is bit-identical. Each runs on its smallest arena, the compressed one with
    its ``decompression_bytes`` of alternate memory. ``reference``: :func:`tflm_reference` of
    ``original`` on the same ``inputs``, when several storages of one model are checked.

    Returns ``{"compared", "identical", "arena_bytes", "arena_bytes_uncompressed",
    "decompression_bytes"}``, plus ``"error"`` (and ``compared`` 0) when either model does not load
    or the runtime fails or crashes on it: nothing was proven then.
    """
    from device_harness.twin import TflmError, find_arena, host_outputs  # noqa: PLC0415

    inputs = np.asarray(inputs)
    reference = reference or tflm_reference(original, inputs)
    packed = find_arena(compressed.model, decompression_bytes=compressed.decompression_bytes)
    result = {"compared": 0, "identical": 0, "arena_bytes": packed.arena_bytes,
              "arena_bytes_uncompressed": reference["arena_bytes"],
              "decompression_bytes": compressed.decompression_bytes}
    if reference["outputs"] is None:
        return {**result, "error": reference["error"]}
    if packed.arena_bytes is None:
        return {**result, "error": f"the compressed model does not run on TFLM: {packed.error}"}
    try:
        got = np.concatenate(list(host_outputs(compressed.model, packed.arena_bytes, inputs,
                                               decompression_bytes=compressed.decompression_bytes)))
    except TflmError as exc:
        return {**result, "error": f"{type(exc).__name__}: {exc}"}
    n = len(inputs)
    same = np.all(reference["outputs"].reshape(n, -1) == got.reshape(n, -1), axis=1)
    return {**result, "compared": n, "identical": int(np.count_nonzero(same))}
