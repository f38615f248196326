"""TFLM weight compression (DECODE operators) end to end: the DECODE capability in HELLO, the
alternate decompression memory of the twin, and the one-line refusal for a device without it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from device_harness.boards import get_board
from device_harness.client import DeviceClient
from device_harness.protocol import Capability, ErrorCode, MsgType
from device_harness.protocol.device_errors import CompressionUnsupportedError
from device_harness.twin.server import TwinServer
from device_harness.twin.tflm_process import TflmProcess
from tinyfarm.cli import cli
from tinyfarm.tflite_file import decompression_bytes, is_compressed


@pytest.fixture(scope="module")
def decoding_twin():
    with TwinServer(get_board("stm32f4-discovery")) as server:
        yield server


@pytest.fixture(scope="module")
def plain_twin():
    """A twin without the DECODE capability: what a firmware built without compression answers."""
    with TwinServer(get_board("stm32f4-discovery"), decode=False, tcp=True) as server:
        yield server


def test_decompression_bytes_follow_tflm_decode_layout(sine_int8, compressed_sine):
    import warnings

    from tflite_micro.tensorflow.lite.micro.compression import compress, spec

    assert not is_compressed(sine_int8) and decompression_bytes(sine_int8) == 0
    # three DECODE operators, one tensor each: 16, 16x16, 16 int8 values -> the largest, 256 B
    assert is_compressed(compressed_sine) and decompression_bytes(compressed_sine) == 256
    # one DECODE with two outputs (a dense layer's 16x16 int8 weights and 16 int32 biases): TFLM
    # places them one after the other, 16-byte aligned -> 256 + 64 (tensors 4 and 3 of sine_int8,
    # both quantized per channel on axis 0)
    lut = [spec.LookUpTableCompression(index_bitwidth=4, mode=spec.PerChannel(axis=0))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        both = bytes(compress(sine_int8, [spec.Tensor(0, 4, lut), spec.Tensor(0, 3, lut)]))
    need = decompression_bytes(both)
    assert need == 320
    with TflmProcess() as tflm:  # one byte less and the bias is decoded into the arena instead
        fits = tflm.load(both, 65536, decompression_bytes=need).arena_used
        assert tflm.load(both, 65536, decompression_bytes=need - 1).arena_used > fits


def test_hello_says_whether_the_device_decodes(decoding_twin, plain_twin):
    with DeviceClient.open(decoding_twin.url) as dev:
        info = dev.hello()
        assert info.decodes and info.capabilities & Capability.DECODE
        assert "DECODE" in info.as_dict()["capability_names"]
    with DeviceClient.open(plain_twin.url) as dev:
        info = dev.hello()
        assert info.has_engine and not info.decodes


def test_compressed_model_runs_like_the_uncompressed_one(decoding_twin, sine_int8, compressed_sine):
    xs = [np.full((1, 1), v, np.int8) for v in (-128, -40, 0, 17, 90, 127)]
    with DeviceClient.open(decoding_twin.url) as dev:
        plain = dev.upload(sine_int8)
        assert not plain.compressed and plain.decompression_capacity == 0
        expected = [dev.invoke([x])[0][0] for x in xs]
        assert dev.decompression() == (0, 0)  # asked: an uncompressed model decodes nothing
        result = dev.upload(compressed_sine)
        assert result.loaded and result.compressed
        assert (result.decompression_used, result.decompression_capacity) == (256, 256)
        assert dev.decompression() == (256, 256)
        got = [dev.invoke([x])[0][0] for x in xs]
        arena_used = dev.arena()[0]
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)
    # the decoded weights live beside the arena, not in it: less arena than decoding into it
    with TflmProcess() as tflm:
        assert arena_used < tflm.load(compressed_sine, 65536).arena_used


def test_a_device_without_decode_refuses_before_any_byte_is_sent(plain_twin, compressed_sine, sine_int8):
    with DeviceClient.open(plain_twin.url) as dev:
        dev.hello()
        sent = dev.link.stats.frames_sent
        with pytest.raises(CompressionUnsupportedError) as err:
            dev.upload(compressed_sine)
        assert dev.link.stats.frames_sent == sent
        assert not err.value.retryable and "\n" not in str(err.value)
        assert "TINYFARM_TFLM_COMPRESSION" in str(err.value) and plain_twin.url in str(err.value)
        assert dev.decompression() == (0, 0) and dev.link.stats.frames_sent == sent  # never asked
        assert dev.upload(sine_int8).loaded  # uncompressed models still go


def test_the_twin_itself_answers_compression_unsupported(plain_twin, compressed_sine):
    """A host that skips the check (or an older host) still gets a clear answer from MODEL_END."""
    import hashlib

    with DeviceClient.open(plain_twin.url) as dev:
        dev.hello()
        dev.call(MsgType.MODEL_BEGIN, size=len(compressed_sine),
                 sha256=list(hashlib.sha256(compressed_sine).digest()))
        dev.call(MsgType.MODEL_CHUNK, offset=0, data=compressed_sine)
        with pytest.raises(CompressionUnsupportedError, match="DECODE"):
            dev.call(MsgType.MODEL_END)
        assert CompressionUnsupportedError.code == ErrorCode.COMPRESSION_UNSUPPORTED


def test_cli_deploy_to_a_device_without_decode_is_one_error_line(plain_twin, decoding_twin, compressed_sine,
                                                                   tmp_path):
    model = tmp_path / "hello_lut.tflite"
    model.write_bytes(compressed_sine)
    res = CliRunner().invoke(cli, ["deploy", str(model), "--device", plain_twin.url], catch_exceptions=False)
    assert res.exit_code != 0
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.output
    assert "COMPRESSION_UNSUPPORTED" in lines[0] and "weight compression" in lines[0]
    out = CliRunner().invoke(cli, ["deploy", str(model), "--device", decoding_twin.url, "--json"],
                             catch_exceptions=False)
    assert out.exit_code == 0 and json.loads(out.stdout)["loaded"]
