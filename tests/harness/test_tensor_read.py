"""Intermediate tensors from a device (issue #12): PRESERVE_TENSORS before the upload, READ_TENSOR after
INVOKE; on the twin every op's output equals the host TFLM's preserve-all-tensors run, and
``tinyfarm diff MODEL --device`` compares each layer the device computed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from device_harness.boards import get_board
from device_harness.client import DeviceClient, TensorsUnsupported
from device_harness.layer_diff import _litert, run_litert, run_tflm
from device_harness.protocol import Capability, MsgType
from device_harness.protocol.device_errors import BadArgumentError, BadStateError, UnknownCommandError
from device_harness.twin.server import TwinServer
from tinyfarm.cli import cli


@pytest.fixture(scope="module")
def twin():
    with TwinServer(get_board("stm32f4-discovery"), tcp=True) as server:
        yield server


@pytest.fixture(scope="module")
def plain_twin():
    """A twin without the TENSORS capability: what firmware without -DTINYFARM_TENSOR_DEBUG answers."""
    with TwinServer(get_board("stm32f4-discovery"), tcp=True, tensors=False) as server:
        yield server


def _device_layers(url: str, model: bytes, q: np.ndarray, tensors: list[int], max_payload: int = 65535):
    rows = []
    with DeviceClient.open(url, max_payload=max_payload) as dev:
        assert dev.hello().reads_tensors
        dev.preserve_tensors()
        assert dev.upload(model).loaded
        for i in range(len(q)):
            dev.invoke([q[i: i + 1].reshape(dev.inputs[0].dims)])
            rows.append([dev.read_tensor(t) for t in tensors])
        dev.reset()
    return rows


@pytest.mark.parametrize("name", ["sine_int8", "conv_int8"])
def test_every_op_output_equals_the_host_tflm(twin, request, name):
    from tinyfarm.litert_reference import quantize_input

    model = request.getfixturevalue(name)
    detail = _litert(model, preserve=False).get_input_details()[0]
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (3,) + tuple(int(s) for s in detail["shape"][1:])).astype(np.float32)
    lit = run_litert(model, x)
    host = run_tflm(model, x, lit)  # the host TFLM, preserve-all-tensors, in its own child process
    assert len(lit.ops) > 0
    q = quantize_input(x, detail)
    # a 256-byte payload: tensors over ~250 bytes arrive in several pipelined READ_TENSOR chunks
    rows = _device_layers(twin.url, model, q, [op.tensor for op in lit.ops], max_payload=256)
    for j, op in enumerate(lit.ops):
        got = np.stack([r[j].reshape(op.shape) for r in rows])
        assert got.dtype == host.values[j].dtype, op
        np.testing.assert_array_equal(got, host.values[j].reshape(got.shape), err_msg=f"op {op.index} {op.name}")


def test_read_tensor_errors(twin, sine_int8):
    with DeviceClient.open(twin.url) as dev:
        dev.hello()
        dev.upload(sine_int8)  # without PRESERVE_TENSORS
        dev.invoke([np.zeros((1, 1), np.int8)])
        with pytest.raises(BadStateError, match="PRESERVE_TENSORS"):
            dev.read_tensor(0)
        dev.preserve_tensors()
        dev.upload(sine_int8)
        with pytest.raises(BadStateError, match="no INVOKE"):
            dev.read_tensor(0)
        dev.invoke([np.zeros((1, 1), np.int8)])
        with pytest.raises(BadArgumentError, match="tensor 99 of 10") as exc:
            dev.read_tensor(99)
        assert "\n" not in str(exc.value)  # one line
        head = dev.call(MsgType.READ_TENSOR, index=4, offset=0, length=0)  # length 0: type and size only
        assert head == {"dtype": 9, "bytes": 256, "data": b""}
        assert dev.read_tensor(4).shape == (256,)
        dev.reset()  # RESET forgets PRESERVE_TENSORS
        dev.upload(sine_int8)
        dev.invoke([np.zeros((1, 1), np.int8)])
        with pytest.raises(BadStateError):
            dev.read_tensor(0)


def test_a_preserving_load_that_does_not_fit_is_arena_too_small(sine_int8):
    """The wheel's preserve-all-tensors allocation ends its process instead of failing: the twin
    answers ARENA_TOO_SMALL, not a fault, and a normal load works right after."""
    from device_harness.protocol.device_errors import ArenaTooSmallError

    # on the host TFLM, sine_int8 loads in 2,192 B; preserving every tensor first asks for 8,216 B of
    # tail memory, and the process dies (SIGSEGV) when that is not there
    small = get_board("stm32f4-discovery").model_copy(update={"arena_bytes": 4096})
    with TwinServer(small, tcp=True) as server, DeviceClient.open(server.url) as dev:
        dev.hello()
        assert dev.upload(sine_int8).loaded
        dev.preserve_tensors()
        with pytest.raises(ArenaTooSmallError, match="every tensor preserved") as exc:
            dev.upload(sine_int8)
        assert "reset" not in str(exc.value) and "\n" not in str(exc.value)
        dev.preserve_tensors(False)
        assert dev.upload(sine_int8).loaded


def test_a_device_without_the_capability(plain_twin):
    with DeviceClient.open(plain_twin.url) as dev:
        info = dev.hello()
        assert not info.capabilities & Capability.TENSORS and not info.reads_tensors
        with pytest.raises(TensorsUnsupported, match="no TENSORS capability"):
            dev.preserve_tensors()
        with pytest.raises(UnknownCommandError):  # the twin answers like older firmware
            dev.call(MsgType.PRESERVE_TENSORS, enable=1)


@pytest.fixture(scope="module")
def sine_path(suite_models):
    return str(suite_models / "sine_int8.tflite")


def test_diff_device_twin_lists_every_layer(sine_path):
    res = CliRunner().invoke(cli, ["diff", sine_path, "--device", "twin", "-n", "4", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["under_test"] == "device twin" and report["device"] == "twin"
    assert report["references"] == ["litert-reference", "host-tflm"]
    assert [row["type"] for row in report["layers"]] == ["FULLY_CONNECTED"] * 3
    for row in report["layers"]:
        assert row["metrics"]["host-tflm"]["max_steps"] == 0, row
    assert report["first_departure"] == {"litert-reference": None, "host-tflm": None}
    table = CliRunner().invoke(cli, ["diff", sine_path, "--device", "twin", "-n", "2"])
    assert table.exit_code == 0, table.output
    assert "device twin vs references" in table.output and table.output.count("FULLY_CONNE") == 3


def test_diff_device_without_the_capability_is_one_line(plain_twin, sine_path):
    res = CliRunner().invoke(cli, ["diff", sine_path, "--device", plain_twin.url, "-n", "1"])
    assert res.exit_code != 0
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "no TENSORS capability" in lines[0], res.output
