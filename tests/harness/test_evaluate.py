"""On-device evaluation: quantize with the device-reported input parameters, compare with LiteRT."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from device_harness.boards import get_board
from device_harness.client import DeviceClient
from device_harness.measure import evaluate_on_device, latency_stats
from tinyfarm.litert_reference import ReferenceInterpreter, quantize
from device_harness.twin.server import TwinServer
from tinyfarm.cli import cli


@pytest.fixture(scope="module")
def conv_set(conv_int8, tmp_path_factory):
    """A data set conv_int8 can be scored on: random int8 spectrograms given as floats (exactly
    on the quantization grid), labelled with the LiteRT reference's argmax. Accuracy on the device is
    then the share of TFLM predictions that agree with the reference."""
    model = conv_int8
    ref = ReferenceInterpreter(model)
    scale, zp = ref.inputs[0]["quantization"]
    rng = np.random.default_rng(1)
    q = rng.integers(-128, 128, (60, 1960), dtype=np.int8)
    labels = np.array([int(np.argmax(ref([x.reshape(1, 1960)])[0])) for x in q])
    x = ((q.astype(np.float32) - zp) * scale).astype(np.float32)
    path = tmp_path_factory.mktemp("data") / "spectrograms.npz"
    np.savez(path, x_train=np.tile(x[:4], (10, 1)), y_train=np.repeat(np.arange(4), 10),
             x_test=x[20:], y_test=labels[20:])
    return model, x[20:], labels[20:], path


def test_quantize_round_trips_the_grid():
    q = np.arange(-128, 128, dtype=np.int8)
    x = (q.astype(np.float32) + 5) * 0.25
    np.testing.assert_array_equal(quantize(x, np.int8, 0.25, -5), q)
    assert quantize(np.array([1e9, -1e9]), np.int8, 0.1, 0).tolist() == [127, -128]


def test_latency_stats():
    s = latency_stats([10, 20, 30, 40, 1000], tick_hz=1_000_000)
    assert (s.median_ticks, s.min_ticks, s.max_ticks) == (30, 10, 1000) and s.us(30) == 30.0


def test_evaluate_on_device_matches_the_reference(conv_set):
    model, x, y, _ = conv_set
    with TwinServer(get_board()) as server, DeviceClient.open(server.url) as dev:
        dev.upload(model)
        seen = []
        result = evaluate_on_device(dev, model, x, y, dataset="spectrograms", progress=lambda d, t: seen.append(d))
    assert result.samples == 40 and seen[-1] == 40
    assert result.accuracy == 1.0 and result.identical_outputs == 40 and result.max_abs_diff == 0.0
    assert result.latency["runs"] == 40 and result.latency["median_us"] > 0


def test_evaluate_cli(conv_set, suite_models):
    _, _, _, path = conv_set
    res = CliRunner().invoke(cli, ["evaluate", str(suite_models / "conv_int8.tflite"),
                                   "--dataset", str(path), "--limit", "10", "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["samples"] == 10 and out["accuracy"] == 1.0 and out["identical_share"] == 1.0
