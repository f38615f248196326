"""Every number an option takes is checked where it is read: one ``error:`` line (#15, case 4).

Before: ``--arena-bytes -5`` was an INTERNAL device error, ``--arena-bytes 0`` segfaulted the twin's
TFLM child, ``--baud 0`` was silently ignored, ``twin --port 70000`` was a traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from device_harness.transports import open_port
from device_harness.transports.paced import LinePacer
from safety_helpers import assert_one_error_line, run_cli
from tinyfarm.errors import ConfigError, DeviceError

REPO = Path(__file__).resolve().parents[2]
MODEL = str(REPO / "tests" / "harness" / "data" / "lstm_int8.tflite")
FARM = str(REPO / "farm.example.yaml")

CASES = {
    "arena-negative": (["deploy", MODEL, "--arena-bytes", "-5"], "--arena-bytes"),
    "arena-zero": (["deploy", MODEL, "--arena-bytes", "0"], "--arena-bytes"),
    "arena-too-small": (["bench", MODEL, "--arena-bytes", "16"], "--arena-bytes"),
    "arena-huge": (["info", "--arena-bytes", str(1 << 40)], "--arena-bytes"),
    "baud-zero": (["deploy", MODEL, "--baud", "0"], "--baud"),
    "baud-negative": (["info", "--baud", "-9600"], "--baud"),
    "runs-zero": (["bench", MODEL, "--runs", "0"], "--runs"),
    "warmup-negative": (["bench", MODEL, "--warmup", "-1"], "--warmup"),
    "limit-zero": (["evaluate", MODEL, "--dataset", "digits", "--limit", "0"], "--limit"),
    "twin-port-high": (["twin", "--tcp", "--port", "70000"], "--port"),
    "twin-port-negative": (["twin", "--tcp", "--port", "-1"], "--port"),
    "twin-baud-zero": (["twin", "--baud", "0"], "--baud"),
    "twin-arena-zero": (["twin", "--arena-bytes", "0"], "--arena-bytes"),
    "twin-idle-nan": (["twin", "--tcp", "--idle-timeout", "nan"], "--idle-timeout"),
    "farm-status-timeout-zero": (["farm", "status", "--farm", FARM, "--timeout", "0"], "--timeout"),
    "farm-status-timeout-nan": (["farm", "status", "--farm", FARM, "--timeout", "nan"], "--timeout"),
    "farm-discover-timeout-negative": (["farm", "discover", "--timeout", "-1"], "--timeout"),
    "farm-run-job-timeout-inf": (["farm", "run", "--farm", FARM, "--models", MODEL,
                                  "--job-timeout", "inf"], "--job-timeout"),
    "farm-run-lock-timeout-nan": (["farm", "run", "--farm", FARM, "--models", MODEL,
                                   "--lock-timeout", "nan"], "--lock-timeout"),
    "farm-run-runs-zero": (["farm", "run", "--farm", FARM, "--models", MODEL, "--runs", "0"], "--runs"),
    "farm-report-tolerance-negative": (["farm", "report", "--latency-tol", "-0.1"], "--latency-tol"),
    "run-seed-negative": (["run", "--out", "never-created", "--seed", "-1"], "--seed"),
    "device-socket-without-port": (["info", "--device", "socket://127.0.0.1"], "HOST:PORT"),
    "device-socket-port-high": (["info", "--device", "socket://127.0.0.1:99999"], "1..65535"),
    "device-unknown-scheme": (["info", "--device", "nosuch://x"], "unknown URL scheme"),
    "device-paced-baud-zero": (["info", "--device", "paced://loop://#baud=0"], "baud=0"),
    "device-fault-rate-high": (["info", "--device", "fault://loop://#corrupt=2"], "corrupt=2"),
}


@pytest.mark.parametrize("args,fragment", CASES.values(), ids=CASES.keys())
def test_bad_number_is_one_error_line(args, fragment):
    result, lines = run_cli(args)
    assert_one_error_line(result, lines, fragment)
    assert result.exit_code == 2


def test_usage_errors_are_one_line_too():
    result, lines = run_cli(["bench"])
    assert_one_error_line(result, lines, "Missing argument", "bench --help")
    result, lines = run_cli(["no-such-command"])
    assert_one_error_line(result, lines, "No such command")


def test_line_pacer_refuses_a_rate_it_cannot_keep():
    for baud in (0, -1):
        with pytest.raises(ValueError, match="baud"):
            LinePacer(baud)


@pytest.mark.parametrize("url", ["paced://loop://#baud=0", "fault://loop://#drop=-1",
                                 "fault://loop://#dup=nan"])
def test_wrapper_options_out_of_range_are_a_device_error(url):
    with pytest.raises(DeviceError, match="cannot open"):
        open_port(url)


def test_resolve_device_checks_a_url_before_connecting():
    from device_harness.device_registry import resolve_device

    with pytest.raises(ConfigError, match="HOST:PORT"):
        resolve_device("socket://localhost")
    assert resolve_device("socket://127.0.0.1:5555").name == "socket://127.0.0.1:5555"
