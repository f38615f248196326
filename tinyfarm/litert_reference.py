"""LiteRT on its *reference* kernels: the ground truth a device's outputs are compared with, bit for bit.

The reference kernels (``OpResolverType.BUILTIN_REF``) are the ones TFLM is built from; LiteRT's
default (XNNPACK) kernels round differently (on a small int8 CNN they disagree with TFLM on about
one output in eight). The pipeline's evaluation and the device commands both measure against this
one interpreter, fed the same raw tensors a device gets:

    ref = ReferenceInterpreter(model_bytes)
    x_q = quantize_input(x, ref.inputs[0])           # float samples -> the model's input dtype
    (y,) = ref([x_q[0:1]])                            # raw output tensors, the model's dtype
    scores = dequantize_output(y, ref.outputs[0])     # -> float32

LiteRT is imported on first use (with its native start-up lines held off the console), so importing
this module is cheap.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tinyfarm.errors import ModelError


class ReferenceInterpreter:
    """A LiteRT interpreter on the reference kernels, tensors allocated.

    ``inputs`` / ``outputs`` are LiteRT's tensor detail dicts (``index``, ``shape``, ``dtype``,
    ``quantization``, ...); calling it runs one inference on raw tensors in the model's order.
    """

    def __init__(self, model_bytes: bytes) -> None:
        from tinyfarm.native_stderr import native_stderr_held  # noqa: PLC0415

        with native_stderr_held():  # absl start-up lines of the LiteRT library
            from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: PLC0415

        try:
            self.interpreter = Interpreter(model_content=bytes(model_bytes),
                                           experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"LiteRT cannot load the model: {str(exc).strip().splitlines()[0]}") from None
        self.inputs: list[dict] = self.interpreter.get_input_details()
        self.outputs: list[dict] = self.interpreter.get_output_details()

    def __call__(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One inference: raw input tensors (reshaped to the model's shapes) -> raw output tensors."""
        for d, x in zip(self.inputs, inputs):
            self.interpreter.set_tensor(
                d["index"], np.asarray(x).reshape(d["shape"]).astype(d["dtype"], copy=False))
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(d["index"]).copy() for d in self.outputs]


def quantize(x: np.ndarray, dtype: np.dtype, scale: float, zero_point: int, *,
             compute_dtype: np.dtype = np.float64) -> np.ndarray:
    """Float data -> ``dtype`` with its scale/zero point (as the converter expects); floats are cast.

    ``round(x / scale + zero_point)`` is computed in ``compute_dtype`` (float64 unless told), then
    clipped to the integer type's range.
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.asarray(x).astype(dtype)
    if not scale:
        raise ModelError(f"the model's {dtype} input has no quantization scale")
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, dtype=compute_dtype) / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float samples -> the input tensor ``detail``'s dtype (int8/int16 with its scale and zero point).

    The arithmetic stays in the samples' own float type (float32 for every built-in data set), as
    the pipeline's reference tensors have always been computed.
    """
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero_point = detail["quantization"]
    if scale == 0:
        raise ModelError("integer model input has no quantization parameters")
    x = np.asarray(x)
    compute = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    return quantize(x, dtype, scale, zero_point, compute_dtype=compute)


def dequantize_output(y: np.ndarray, detail: dict) -> np.ndarray:
    """Raw output tensor -> float32 with the output tensor ``detail``'s scale and zero point."""
    scale, zero_point = detail["quantization"]
    if np.issubdtype(detail["dtype"], np.floating) or scale == 0:
        return y.astype(np.float32)
    return (y.astype(np.float32) - zero_point) * scale
