"""Farm file validation: every mistake is one ConfigError line naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_harness.farm.inventory import load_farm, parse_farm
from tinyfarm.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_example_farm_has_three_twins():
    farm = load_farm(REPO / "farm.example.yaml")
    assert [d.backend for d in farm.devices] == ["twin", "twin", "twin"]
    assert len({farm.lock_key(d) for d in farm.devices}) == 3


@pytest.mark.parametrize("text, fragment", [
    ("devices: []", "devices"),
    ("devices:\n  - {name: a, backend: toaster}", "unknown backend 'toaster'"),
    ("devices:\n  - {name: a, backend: twin, colour: red}", "devices[0] (a).colour: unknown key"),
    ("devices:\n  - {name: a, backend: board}", "needs connection.url"),
    ("devices:\n  - {name: a, backend: twin}\n  - {name: a, backend: twin}", "appears twice"),
    ("devices:\n  - {name: a, backend: qemu, launch: {pace_baud: 9600}}", "twin launch settings"),
    ("devices:\n  - {name: 'bad name', backend: twin}", "devices[0] (bad name).name"),
    ("devices: [", "not valid YAML"),
    ("devices:\n  - {name: a, backend: twin, board: pdp-11}", "unknown board profile 'pdp-11'"),
    ("- just a list", "must be a mapping"),
])
def test_bad_farm_files_are_one_line(text, fragment, tmp_path):
    path = tmp_path / "farm.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_farm(path)
    message = str(err.value)
    assert fragment in message and str(path) in message
    assert "\n" not in message


def test_missing_file_and_unknown_device(tmp_path):
    with pytest.raises(ConfigError, match="farm file not found"):
        load_farm(tmp_path / "nope.yaml")
    farm = parse_farm("devices:\n  - {name: a, backend: twin, labels: [x]}", tmp_path / "f.yaml")
    with pytest.raises(ConfigError, match=r"unknown device 'b' .*known: a"):
        farm.device("b")
    with pytest.raises(ConfigError, match="no device .* has all labels y"):
        farm.select(labels=["y"])


def test_selection_and_lock_identity(tmp_path):
    (tmp_path / "ttyFAKE").write_text("")
    (tmp_path / "by-id").symlink_to(tmp_path / "ttyFAKE")
    farm = parse_farm(f"""
devices:
  - {{name: a, backend: twin, labels: [ci, m4]}}
  - {{name: b, backend: twin, labels: [ci]}}
  - {{name: c, backend: board, connection: {{url: {tmp_path}/by-id}}, labels: [hil]}}
  - {{name: d, backend: board, connection: {{url: {tmp_path}/ttyFAKE}}}}
""", tmp_path / "f.yaml")
    assert [d.name for d in farm.select(labels=["ci"])] == ["a", "b"]
    assert [d.name for d in farm.select(labels=["ci", "m4"])] == ["a"]
    assert [d.name for d in farm.match("ci")] == ["a", "b"]
    assert [d.name for d in farm.match("c")] == ["c"]
    # one port under two names is one lock identity
    assert farm.lock_key(farm.device("c")) == farm.lock_key(farm.device("d"))
    assert farm.lock_key(farm.device("a")) != farm.lock_key(farm.device("b"))
