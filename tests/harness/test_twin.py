"""The twin behind the protocol, driven by the real client over a pty and over TCP."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest

from device_harness.protocol import device_errors as client_mod
from device_harness.boards import get_board
from device_harness.client import DeviceClient
from device_harness.protocol.device_errors import DeviceFaultError
from tinyfarm.errors import DeviceTimeout
from device_harness.protocol import ErrorCode, MsgType, encode_frame, pack_request
from device_harness.transports.faulty import FaultyPort
from device_harness.twin.server import TwinServer


@pytest.fixture(scope="module")
def twin():
    with TwinServer(get_board("stm32f4-discovery")) as server:
        yield server


@pytest.fixture
def dev(twin):
    with DeviceClient.open(twin.url) as client:
        client.hello()
        yield client


def test_hello_reports_the_board_and_honest_ticks(dev):
    info = dev.info
    assert info.board == "twin:stm32f4-discovery" and info.tick_source == "estimate"
    assert info.tick_hz == 168_000_000 and info.has_engine and info.rx_window >= 1
    assert info.arena_bytes == 65536 and info.max_model_bytes == 98304
    assert dev.echo(b"\x00\xa5\x5a" * 100) == b"\x00\xa5\x5a" * 100


def test_upload_invoke_bench_arena(dev, conv_int8):
    result = dev.upload(conv_int8)
    assert result.verified and result.loaded and result.arena_used == 9808  # the host TFLM's record
    assert dev.inputs[0].dims == (1, 1960) and dev.outputs[0].dims == (1, 4)
    x = np.arange(1960, dtype=np.int64).astype(np.int8).reshape(1, 1960)
    outputs, ticks = dev.invoke([x])
    assert outputs[0].dtype == np.int8 and outputs[0].shape == (1, 4) and ticks > 0
    again, _ = dev.invoke([x])
    np.testing.assert_array_equal(outputs[0], again[0])
    assert len(dev.bench(warmup=1, runs=5)) == 5
    assert dev.arena() == (9808, 65536)


def test_bench_splits_runs_over_several_calls(twin, sine_int8):
    with DeviceClient.open(twin.url, max_payload=256) as small:
        assert small.hello().max_payload == 256
        small.upload(sine_int8)
        small.set_inputs([np.zeros((1, 1), np.int8)])
        ticks = small.bench(warmup=0, runs=130)  # (256 - 4) / 4 = 63 per BENCH
        assert len(ticks) == 130 and small.link.stats.frames_sent > 3


def test_device_errors_carry_codes(dev, conv_int8, sine_int8, unsupported_op_model):
    with pytest.raises(client_mod.ModelTooLargeError) as exc:
        dev.upload(b"TFL3" * 30_000)  # 120 KB > 96 KB model buffer: refused before sending
    assert exc.value.code == ErrorCode.MODEL_TOO_LARGE
    with pytest.raises(client_mod.OpUnsupportedError, match="RANDOM_UNIFORM"):
        dev.upload(unsupported_op_model)
    with pytest.raises(client_mod.ModelInvalidError):
        dev.upload(conv_int8[:9000])
    with pytest.raises(client_mod.NoModelError):
        dev.run()
    with pytest.raises(client_mod.BadStateError):
        dev.call(MsgType.MODEL_CHUNK, offset=0, data=b"x")
    dev.call(MsgType.MODEL_BEGIN, size=len(sine_int8), sha256=[0] * 32)
    dev.call(MsgType.MODEL_CHUNK, offset=0, data=sine_int8[:100])
    with pytest.raises(client_mod.OutOfOrderError, match="expected offset 100"):
        dev.call(MsgType.MODEL_CHUNK, offset=200, data=sine_int8[200:300])
    dev.call(MsgType.MODEL_CHUNK, offset=100, data=sine_int8[100:])
    with pytest.raises(client_mod.HashMismatchError):
        dev.call(MsgType.MODEL_END)
    with pytest.raises(client_mod.UnknownCommandError):
        dev.request(0x7F)


def test_arena_too_small_on_a_small_board(conv_int8):
    with TwinServer(get_board().with_overrides(arena_bytes=4096)) as server, \
            DeviceClient.open(server.url) as dev:
        with pytest.raises(client_mod.ArenaTooSmallError, match="4096-byte arena"):
            dev.upload(conv_int8)


def test_a_retransmitted_request_is_answered_from_the_cache(sine_int8):
    """Same seq and type as the last request: the remembered answer, not a second INVOKE (host-ns
    ticks, which differ run to run; a board-profile twin's estimated ticks are all the same)."""
    with TwinServer(get_board("stm32f4-discovery"), host_time=True) as server, \
            DeviceClient.open(server.url) as dev:
        dev.hello()
        _retransmit_invoke(dev, sine_int8)


def _retransmit_invoke(dev, sine_int8):
    dev.upload(sine_int8)
    frame = encode_frame(MsgType.INVOKE, 0x4242, b"")
    answers = []
    for _ in range(2):
        dev.link.port.write(frame)
        answers.append(dev.link.next_event(time.monotonic() + 2))
    assert answers[0] == answers[1]  # identical ticks: executed once
    dev.link.port.write(encode_frame(MsgType.INVOKE, 0x4243, b""))
    third = dev.link.next_event(time.monotonic() + 2)
    assert third.seq == 0x4243 and third.payload != answers[0].payload  # a new seq runs again


def test_lstm_segfault_is_a_device_fault_and_the_next_command_succeeds(lstm_model, sine_int8):
    with TwinServer(get_board().with_overrides(arena_bytes=64)) as server, \
            DeviceClient.open(server.url) as dev:
        with pytest.raises(DeviceFaultError, match="SIGSEGV") as exc:
            dev.upload(lstm_model)
        assert exc.value.code == ErrorCode.DEVICE_FAULT
        assert "twin reset itself" in str(exc.value)
        assert dev.hello().board.startswith("twin:")
        with pytest.raises(client_mod.NoModelError):
            dev.arena()  # the fault dropped the model, like RAM after a HardFault
        server.device.profile = get_board()  # the same twin, now with room: it works again
        assert dev.upload(sine_int8).loaded
        out, _ = dev.invoke([np.zeros((1, 1), np.int8)])
        assert out[0].shape == (1, 1)


@pytest.mark.parametrize("faults", [pytest.param(dict(corrupt=0.01), marks=pytest.mark.slow, id="corrupt1%"),
                                    pytest.param(dict(drop=0.005, dup=0.005), id="drop+dup")])
def test_upload_and_invoke_survive_a_noisy_line(twin, conv_int8, faults):
    """1% of bytes corrupted (or dropped/duplicated) both ways: the upload completes and verifies."""
    with DeviceClient.open(twin.url) as clean:
        inner = clean.link.port
        noisy = FaultyPort(inner, seed=3, **faults)
        dev = DeviceClient(noisy, response_ms=200)
        dev.hello()
        result = dev.upload(conv_int8)
        assert result.verified and result.loaded
        assert noisy.counts["corrupted"] + noisy.counts["dropped"] + noisy.counts["duplicated"] > 10
        assert dev.link.chunk < dev.link.max_chunk()  # it adapted
        x = np.arange(1960).astype(np.int8).reshape(1, 1960)
        noisy_out, _ = dev.invoke([x])
        noisy.corrupt = noisy.drop = noisy.dup = 0.0
        clean_out, _ = dev.invoke([x])
        np.testing.assert_array_equal(noisy_out[0], clean_out[0])


def test_a_device_reset_mid_upload_restarts_the_upload(twin, conv_int8):
    with DeviceClient.open(twin.url) as clean:
        noisy = FaultyPort(clean.link.port, reset_after=9000, on_reset=lambda: twin.device._reset_state())
        dev = DeviceClient(noisy, response_ms=300, chunk=1024)
        dev.hello()
        result = dev.upload(conv_int8)  # the device forgot the upload: BAD_STATE -> start over
        assert result.verified and result.loaded
        assert noisy.counts["resets"] == 1 and dev.link.stats.extra["upload_restarts"] == 1
        assert "BAD_STATE" in dev.link.stats.extra["last_restart_reason"]
        noisy.reset_after, noisy.written = 1000, 0
        dev.upload_restarts = 0
        with pytest.raises(client_mod.BadStateError):  # without restarts: one clear error
            dev.upload(conv_int8)


def test_tcp_twin_and_reconnect(sine_int8):
    with TwinServer(get_board(), tcp=True) as server:
        assert server.url.startswith("socket://127.0.0.1:")
        with DeviceClient.open(server.url) as dev:
            dev.upload(sine_int8)
        with DeviceClient.open(server.url) as dev:  # the board kept its model across connections
            assert dev.hello() and dev.arena()[0] > 0


def test_silence_is_a_timeout_not_a_hang():
    with DeviceClient.open("loop://", response_ms=50, retries=2) as dev:
        # loop:// echoes our own request back: it is not a response, so nothing ever answers
        with pytest.raises(DeviceTimeout, match="no answer"):
            dev.hello()


def test_upload_sends_a_sha256_the_device_checks(dev, sine_int8):
    begin = pack_request(MsgType.MODEL_BEGIN, size=len(sine_int8), sha256=list(hashlib.sha256(sine_int8).digest()))
    assert begin[4:] == hashlib.sha256(sine_int8).digest()
    assert dev.upload(sine_int8).verified
