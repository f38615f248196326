"""Stage 4: convert Keras models to ``.tflite`` variants and write the deployable one as C source.

Kinds: ``float32``; ``dynamic`` (int8 weights, float activations); ``float16`` (float16 weights);
``int8`` (full integer with int8 input and output, calibrated on train samples or from QAT ranges);
``int16x8`` (int16 activations, int8 weights, int16 input and output).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import numpy as np

from pipeline.keras_env import keras, tf
from tinyfarm.atomic_files import write_text
from tinyfarm.errors import ModelError
from tinyfarm.native_stderr import native_stderr_held

KINDS = ("float32", "dynamic", "float16", "int8", "int16x8")


def representative_samples(x_train: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` training samples (a fixed random subset) to calibrate post-training quantization."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x_train))[: min(n, len(x_train))]
    return x_train[np.sort(idx)].astype(np.float32)


def convert(model: keras.Model, kind: str, representative: np.ndarray | None = None, *,
            strip: bool = True, drop_softmax: bool = False) -> bytes:
    """One ``.tflite`` variant of a Keras model (float or QAT) as bytes.

    The model is traced with batch size 1, as a microcontroller runs it: shapes are static, so no
    SHAPE/STRIDED_SLICE/PACK ops are left to compute a dynamic batch. ``strip`` trims what TFLM
    never reads (:func:`strip_strings`): on a 5 KB model names, signatures, metadata and duplicated
    tables are a quarter of the file. Every variant is treated alike, so size ratios stay fair.
    ``drop_softmax`` exports the logits of a model ending in a ``Softmax`` layer (see
    :func:`pipeline.keras_models.without_softmax`).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown variant kind {kind!r} (one of {', '.join(KINDS)})")
    if drop_softmax:
        from pipeline.keras_models import without_softmax

        model = without_softmax(model)
    spec = tf.TensorSpec([1, *model.input_shape[1:]], tf.float32, name="input")
    func = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([func], model)
    if kind != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if kind == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if kind in ("int8", "int16x8"):
        if representative is None:
            raise ValueError(f"{kind} conversion needs representative samples")
        samples = representative

        def dataset() -> Iterable[list[np.ndarray]]:
            for i in range(len(samples)):
                yield [samples[i: i + 1]]

        converter.representative_dataset = dataset
        if kind == "int8":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        else:
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
            converter.inference_input_type = tf.int16
            converter.inference_output_type = tf.int16
    try:
        with native_stderr_held():  # the calibrator prints "fully_quantize: 0, inference_type: ..."
            model_bytes = bytes(converter.convert())
    except Exception as exc:  # noqa: BLE001 - the converter reports unsupported layers in many ways
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot convert the model to {kind} .tflite: {first[:300]}") from None
    return strip_strings(model_bytes) if strip else model_bytes


def strip_strings(model_bytes: bytes) -> bytes:
    """The same model without what TFLM does not read (:func:`tinyfarm.tflite_bytes.trim_for_tflm`).

    Tensor names, signature defs, the description and metadata other than TFLM's own are dropped,
    empty and duplicate buffers merged, equal quantization tables and vectors stored once; outputs
    stay bit-identical on TFLM and on the LiteRT reference (zero_point arrays keep their length:
    LiteRT refuses shorter ones). On a few-KB model these strings and tables are a quarter of the
    flash, and every variant is trimmed alike, so size ratios stay fair. (This used to be
    ``flatbuffer_utils.strip_strings``, which only removed the strings.)
    """
    from tinyfarm.tflite_bytes import trim_for_tflm

    return trim_for_tflm(model_bytes)


def c_symbol(name: str) -> str:
    symbol = re.sub(r"\W", "_", name)
    return symbol if not symbol[:1].isdigit() else f"m_{symbol}"


def write_c_array(model_bytes: bytes, cc_path: str | Path, symbol: str = "g_model",
                  alignment: int = 16) -> tuple[Path, Path]:
    """Write ``<name>.cc`` + ``<name>.h`` holding the model as an aligned ``const unsigned char[]``.

    TFLM reads the flatbuffer in place from flash; the alignment keeps its tensors addressable.
    """
    cc_path = Path(cc_path)
    h_path = cc_path.with_suffix(".h")
    symbol = c_symbol(symbol)
    guard = c_symbol(h_path.name).upper() + "_"
    write_text(h_path, (
        "// Generated by tinyfarm: a .tflite model as a C array for TensorFlow Lite Micro.\n"
        f"#ifndef {guard}\n#define {guard}\n\n"
        f"extern const unsigned char {symbol}[];\nextern const unsigned int {symbol}_len;\n\n"
        f"#endif  // {guard}\n"))
    rows = []
    for i in range(0, len(model_bytes), 12):
        rows.append("  " + ", ".join(f"0x{b:02x}" for b in model_bytes[i: i + 12]) + ",")
    write_text(cc_path, (
        "// Generated by tinyfarm: a .tflite model as a C array for TensorFlow Lite Micro.\n"
        f'#include "{h_path.name}"\n\n'
        f"alignas({alignment}) const unsigned char {symbol}[] = {{\n" + "\n".join(rows) + "\n};\n"
        f"const unsigned int {symbol}_len = {len(model_bytes)};\n"))
    return cc_path, h_path
