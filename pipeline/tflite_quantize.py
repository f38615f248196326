"""The quantize-only path: a user's float32 ``.tflite`` in, a full-int8 ``.tflite`` out (stage ``ptq``).

A user who holds only a float ``.tflite`` (no Keras model to retrain) writes::

    baseline:
      model_path: model.tflite      # a float32 .tflite

The training stages (baseline, prune, quantize, distill, search) and the Keras ``export`` are then
skipped (:func:`quantize_only`, used by their ``enabled=`` predicates in ``pipeline/stages.py``), and
the ``ptq`` stage quantizes the file with ai-edge-quantizer's static int8 recipe (int8 weights and
activations, int8 input and output), calibrated on ``export.representative_samples`` train samples.
Its variants are ``float32`` (the user's file, copied) and ``int8``; ``int8`` becomes the
deployable model, so ``evaluate``, ``tflm``, ``deploy`` and ``report`` run as usual.

The plain functions (:func:`check_float_tflite`, :func:`quantize_int8`) are usable alone; they read
the file with the LiteRT interpreter and never import TensorFlow.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pipeline.config import PipelineConfig
from pipeline.run_context import StageContext
from pipeline.tflite_stages import publish_deployable
from tinyfarm.atomic_files import write_bytes
from tinyfarm.errors import ModelError, short

logger = logging.getLogger(__name__)

TFLITE_SUFFIX = ".tflite"
SIGNATURE = "serving_default"
# Tensor types of a quantized (or float16) model: a float32 model has none of them (int32 shape
# constants and int64 indices are not quantization).
_QUANTIZED_TYPES = {"int8", "uint8", "int16", "int4", "float16"}


def is_tflite_path(path: str | Path | None) -> bool:
    """True for a ``.tflite`` file name (the quantize-only input)."""
    return path is not None and Path(path).suffix.lower() == TFLITE_SUFFIX


def quantize_only(config: PipelineConfig) -> bool:
    """True when ``baseline.model_path`` is a ``.tflite``: no training, the ``ptq`` stage instead."""
    return is_tflite_path(config.baseline.model_path)


def _interpreter(model: bytes, label: str):
    from ai_edge_litert.interpreter import Interpreter

    try:
        return Interpreter(model_content=model)
    except (ValueError, RuntimeError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"cannot load {label} with LiteRT: {short(first)}") from None


def _dims(shape) -> tuple:
    return tuple(int(d) for d in shape)


def check_float_tflite(model: bytes, input_shape: tuple, num_classes: int, label: str = "model") -> None:
    """Refuse, in one line, a ``.tflite`` that is not a float32 classifier for this data set.

    Quantized (int8/int16 tensors, or float16 weights), several inputs or outputs, an input shape
    other than ``(1, *input_shape)``, or an output other than ``num_classes`` scores.
    """
    interp = _interpreter(model, label)
    inputs, outputs = interp.get_input_details(), interp.get_output_details()
    for kind, found in (("input", inputs), ("output", outputs)):
        if len(found) != 1:
            raise ModelError(f"{label} has {len(found)} {kind}s; the quantize-only path takes one {kind}")
    quantized = sorted({np.dtype(t["dtype"]).name for t in interp.get_tensor_details()
                        if np.dtype(t["dtype"]).name in _QUANTIZED_TYPES})
    io_types = {np.dtype(t["dtype"]).name for t in inputs + outputs}
    if quantized or io_types != {"float32"}:
        what = ", ".join(quantized or sorted(io_types - {"float32"}))
        raise ModelError(f"{label} is already quantized ({what} tensors): give the float32 .tflite "
                         "it came from")
    got = _dims(inputs[0]["shape"])
    if got[1:] != tuple(input_shape) or got[0] not in (1, -1):
        raise ModelError(f"{label} takes input {list(got)}, the data set's samples are "
                         f"{list(input_shape)} (expected [1, {', '.join(map(str, input_shape))}])")
    out = _dims(outputs[0]["shape"])
    if out[-1] != num_classes:
        raise ModelError(f"{label} outputs {out[-1]} scores, the data set has {num_classes} classes")


def check_tflite_file(path: str | Path, data) -> bytes:
    """:func:`tinyfarm.tflite_file.read_model` + :func:`check_float_tflite` against ``data`` (the
    splits); the bytes."""
    from tinyfarm.tflite_file import read_model

    model = read_model(path)
    check_float_tflite(model, data.input_shape, data.num_classes, label=str(path))
    return model


def with_signature(model: bytes) -> tuple[bytes, str, str]:
    """``model`` prepared for ai-edge-quantizer: every tensor named, one signature.

    The quantizer calibrates through a signature runner and keys its statistics by tensor name;
    tinyfarm's own exports (``export.strip_strings``) and other trimmed files have neither. Returns
    the bytes, the signature key and its input name.
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    obj = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    graph = obj.subgraphs[0]
    for i, tensor in enumerate(graph.tensors):
        if not tensor.name:
            tensor.name = f"tensor_{i}".encode()
    if obj.signatureDefs:
        sig = obj.signatureDefs[0]
        key = sig.signatureKey.decode() if isinstance(sig.signatureKey, bytes) else sig.signatureKey
        name = sig.inputs[0].name
        name = name.decode() if isinstance(name, bytes) else name
        return bytes(flatbuffer_utils.convert_object_to_bytearray(obj)), key, name

    def tensor_map(name: str, index: int):
        entry = schema.TensorMapT()
        entry.name, entry.tensorIndex = name, index
        return entry

    sig = schema.SignatureDefT()
    sig.signatureKey, sig.subgraphIndex = SIGNATURE, 0
    sig.inputs = [tensor_map(f"input_{k}", i) for k, i in enumerate(graph.inputs)]
    sig.outputs = [tensor_map(f"output_{k}", i) for k, i in enumerate(graph.outputs)]
    obj.signatureDefs = [sig]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj)), SIGNATURE, "input_0"


