"""Clustering + cluster-preserving QAT: the int8 .tflite keeps <= 16 values per output channel and the
pruned zeros, and TFLM's LUT compression of it runs bit-identically."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import cluster
from pipeline.cluster import cluster_model, cluster_qat, make_cqat_model
from pipeline.export import convert, representative_samples
from pipeline.keras_env import keras, set_seed
from pipeline.prune import PRUNABLE, prune_model

CLUSTERS = 16

#: Operators whose input 1 is a weight tensor, and the axis of its output channels.
_KERNEL_AXIS = {"CONV_2D": 0, "FULLY_CONNECTED": 0, "DEPTHWISE_CONV_2D": 3}


def tflite_kernels(model_bytes: bytes) -> list[dict]:
    """The int8 kernels of a ``.tflite``: ``{"op", "subgraph", "tensor", "values", "axis",
    "per_channel"}`` for each conv/dense operator's weight tensor (read once if shared)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    out, seen = [], set()
    for s_idx, sg in enumerate(model.subgraphs):
        for op in sg.operators:
            code = model.operatorCodes[op.opcodeIndex]
            name = names.get(max(int(code.builtinCode), int(code.deprecatedBuiltinCode)), "")
            if name not in _KERNEL_AXIS or op.inputs is None or len(op.inputs) < 2:
                continue
            t_idx = int(op.inputs[1])
            tensor = sg.tensors[t_idx]
            buf = model.buffers[tensor.buffer]
            if (s_idx, t_idx) in seen or tensor.type != schema.TensorType.INT8 or buf.data is None:
                continue
            seen.add((s_idx, t_idx))
            values = np.frombuffer(np.asarray(buf.data, np.uint8).tobytes(), np.int8)
            values = values.reshape([int(d) for d in tensor.shape])
            q = tensor.quantization
            per_channel = q is not None and q.scale is not None and len(q.scale) > 1
            axis = int(q.quantizedDimension) if per_channel else _KERNEL_AXIS[name]
            out.append({"op": name, "subgraph": s_idx, "tensor": t_idx, "values": values,
                        "axis": axis, "per_channel": per_channel})
    return out


def distinct_per_channel(model_bytes: bytes) -> list[int]:
    """For each int8 conv/dense kernel of a ``.tflite``, the most distinct values any output
    channel has (what a per-channel LUT must index)."""
    return [max(np.unique(ch).size for ch in np.moveaxis(k["values"], k["axis"], 0))
            for k in tflite_kernels(model_bytes)]


@pytest.fixture(scope="module")
def chain(small_digits, trained_tiny):
    """trained tiny CNN -> 50 % pruned -> 16 clusters (sparsity kept) -> CQAT -> int8 .tflite."""
    set_seed(0)
    pruned, _ = prune_model(trained_tiny, small_digits, target_sparsity=0.5, epochs=1, batch_size=64)
    clustered, info = cluster_model(pruned, small_digits, clusters=CLUSTERS, preserve_sparsity=True,
                                    epochs=1, batch_size=64, learning_rate=1e-3)
    qat, _ = cluster_qat(clustered, small_digits, preserve_sparsity=True, epochs=1, batch_size=64,
                         learning_rate=1e-4)
    int8 = convert(qat, "int8", representative_samples(small_digits.x_train, 50))
    return pruned, clustered, info, int8


def _kernels(model):
    return [(layer.name, layer.get_weights()[0]) for layer in model.layers if isinstance(layer, PRUNABLE)]


def test_clustered_kernels_have_few_values_and_keep_the_pruned_zeros(chain):
    pruned, clustered, info, _ = chain
    assert info["clusters"] == CLUSTERS
    assert set(info["unique_values_per_layer"]) == {"conv0", "conv1", "hidden", "classifier"}
    assert all(2 <= n <= CLUSTERS for n in info["unique_values_per_layer"].values())
    for (name, before), (_, after) in zip(_kernels(pruned), _kernels(clustered)):
        assert np.mean(before == 0) > 0.4, name
        assert np.all(after[before == 0] == 0), name
    assert not any("cluster" in type(layer).__name__.lower() for layer in clustered.layers)


