"""Stage 5: every ``.tflite`` variant on the test split with LiteRT's *reference* kernels.

The reference kernels (``OpResolverType.BUILTIN_REF``) are the ones TFLM is built from: their
outputs are the ground truth a device is compared with, bit for bit. LiteRT's default (XNNPACK)
kernels are not: on a small int8 CNN they disagree with TFLM on about one output in eight.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass

import numpy as np

from pipeline.flatbuffer import inspect_tflite
from tinyfarm.errors import ModelError


def reference_interpreter(model_bytes: bytes):
    """A LiteRT interpreter on the reference kernels, tensors allocated."""
    from tinyfarm.native_stderr import native_stderr_held  # noqa: PLC0415

    with native_stderr_held():  # absl start-up lines of the LiteRT library
        from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: PLC0415

    try:
        interp = Interpreter(model_content=model_bytes,
                             experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"LiteRT cannot load the model: {str(exc).strip().splitlines()[0]}") from None
    return interp


def quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float samples -> the model's input dtype (int8/int16 with its scale and zero point)."""
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return x.astype(dtype)
    scale, zero_point = detail["quantization"]
    if scale == 0:
        raise ModelError("integer model input has no quantization parameters")
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def dequantize_output(y: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if np.issubdtype(detail["dtype"], np.floating) or scale == 0:
        return y.astype(np.float32)
    return (y.astype(np.float32) - zero_point) * scale


def run_reference(model_bytes: bytes, x: np.ndarray, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Run ``x`` one sample at a time (batch 1, as on the device).

    Returns ``(inputs, raw_outputs)``: the exact input tensors fed (in the model's dtype, to feed a
    device the very same bytes) and the raw output tensors (the model's dtype).
    """
    interp = reference_interpreter(model_bytes)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    expected = tuple(int(d) for d in inp["shape"][1:])
    if tuple(x.shape[1:]) != expected:
        raise ModelError(f"model input shape {tuple(inp['shape'])} does not match samples of shape {x.shape[1:]}")
    xq = quantize_input(x, inp)
    outputs = np.empty((len(x), *out["shape"][1:]), dtype=out["dtype"])
    for i in range(len(x)):
        interp.set_tensor(inp["index"], xq[i: i + 1])
        interp.invoke()
        outputs[i] = interp.get_tensor(out["index"])[0]
        if progress is not None and i % 50 == 49:
            progress(50)
    return xq, outputs


@dataclass
class VariantMetrics:
    accuracy: float
    size_bytes: int
    gzip_bytes: int
    sparsity: float
    parameter_count: int
    layer_sparsity: dict[str, float]
    ops: list[str]
    input_type: str
    output_type: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def evaluate_tflite(model_bytes: bytes, x_test: np.ndarray, y_test: np.ndarray,
                    progress=None) -> tuple[VariantMetrics, np.ndarray, np.ndarray]:
    """Accuracy, size, gzip size, flatbuffer sparsity and parameter count of one variant.

    Also returns the quantized inputs and raw outputs, the reference for the TFLM comparison.
    """
    info = inspect_tflite(model_bytes)
    xq, raw = run_reference(model_bytes, x_test, progress)
    interp_out = reference_interpreter(model_bytes).get_output_details()[0]
    scores = dequantize_output(raw, interp_out).reshape(len(x_test), -1)
    accuracy = float(np.mean(np.argmax(scores, axis=-1) == y_test)) if len(y_test) else float("nan")
    metrics = VariantMetrics(
        accuracy=accuracy, size_bytes=len(model_bytes), gzip_bytes=len(gzip.compress(model_bytes, 9, mtime=0)),
        sparsity=info.sparsity, parameter_count=info.parameter_count, layer_sparsity=info.per_layer(),
        ops=sorted(set(info.ops)), input_type=",".join(info.input_types), output_type=",".join(info.output_types))
    return metrics, xq, raw
