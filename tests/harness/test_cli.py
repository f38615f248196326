"""The device commands end to end: JSON output, files written, and one clear line for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from device_harness.backends.twin import TwinBackend
from device_harness.boards import get_board
from device_harness.twin.server import TwinServer
from tinyfarm.cli import cli


@pytest.fixture(scope="module")
def twin_url():
    with TwinBackend() as backend:  # one twin subprocess for the module; commands reach it by URL
        yield backend.url


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def one_error_line(result) -> str:
    assert result.exit_code != 0
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_info_and_deploy_json(twin_url, suite_models):
    info = json.loads(run("info", "--device", twin_url, "--json").stdout)
    assert info["board"] == "twin:stm32f4-discovery" and info["tick_source"] == "estimate"
    conv = suite_models / "conv_int8.tflite"
    out = json.loads(run("deploy", str(conv), "--device", twin_url, "--json").stdout)
    # 9,808 B: the host TFLM's allocation record for conv_int8 (TflmProcess.load(...).arena_used)
    assert out["verified"] and out["loaded"] and out["bytes"] == conv.stat().st_size and out["arena_used"] == 9808


def test_invoke_writes_outputs_and_bench_reports_stats(twin_url, suite_models, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.full((1, 1), 40, np.int8))
    res = run("invoke", str(suite_models / "sine_int8.tflite"), "--device", twin_url, "--input", str(x),
              "--output-dir", str(tmp_path / "out"), "--json")
    out = json.loads(res.stdout)
    y = np.load(tmp_path / "out" / "output_0.npy")
    assert y.dtype == np.int8 and y.shape == (1, 1) and out["ticks"] > 0
    bench = json.loads(run("bench", str(suite_models / "sine_int8.tflite"), "--device", twin_url,
                           "--runs", "20", "--warmup", "2", "--json").stdout)
    assert bench["runs"] == 20 and bench["min_ticks"] <= bench["median_ticks"] <= bench["p90_ticks"] <= bench["max_ticks"]
    assert bench["median_us"] == pytest.approx(bench["median_ticks"] * 1e6 / bench["tick_hz"])
    assert bench["tick_source"] == "estimate" and bench["min_ticks"] == bench["max_ticks"]


def test_device_twin_starts_a_fresh_twin(suite_models):
    res = run("deploy", str(suite_models / "sine_int8.tflite"), "--device", "twin", "--board",
              "nano33-ble-sense", "--json")
    assert json.loads(res.stdout)["board"] == "twin:nano33-ble-sense"


def test_bad_inputs_give_one_line_and_a_non_zero_exit(twin_url, suite_models, tmp_path, unsupported_op_model):
    conv = suite_models / "conv_int8.tflite"
    not_tflite = tmp_path / "notes.tflite"
    not_tflite.write_text("not a model")
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(conv.read_bytes()[:9000])
    unsupported = tmp_path / "unsupported.tflite"
    unsupported.write_bytes(unsupported_op_model)
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((1, 10), np.int8))
    cases = {
        "TFL3": ["deploy", str(not_tflite), "--device", twin_url],
        "truncated": ["deploy", str(truncated), "--device", twin_url],
        "no such file": ["deploy", str(tmp_path / "missing.tflite"), "--device", twin_url],
        # 4096, not 2048: on a 2048-B arena the host TFLM wheel aborts while loading conv_int8 (a
        # DEVICE_FAULT: "All temp buffers must be freed before calling ResetTempAllocations()")
        "ARENA_TOO_SMALL": ["deploy", str(conv), "--device", "twin", "--arena-bytes", "4096"],
        "RANDOM_UNIFORM": ["deploy", str(unsupported), "--device", twin_url],
        "cannot open": ["info", "--device", "socket://127.0.0.1:9"],
        "expects (1, 1960)": ["invoke", str(conv), "--device", twin_url, "--input", str(wrong),
                              "--output-dir", str(tmp_path / "o")],
        "unknown device": ["info", "--device", "no-such-device"],
    }
    for expected, args in cases.items():
        line = one_error_line(run(*args))
        assert expected in line, (expected, line)
    # a model larger than the board's model buffer: conv_int8 (19 KB) on a 16 KB buffer
    assert conv.stat().st_size > 16384
    small = get_board().model_copy(update={"max_model_bytes": 16384})
    with TwinServer(small) as server:
        line = one_error_line(run("deploy", str(conv), "--device", server.url))
    assert "MODEL_TOO_LARGE" in line and "16,384" in line


def test_tinyfarm_twin_serves_until_interrupted(sine_int8):
    import signal
    import subprocess
    import sys

    from device_harness.client import DeviceClient

    # A suite started as a background job of a script inherits SIGINT ignored, and so would the
    # twin (Python keeps an ignored SIGINT ignored): give it Ctrl-C's default disposition.
    proc = subprocess.Popen([sys.executable, "-m", "tinyfarm.cli", "twin", "--tcp", "--board", "mps2-an386", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = json.loads(proc.stdout.readline())
        assert line["url"].startswith("socket://127.0.0.1:") and line["board"] == "mps2-an386"
        with DeviceClient.open(line["url"]) as dev:
            assert dev.hello().board == "twin:mps2-an386" and dev.upload(sine_int8).loaded
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        proc.stdout.close()
