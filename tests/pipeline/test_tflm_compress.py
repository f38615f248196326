"""TFLM weight compression (pipeline.tflm_compress): smaller models, bit-identical on the host TFLM.

Tiny random-weight int8 CNNs whose kernels are shaped for each case: clustered (few values per
channel) for LUT, 80 % zeros for pruning, neither for "nothing to compress". Every compressed
model is run against its original on the wheel's TFLM runtime, so a wrong encoding fails here.
"""

from __future__ import annotations

import numpy as np
import pytest

INPUT_SHAPE = (12, 12, 1)
N_INPUTS = 300


def _build(kernels: str, seed: int) -> bytes:
    """conv 3x3x16 -> conv 3x3x32 -> depthwise 3x3 -> maxpool -> dense 32 -> dense 10, full int8.

    ``kernels``: "clustered" (16 shared values per conv/dense kernel, every output channel holding
    both extremes so that all its per-channel scales are equal; 2 values per depthwise channel),
    "sparse" (80 % exact zeros) or "dense" (plain random).
    """
    from pipeline.export import convert
    from pipeline.keras_env import keras, set_seed

    set_seed(seed)
    rng = np.random.default_rng(seed)
    layers = keras.layers
    model = keras.Sequential([
        keras.Input(INPUT_SHAPE),
        layers.Conv2D(16, 3, activation="relu"),
        layers.Conv2D(32, 3, activation="relu"),
        layers.DepthwiseConv2D(3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(32, activation="relu"),
        layers.Dense(10),
    ])
    centroids = np.linspace(-1.0, 1.0, 16)
    for layer in model.layers:
        if not layer.get_weights():
            continue
        kernel, bias = layer.get_weights()
        scale = np.sqrt(2.0 / np.prod(kernel.shape[:-1]))
        if kernels == "clustered" and isinstance(layer, layers.DepthwiseConv2D):
            pair = rng.normal(size=(2, 1, 1, kernel.shape[2], 1))  # kernel (3, 3, channels, 1)
            pick = rng.integers(0, 2, size=kernel.shape).astype(bool)
            pick[0, 0], pick[0, 1] = False, True  # both values in every channel
            kernel = np.where(pick, pair[1], pair[0])
        elif kernels == "clustered":
            flat = rng.choice(centroids, size=kernel.shape).reshape(-1, kernel.shape[-1])
            flat[0], flat[1] = -1.0, 1.0  # rows: elements, columns: output channels
            kernel = flat.reshape(kernel.shape)
        else:
            kernel = rng.normal(size=kernel.shape)
            if kernels == "sparse":
                kernel[rng.random(kernel.shape) < 0.8] = 0.0
        layer.set_weights([(kernel * scale).astype(np.float32),
                           rng.normal(0, 0.05, bias.shape).astype(np.float32)])
    representative = rng.normal(size=(64, *INPUT_SHAPE)).astype(np.float32)
    return convert(model, "int8", representative)


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    return np.random.default_rng(7).integers(-128, 128, size=(N_INPUTS, *INPUT_SHAPE), dtype=np.int8)


@pytest.fixture(scope="module")
def clustered() -> bytes:
    return _build("clustered", seed=1)


@pytest.fixture(scope="module")
def sparse() -> bytes:
    return _build("sparse", seed=2)


@pytest.fixture(scope="module")
def lut_compressed(clustered):
    from pipeline.tflm_compress import compress_weights

    return compress_weights(clustered, "lut")


def test_lut_is_smaller_and_bit_identical(clustered, lut_compressed, inputs):
    from pipeline.tflm_compress import verify_bit_identical
    from tinyfarm.tflite_file import is_compressed

    cm = lut_compressed
    assert cm is not None and is_compressed(cm.model) and not is_compressed(clustered)
    assert len(cm.model) < len(clustered)
    by_name = {t.name: t for t in cm.tensors}
    # conv2 (per channel, axis 0, 16 values), depthwise (per channel on the LAST axis, 2 values),
    # dense 32 (per channel, 16 values); conv1 and dense 10 are too small to save 64 bytes
    assert {n: (t.method, t.bits) for n, t in by_name.items()} == {
        "CONV_2D#1 filter": ("lut", 4), "DEPTHWISE_CONV_2D#2 filter": ("lut", 1),
        "FULLY_CONNECTED#5 weights": ("lut", 4)}
    assert all(t.bytes_after < t.bytes_before for t in cm.tensors)
    assert cm.as_dict()["weight_bytes_saved"] > 5000
    result = verify_bit_identical(clustered, cm, inputs)
    assert result["compared"] == N_INPUTS
    assert result["identical"] == N_INPUTS


def test_pruning_is_smaller_and_bit_identical(sparse, inputs):
    from pipeline.tflm_compress import compress_weights, verify_bit_identical

    cm = compress_weights(sparse, "prune")
    assert cm is not None and len(cm.model) < 0.7 * len(sparse)
    assert {t.method for t in cm.tensors} == {"prune"} and {t.bits for t in cm.tensors} == {8}
    assert {t.name for t in cm.tensors} >= {"CONV_2D#1 filter", "FULLY_CONNECTED#5 weights"}
    result = verify_bit_identical(sparse, cm, inputs)
    assert result == {**result, "compared": N_INPUTS, "identical": N_INPUTS}
    auto = compress_weights(sparse, "auto")  # per tensor, never worse than pruning alone
    assert sum(t.bytes_after for t in auto.tensors) <= sum(t.bytes_after for t in cm.tensors)


def test_wrong_lut_mode_is_detected(clustered, inputs):
    """Per-tensor LUT on a per-channel tensor runs and decodes wrongly: the check must see it."""
    from tflite_micro.tensorflow.lite.micro.compression import compress, spec

    from pipeline.tflm_compress import CompressedModel, compress_weights, verify_bit_identical
    from tinyfarm.tflite_file import decompression_bytes

    conv = next(t for t in compress_weights(clustered, "lut").tensors if t.name == "CONV_2D#1 filter")
    wrong = bytes(compress(clustered, [spec.Tensor(subgraph=0, tensor=conv.tensor, compression=[
        spec.LookUpTableCompression(index_bitwidth=4, mode=spec.PerTensor())])]))
    cm = CompressedModel(wrong, (), decompression_bytes(wrong))
    result = verify_bit_identical(clustered, cm, inputs)
    assert result["compared"] == N_INPUTS
    assert result["identical"] < N_INPUTS // 2


def test_decompression_memory_shrinks_the_arena(lut_compressed):
    from device_harness.twin import find_arena

    cm = lut_compressed
    biggest = max(t.bytes_before for t in cm.tensors)  # int8: decoded bytes = elements
    assert biggest <= cm.decompression_bytes <= -(-biggest // 16) * 16  # one DECODE output each
    with_memory = find_arena(cm.model, decompression_bytes=cm.decompression_bytes).arena_bytes
    without = find_arena(cm.model).arena_bytes
    short = find_arena(cm.model, decompression_bytes=cm.decompression_bytes - 16).arena_bytes
    assert with_memory is not None and without is not None
    assert with_memory + biggest // 2 < without
    assert with_memory + biggest // 2 < short  # the biggest decoded tensor no longer fits beside


def test_nothing_to_compress_returns_none(clustered):
    from pipeline.tflm_compress import compress_weights

    dense = _build("dense", seed=3)
    assert compress_weights(dense, "auto") is None
    assert compress_weights(clustered, "prune") is None  # no zeros to prune
    with pytest.raises(ValueError):
        compress_weights(clustered, "huffman")


def _decode_like_the_runtime(encoded: bytes, table: bytes, zps: np.ndarray, shape, axis: int | None):
    """DecodeStatePrune's int8 loops, transcribed (per-channel zero points on axis 0 or the last)."""
    count, values, out = int(np.prod(shape)), iter(np.frombuffer(table, np.int8)), []
    channels = len(zps)
    for i in range(count):
        if axis is None:
            zp = zps[0]
        elif axis == 0:
            zp = zps[i // (count // channels)]
        else:
            zp = zps[i % channels]
        out.append(next(values) if (encoded[i >> 3] >> (~i & 7)) & 1 else zp)
    return np.array(out, np.int8).reshape(shape)


@pytest.mark.parametrize("axis", [0, 3, None])
def test_pruning_encoder_zero_points(axis):
    """Non-zero zero points, per channel on either supported axis or per tensor, round-trip."""
    from tflite_micro.tensorflow.lite.micro.compression import compressor, model_editor
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    from pipeline.pruning_encoder import Pruning, PruningEncoder

    rng = np.random.default_rng(5)
    shape = (4, 3, 3, 5)
    channels = 1 if axis is None else shape[axis]
    zps = rng.integers(-20, 20, size=channels).astype(np.int8)
    zp_full = np.broadcast_to(zps.reshape([-1 if d == axis else 1 for d in range(4)]) if axis is not None
                              else zps[0], shape)
    values = rng.integers(-128, 128, size=shape).astype(np.int8)
    values = np.where(rng.random(shape) < 0.7, zp_full, values).astype(np.int8)
    quant = model_editor.Quantization(scales=[0.1] * channels, zero_points=[int(z) for z in zps],
                                      axis=axis)
    tensor = model_editor.Tensor(shape=shape, dtype=schema.TensorType.INT8, data=values, quantization=quant)
    res = PruningEncoder().compress(tensor, Pruning())
    anc = res.ancillary_data
    assert anc[0] == 2 and anc[1] == 1 and anc[4] == 1 and len(res.encoded_data) == -(-values.size // 8)
    decoded = _decode_like_the_runtime(res.encoded_data, anc[16:], zps, shape, axis)
    assert np.array_equal(decoded, values)
    assert len(anc) - 16 == np.count_nonzero(values != zp_full)
    if axis is not None:  # a middle quantization axis: the runtime rejects it, so must the encoder
        tensor.quantization = model_editor.Quantization(scales=[0.1] * 3, zero_points=[1, 2, 3], axis=1)
        tensor.array = values[:, :, :, :1].repeat(5, axis=3)
        with pytest.raises(compressor.CompressionError):
            PruningEncoder().compress(tensor, Pruning())
