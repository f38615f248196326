"""A farm file is checked when it is loaded: each device's URL, numbers and firmware, in one line
naming the device and the field (#15, case 4) — not a cryptic failure when the run reaches it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from device_harness.farm.inventory import load_farm, parse_farm
from safety_helpers import assert_one_error_line, run_cli
from tinyfarm.errors import ConfigError


def _farm(device: str) -> str:
    return "devices:\n" + textwrap.indent(textwrap.dedent(device).strip(), "  ") + "\n"


BAD = {
    "socket-without-port": ("- {name: b1, backend: board, connection: {url: 'socket://127.0.0.1'}}",
                            "devices[0] (b1).connection.url", "HOST:PORT"),
    "socket-port-out-of-range": ("- {name: b2, backend: board, connection: {url: 'socket://h:70000'}}",
                                 "devices[0] (b2).connection.url", "1..65535"),
    "unknown-scheme": ("- {name: b3, backend: twin, connection: {url: 'tpc://127.0.0.1:5555'}}",
                       "devices[0] (b3).connection.url", "unknown URL scheme 'tpc'"),
    "one-slash": ("- {name: b4, backend: board, connection: {url: 'socket:/127.0.0.1:5555'}}",
                  "devices[0] (b4).connection.url", "malformed URL"),
    "paced-baud-zero": ("- {name: b5, backend: board, connection: {url: 'paced://socket://h:1#baud=0'}}",
                        "devices[0] (b5).connection.url", "baud=0"),
    "fault-unknown-option": ("- {name: b6, backend: board, connection: {url: 'fault://loop://#oops=1'}}",
                             "devices[0] (b6).connection.url", "oops"),
    "baud-zero": ("- {name: b7, backend: board, connection: {url: /dev/ttyACM0, baud: 0}}",
                  "devices[0] (b7).connection.baud", "greater than or equal to 50"),
    "arena-zero": ("- {name: t1, backend: twin, launch: {arena_bytes: 0}}",
                   "devices[0] (t1).launch.arena_bytes", "1024"),
    "pace-baud-negative": ("- {name: t2, backend: twin, launch: {pace_baud: -1}}",
                           "devices[0] (t2).launch.pace_baud", "50"),
    "unknown-backend": ("- {name: x1, backend: qmeu}", "devices[0] (x1).backend", "unknown backend"),
    "missing-elf": ("- {name: q1, backend: qemu, launch: {elf: nowhere/fw.elf}}",
                    "devices[0] (q1).launch.elf", "no such firmware file"),
}


@pytest.mark.parametrize("device,where,why", BAD.values(), ids=BAD.keys())
def test_bad_device_is_refused_at_load(device, where, why, tmp_path):
    path = tmp_path / "farm.yaml"
    path.write_text(_farm(device))
    with pytest.raises(ConfigError) as err:
        load_farm(path)
    message = str(err.value)
    assert where in message and why in message, message
    assert "\n" not in message


def test_bad_url_is_one_line_from_the_cli(tmp_path):
    path = tmp_path / "farm.yaml"
    path.write_text(_farm(BAD["socket-without-port"][0]))
    result, lines = run_cli(["farm", "list", "--farm", str(path)])
    assert_one_error_line(result, lines, "devices[0] (b1).connection.url")


def test_job_timeout_nan_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="job_timeout_s"):
        parse_farm("defaults: {job_timeout_s: .nan}\n" + _farm("- {name: t, backend: twin}"),
                   tmp_path / "f.yaml")


def test_good_urls_and_paths_load(tmp_path):
    elf = tmp_path / "fw.elf"
    elf.write_bytes(b"\x7fELF")
    text = _farm("""
        - {name: a, backend: board, connection: {url: /dev/ttyACM7}}
        - {name: b, backend: board, connection: {url: 'socket://127.0.0.1:5555', baud: 115200}}
        - {name: c, backend: board, connection: {url: 'rfc2217://lab-pi:4000'}}
        - {name: d, backend: board, connection: {url: 'fault://socket://127.0.0.1:1#corrupt=0.01'}}
        - {name: e, backend: qemu, launch: {elf: fw.elf}}
        - {name: f, backend: twin, launch: {arena_bytes: 4096, pace_baud: 9600}}
    """)
    farm = parse_farm(text, tmp_path / "farm.yaml")
    assert [d.name for d in farm.devices] == ["a", "b", "c", "d", "e", "f"]
    assert Path(farm.resolve_path("fw.elf")) == elf


@pytest.mark.parametrize("run", ["9" * 30, "-5", "latest"])
def test_report_of_a_run_that_cannot_exist_is_one_line(run, tmp_path):
    from device_harness.farm.store import ResultsStore

    db = tmp_path / "results.sqlite"
    ResultsStore(db).close()
    result, lines = run_cli(["farm", "report", "--db", str(db), "--run", run, "--out",
                             str(tmp_path / "r.html")])
    assert_one_error_line(result, lines, "run")
