"""byte_breakdown and trim_for_tflm: exact byte accounting, and a trimmed model that runs the same."""

from __future__ import annotations

import numpy as np
import pytest

from tinyfarm.errors import ModelError
from tinyfarm.tflite_bytes import (
    CATEGORIES,
    _Painter,
    byte_breakdown,
    format_breakdown,
    trim_for_tflm,
)

N_INPUTS = 200


@pytest.fixture(scope="module")
def cnn():
    """A small int8 CNN with random (non-zero) weights, biases and BatchNorm statistics."""
    from pipeline.keras_env import set_seed
    from pipeline.keras_models import build_cnn

    set_seed(0)
    model = build_cnn((8, 8, 1), 10, width=8, depth=2, dense_units=16)
    rng = np.random.default_rng(0)
    model.set_weights([(rng.uniform(0.5, 1.5, w.shape) if "variance" in v.name
                        else rng.normal(0.0, 0.3, w.shape)).astype(np.float32)
                       for v, w in zip(model.weights, model.get_weights())])
    return model, rng.random((64, 8, 8, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def int8_raw(cnn) -> bytes:
    from pipeline.export import convert

    model, rep = cnn
    return convert(model, "int8", rep, strip=False)


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _model(data: bytes):
    return _schema().ModelT.InitFromPackedBuf(bytearray(data), 0)


def _pack(m) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _random_inputs(model: bytes, n: int = N_INPUTS, seed: int = 0) -> np.ndarray:
    from tinyfarm.litert_reference import ReferenceInterpreter

    d = ReferenceInterpreter(model).inputs[0]
    rng, dtype, shape = np.random.default_rng(seed), np.dtype(d["dtype"]), (n, *d["shape"][1:])
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)


def _tflm_outputs(model: bytes, x: np.ndarray) -> tuple[int, np.ndarray]:
    from device_harness.twin import find_arena, host_outputs

    search = find_arena(model)
    assert search.arena_bytes is not None, search.error
    return search.arena_bytes, np.concatenate(list(host_outputs(model, search.arena_bytes, x)))


def _litert_outputs(model: bytes, x: np.ndarray) -> np.ndarray:
    from tinyfarm.litert_reference import ReferenceInterpreter

    ref = ReferenceInterpreter(model)
    return np.stack([ref([x[i: i + 1]])[0] for i in range(len(x))])


def _weight_bytes(data: bytes) -> int:
    """Data bytes of the buffers tensors reference, counted independently of byte_breakdown."""
    m = _model(data)
    used = {t.buffer for sg in m.subgraphs for t in sg.tensors}
    return sum(len(m.buffers[i].data) for i in used if m.buffers[i].data is not None)


def _check_breakdown(data: bytes) -> dict[str, int]:
    parts = byte_breakdown(data)
    assert list(parts) == list(CATEGORIES) and min(parts.values()) >= 0
    assert sum(parts.values()) == len(data)
    assert parts["weights"] == _weight_bytes(data)
    return parts


# -- trimming a converted int8 CNN ----------------------------------------------------------------
def test_trimmed_cnn_is_smaller_than_strip_strings_and_runs_identically(int8_raw):
    from tensorflow.lite.tools import flatbuffer_utils

    old = flatbuffer_utils.read_model_from_bytearray(bytearray(int8_raw))
    flatbuffer_utils.strip_strings(old)  # what pipeline.export.strip_strings used to do
    stripped = bytes(flatbuffer_utils.convert_object_to_bytearray(old))
    trimmed = trim_for_tflm(int8_raw)
    assert len(trimmed) < len(stripped) < len(int8_raw)

    x = _random_inputs(int8_raw)
    arena, y = _tflm_outputs(int8_raw, x)
    arena_t, y_t = _tflm_outputs(trimmed, x)
    assert arena_t <= arena and np.array_equal(y, y_t)
    assert np.array_equal(_litert_outputs(int8_raw, x), _litert_outputs(trimmed, x))


def test_breakdown_sums_exactly_and_trimming_removes_what_tflm_does_not_read(int8_raw):
    before = _check_breakdown(int8_raw)
    assert before["strings"] > 0 and before["signatures"] > 0 and before["metadata"] > 0
    trimmed = trim_for_tflm(int8_raw)
    after = _check_breakdown(trimmed)
    assert after["weights"] == before["weights"]  # nothing duplicated here: every weight byte stays
    assert after["strings"] == after["signatures"] == after["metadata"] == 0
    assert after["quantization"] < before["quantization"] and after["tensors"] < before["tensors"]
    assert trim_for_tflm(trimmed) == trimmed  # idempotent
    table = format_breakdown(before, after)
    assert f"{len(int8_raw) - len(trimmed):,}" in table.splitlines()[-1]

    m = _model(trimmed)
    assert m.buffers[0].data is None or len(m.buffers[0].data) == 0  # the empty sentinel
    assert all(b.data is not None and len(b.data) for b in m.buffers[1:])  # no empty/unused ones
    used = {t.buffer for t in m.subgraphs[0].tensors} - {0}
    assert used == set(range(1, len(m.buffers)))
    tensors = m.subgraphs[0].tensors
    assert m.signatureDefs is None and m.metadata is None and m.description is None
    assert all(t.name is None and t.shapeSignature is None for t in tensors)


def test_export_strip_uses_the_trimmer(cnn, int8_raw):
    from pipeline.export import convert, strip_strings

    assert strip_strings(int8_raw) == trim_for_tflm(int8_raw)
    model, rep = cnn
    assert convert(model, "int8", rep) == trim_for_tflm(int8_raw)  # strip=True is the default


def test_buffers_are_naturally_aligned_or_as_asked(int8_raw):
    for align, want in ((None, lambda t: 4 if t in (2, 9) else 8), (16, lambda t: 16)):
        data = trim_for_tflm(int8_raw, align=align)
        p, m = _Painter(data), _model(data)
        root = p.deref(0)
        buffers = p.tables(None, root, 4)
        for t in m.subgraphs[0].tensors:
            if t.buffer:
                start, _ = p.vector(None, buffers[t.buffer], 0, 1)
                assert start % want(t.type) == 0, (align, t.type, start)


def test_shrunk_zero_points_run_identically_on_tflm_but_litert_refuses_them(int8_raw):
    trimmed = trim_for_tflm(int8_raw)
    shrunk = trim_for_tflm(int8_raw, shrink_zero_points=True)
    assert len(shrunk) < len(trimmed)
    assert byte_breakdown(shrunk)["quantization"] < byte_breakdown(trimmed)["quantization"]
    x = _random_inputs(int8_raw, 64, seed=1)
    assert np.array_equal(_tflm_outputs(int8_raw, x)[1], _tflm_outputs(shrunk, x)[1])
    with pytest.raises(ModelError, match="zero_point"):
        _litert_outputs(shrunk, x[:1])


# -- metadata, duplicates, compression --------------------------------------------------------------
def test_offline_memory_plan_is_kept_and_other_metadata_dropped(int8_raw):
    schema = _schema()
    m = _model(int8_raw)
    n_tensors = len(m.subgraphs[0].tensors)
    plan = np.array([1, 0, n_tensors] + [-1] * n_tensors, np.int32)  # -1: planned online
    buf = schema.BufferT()
    buf.data = np.frombuffer(plan.tobytes(), np.uint8)
    m.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name, entry.buffer = b"OfflineMemoryAllocation", len(m.buffers) - 1
    m.metadata.append(entry)
    with_plan = _pack(m)
    trimmed = trim_for_tflm(with_plan)
    t = _model(trimmed)
    assert [x.name for x in t.metadata] == [b"OfflineMemoryAllocation"]
    assert bytes(np.asarray(t.buffers[t.metadata[0].buffer].data, np.uint8)) == plan.tobytes()
    x = _random_inputs(int8_raw, 32, seed=2)
    assert np.array_equal(_tflm_outputs(with_plan, x)[1], _tflm_outputs(trimmed, x)[1])


def test_duplicate_constant_buffers_are_stored_once():
    """Two dense layers sharing one weight matrix; the converter merges them into one tensor, so
    the test splits it into two tensors with equal buffers, as other tools write them."""
    import copy

    from pipeline.export import convert
    from pipeline.keras_env import keras

    inp = keras.Input((8,))
    first, second = keras.layers.Dense(8, activation="relu"), keras.layers.Dense(8)
    model = keras.Model(inp, second(first(inp)))
    rng = np.random.default_rng(3)
    first.set_weights([rng.normal(size=(8, 8)).astype(np.float32), rng.normal(size=8).astype(np.float32)])
    second.set_weights(first.get_weights())
    m = _model(convert(model, "float32", strip=False))
    sg = m.subgraphs[0]
    shared = int(sg.operators[1].inputs[1])
    assert int(sg.operators[0].inputs[1]) == shared
    twin = copy.deepcopy(sg.tensors[shared])
    buf = _schema().BufferT()
    buf.data = np.array(m.buffers[twin.buffer].data, np.uint8)
    m.buffers.append(buf)
    twin.buffer = len(m.buffers) - 1
    sg.tensors.append(twin)
    sg.operators[1].inputs[1] = len(sg.tensors) - 1
    duplicated = _pack(m)
    trimmed = trim_for_tflm(duplicated)
    assert byte_breakdown(duplicated)["weights"] - byte_breakdown(trimmed)["weights"] == 8 * 8 * 4
    _check_breakdown(duplicated)
    _check_breakdown(trimmed)
    x = _random_inputs(duplicated, 64, seed=4)
    assert np.array_equal(_tflm_outputs(duplicated, x)[1], _tflm_outputs(trimmed, x)[1])
    assert np.array_equal(_litert_outputs(duplicated, x), _litert_outputs(trimmed, x))


def test_compression_metadata_keeps_buffer_numbering(int8_raw):
    schema = _schema()
    m = _model(int8_raw)
    buf = schema.BufferT()
    buf.data = np.arange(16, dtype=np.uint8)  # stands for a compression schema (not run here)
    m.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name, entry.buffer = b"COMPRESSION_METADATA", len(m.buffers) - 1
    m.metadata.append(entry)
    original = _model(_pack(m))
    t = _model(trim_for_tflm(_pack(m)))
    assert len(t.buffers) == len(original.buffers)
    assert [x.buffer for x in t.subgraphs[0].tensors] == [x.buffer for x in original.subgraphs[0].tensors]
    assert [x.name for x in t.metadata] == [b"COMPRESSION_METADATA"] and t.metadata[0].buffer == entry.buffer
    for x in original.metadata:  # min_runtime_version, CONVERSION_METADATA: emptied, index kept
        if x.name != b"COMPRESSION_METADATA":
            assert t.buffers[x.buffer].data is None


def test_not_a_model_is_a_model_error(int8_raw):
    for bad in (b"not a model at all", int8_raw[: len(int8_raw) // 2]):
        with pytest.raises(ModelError):
            byte_breakdown(bad)
        with pytest.raises(ModelError):
            trim_for_tflm(bad)


# -- third-party models ---------------------------------------------------------------------------
def test_third_party_models_trim_and_run_identically_on_tflm(shared_models):
    paths = sorted(shared_models.glob("*.tflite"))
    if not paths:
        pytest.skip(f"no .tflite in {shared_models}")
    for path in paths:
        data = path.read_bytes()
        trimmed = trim_for_tflm(data)
        assert len(trimmed) < len(data), path.name
        _check_breakdown(data)
        _check_breakdown(trimmed)
        x = _random_inputs(data)
        assert np.array_equal(_tflm_outputs(data, x)[1], _tflm_outputs(trimmed, x)[1]), path.name
