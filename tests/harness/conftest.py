"""Fixtures for the device-harness tests: a model with an op TFLM lacks, a compressed model, the LSTM
model (the suite's own models ``sine_int8``, ``conv_int8``, ... are in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def lstm_model() -> bytes:
    """Tiny int8 LSTM (see data/make_lstm_model.py): segfaults the TFLM runtime on a 64-byte arena."""
    return (DATA / "lstm_int8.tflite").read_bytes()


@pytest.fixture(scope="session")
def unsupported_op_model(sine_int8: bytes) -> bytes:
    """sine_int8 with its FULLY_CONNECTED opcode rewritten to RANDOM_UNIFORM, which TFLM lacks."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(sine_int8, 0))
    for opcode in model.operatorCodes:
        opcode.builtinCode = schema.BuiltinOperator.RANDOM_UNIFORM
        opcode.deprecatedBuiltinCode = 127
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.fixture(scope="session")
def compressed_sine(sine_int8: bytes) -> bytes:
    """sine_int8 with its three weight tensors LUT-compressed (three DECODE operators)."""
    from pipeline.tflm_compress import compress_weights

    compressed = compress_weights(sine_int8, "lut", min_saving_bytes=-(1 << 20), require_smaller=False)
    assert compressed is not None and len(compressed.tensors) == 3
    return compressed.model
