"""Stage 5: every ``.tflite`` variant on the test split with LiteRT's *reference* kernels.

The reference kernels (``OpResolverType.BUILTIN_REF``) are the ones TFLM is built from: their
outputs are the ground truth a device is compared with, bit for bit. LiteRT's default (XNNPACK)
kernels are not: on a small int8 CNN they disagree with TFLM on about one output in eight. The
interpreter and the input quantization are :mod:`tinyfarm.litert_reference`'s, shared with the
device commands.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass

import numpy as np

from tinyfarm.errors import ModelError
from tinyfarm.litert_reference import ReferenceInterpreter, dequantize_output, quantize_input
from tinyfarm.tflite_file import inspect_tflite


def run_reference(model_bytes: bytes, x: np.ndarray, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Run ``x`` one sample at a time (batch 1, as on the device).

    Returns ``(inputs, raw_outputs)``: the exact input tensors fed (in the model's dtype, to feed a
    device the very same bytes) and the raw output tensors (the model's dtype).
    """
    ref = ReferenceInterpreter(model_bytes)
    inp, out = ref.inputs[0], ref.outputs[0]
    expected = tuple(int(d) for d in inp["shape"][1:])
    if tuple(x.shape[1:]) != expected:
        raise ModelError(f"model input shape {tuple(inp['shape'])} does not match samples of shape {x.shape[1:]}")
    xq = quantize_input(x, inp)
    outputs = np.empty((len(x), *out["shape"][1:]), dtype=out["dtype"])
    for i in range(len(x)):
        outputs[i] = ref([xq[i: i + 1]])[0][0]
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
    scores = dequantize_output(raw, ReferenceInterpreter(model_bytes).outputs[0]).reshape(len(x_test), -1)
    accuracy = float(np.mean(np.argmax(scores, axis=-1) == y_test)) if len(y_test) else float("nan")
    metrics = VariantMetrics(
        accuracy=accuracy, size_bytes=len(model_bytes), gzip_bytes=len(gzip.compress(model_bytes, 9, mtime=0)),
        sparsity=info.sparsity, parameter_count=info.parameter_count, layer_sparsity=info.per_layer(),
        ops=sorted(set(info.ops)), input_type=",".join(info.input_types), output_type=",".join(info.output_types))
    return metrics, xq, raw