def strip_strings(model: bytes) -> bytes:
    """Drop tensor names and signatures (TFLM reads neither), as ``export.strip_strings`` does."""
    from ai_edge_litert.tools import flatbuffer_utils

    obj = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    flatbuffer_utils.strip_strings(obj)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj))


def quantize_int8(model: bytes, samples: np.ndarray, *, strip: bool = True) -> bytes:
    """Full-int8 post-training quantization of a float32 ``.tflite`` with ai-edge-quantizer.

    The recipe is ``static_wi8_ai8`` (int8 weights, per channel for convolutions and dense layers;
    int8 activations), calibrated on ``samples`` (one sample per invocation, shape
    ``(n, *input_shape)``). The result has int8 input and output tensors, as TFLM deployment needs;
    a model whose input or output stays float is refused.

    Calibration keeps each tensor's absolute min/max over the samples (``qsv_utils.min_max_update``,
    as the TF converter does), not the library's default moving average (smoothing 0.95): with a
    batch of one per invocation, the average of per-sample ranges clips the large activations (an
    under-trained digits CNN lost 2.9 points with it, none with min/max).
    """
    from ai_edge_quantizer import calibrator, quantizer, recipe, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    from tinyfarm.native_stderr import native_stderr_held

    prepared, key, input_name = with_signature(model)
    int8_recipe = recipe.static_wi8_ai8()
    batches = [{input_name: samples[i:i + 1].astype(np.float32)} for i in range(len(samples))]
    try:
        with native_stderr_held():
            manager = recipe_manager.RecipeManager()
            manager.load_quantization_recipe(int8_recipe)
            calib = calibrator.Calibrator(prepared, num_threads=1, qsv_update_func=qsv_utils.min_max_update)
            calib.calibrate({key: batches}, manager)
            qt = quantizer.Quantizer(prepared)
            qt.load_quantization_recipe(int8_recipe)
            result = qt.quantize(calib.get_model_qsvs(), enable_progress_report=False)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise ModelError(f"ai-edge-quantizer could not quantize the model: "
                         f"{short(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)}") from None
    quantized = bytes(result.quantized_model)
    interp = _interpreter(quantized, "the quantized model")
    io_types = {np.dtype(t["dtype"]).name for t in interp.get_input_details() + interp.get_output_details()}
    if io_types != {"int8"}:
        raise ModelError(f"ai-edge-quantizer left {', '.join(sorted(io_types))} input/output tensors; "
                         "TFLM deployment needs int8 ones")
    return strip_strings(quantized) if strip else quantized


def quantizer_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ai-edge-quantizer")
    except PackageNotFoundError:
        return "unknown"


def run_ptq(ctx: StageContext) -> dict:
    """Stage ``ptq``: the user's float ``.tflite`` (variant ``float32``) and its int8 (``int8``, deployable)."""
    from pipeline.export import representative_samples
    from pipeline.progress import console

    export, data = ctx.config.export, ctx.data()
    source = ctx.config.baseline.model_path
    model = check_tflite_file(source, data)
    rep = representative_samples(data.x_train, export.representative_samples, ctx.seed)
    variants_dir = ctx.out_dir / "variants"
    variants_dir.mkdir(parents=True, exist_ok=True)
    console.print(f"  quantizing {Path(source).name} to int8 (ai-edge-quantizer, {len(rep)} calibration samples)")
    quantized = quantize_int8(model, rep, strip=export.strip_strings)
    variants = []
    for name, kind, method, payload in (("float32", "float32", "none", model),
                                        ("int8", "int8", "ptq", quantized)):
        path = write_bytes(ctx.output(variants_dir / f"{name}.tflite"), payload)
        variants.append({"name": name, "kind": kind, "path": ctx.rel(path), "source": "model_path",
                         "method": method})
    logger.info("ptq: %s (%d B) -> int8 (%d B)", source, len(model), len(quantized))
    library = {"name": "ai-edge-quantizer", "version": quantizer_version(), "recipe": "static_wi8_ai8",
               "calibration": "min_max",
               "calibration_samples": int(len(rep)), "io_type": "int8"}
    summary: dict = {"model_path": str(source), "float_bytes": len(model), "int8_bytes": len(quantized),
                     "quantizer": library, "variants": variants}
    summary.update(publish_deployable(
        ctx, quantized, c_array=export.c_array,
        deployable={"copy_of": "int8", "kind": "int8", "source": "model_path", "method": "ptq",
                    "quantizer": "ai-edge-quantizer"}))
    return summary
