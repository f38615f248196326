"""Fixtures for the device-harness tests: model bytes, a model with an op TFLM lacks, the LSTM model."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def hello_int8(shared_models: Path) -> bytes:
    return (shared_models / "hello_world_int8.tflite").read_bytes()


@pytest.fixture(scope="session")
def micro_speech(shared_models: Path) -> bytes:
    return (shared_models / "micro_speech_quantized.tflite").read_bytes()


@pytest.fixture(scope="session")
def lstm_model() -> bytes:
    """Tiny int8 LSTM (see data/make_lstm_model.py): segfaults the TFLM runtime on a 64-byte arena."""
    return (DATA / "lstm_int8.tflite").read_bytes()


@pytest.fixture(scope="session")
def unsupported_op_model(hello_int8: bytes) -> bytes:
    """hello_world with its FULLY_CONNECTED opcode rewritten to RANDOM_UNIFORM, which TFLM lacks."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(hello_int8, 0))
    for opcode in model.operatorCodes:
        opcode.builtinCode = schema.BuiltinOperator.RANDOM_UNIFORM
        opcode.deprecatedBuiltinCode = 127
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.fixture(scope="session")
def compressed_hello(hello_int8: bytes) -> bytes:
    """hello_world int8 with its three weight tensors LUT-compressed (three DECODE operators)."""
    from pipeline.tflm_compress import compress_weights

    compressed = compress_weights(hello_int8, "lut", min_saving_bytes=-(1 << 20), require_smaller=False)
    assert compressed is not None and len(compressed.tensors) == 3
    return compressed.model