def test_int8_kernels_keep_16_values_per_channel_and_the_zeros(chain):
    pruned, _, _, int8 = chain
    kernels = tflite_kernels(int8)
    assert [k["op"] for k in kernels] == ["CONV_2D", "CONV_2D", "FULLY_CONNECTED", "FULLY_CONNECTED"]
    assert all(n <= CLUSTERS for n in distinct_per_channel(int8))
    for (name, keras_kernel), k in zip(_kernels(pruned), kernels):
        # Keras conv (kh, kw, in, out) -> TFLite (out, kh, kw, in); dense (in, out) -> (out, in).
        order = (3, 0, 1, 2) if keras_kernel.ndim == 4 else (1, 0)
        was_zero = np.transpose(keras_kernel == 0, order)
        assert was_zero.shape == k["values"].shape, name
        assert np.all(k["values"][was_zero] == 0), name


def test_lut_compression_uses_4_bit_indices_and_is_lossless_in_tflm(chain, small_digits):
    from pipeline.tflm_compress import store_for_tflm, verify_bit_identical
    from tinyfarm.litert_reference import ReferenceInterpreter, quantize_input

    int8 = chain[3]
    compressed = store_for_tflm(int8, "lut", min_saving_bytes=0)
    assert compressed is not None and len(compressed.model) < len(store_for_tflm(int8, "none").model)
    # conv0 (8 channels x 9 weights) would grow with a 16-entry table per channel: left alone.
    assert len(compressed.tensors) >= 3 and all(t.bits <= 4 for t in compressed.tensors)
    xq = quantize_input(small_digits.x_test, ReferenceInterpreter(int8).inputs[0])
    proof = verify_bit_identical(int8, compressed, xq)
    assert proof["compared"] == len(xq) and proof["identical"] == proof["compared"], proof


def test_make_cqat_model_retries_on_a_reloaded_model(monkeypatch, trained_tiny):
    calls = []
    real = cluster.make_qat_model

    def flaky(model, **kwargs):
        calls.append(model)
        if len(calls) == 1:
            raise ValueError("Unable to clone model. This generally happens if ...")
        return real(model, **kwargs)

    monkeypatch.setattr(cluster, "make_qat_model", flaky)
    qat = make_cqat_model(trained_tiny, preserve_sparsity=False)
    assert len(calls) == 2 and calls[1] is not trained_tiny
    assert any(type(layer).__name__.startswith("QuantizeWrapper") for layer in qat.layers)
    x = np.zeros((2, *trained_tiny.input_shape[1:]), np.float32)
    assert qat.predict(x, verbose=0).shape == (2, 10)

    def broken(model, **kwargs):
        raise ValueError("something else")

    monkeypatch.setattr(cluster, "make_qat_model", broken)
    with pytest.raises(ValueError, match="something else"):
        make_cqat_model(trained_tiny)


def test_cluster_model_leaves_its_input_alone_and_accepts_a_fit(small_digits, trained_tiny):
    before = [w.copy() for w in trained_tiny.get_weights()]
    seen = []

    def fit(wrapped: keras.Model, callbacks: list) -> dict:
        seen.append(callbacks)
        return {"loss": []}  # no training: the centroids as k-means++ put them

    _clustered, info = cluster_model(trained_tiny, small_digits, clusters=4, preserve_sparsity=False,
                                    epochs=1, batch_size=64, learning_rate=1e-3, fit=fit)
    assert seen == [[]] and info["history"] == {"loss": []}
    assert all(n <= 4 for n in info["unique_values_per_layer"].values())
    for a, b in zip(before, trained_tiny.get_weights()):
        np.testing.assert_array_equal(a, b)
