"""Farm names and labels in every --device (device_harness.device_registry' resolver hook)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from device_harness.device_registry import resolve_device
from device_harness.farm.device_names import FarmBackend
from device_harness.farm.inventory import load_farm
from device_harness.farm.locks import DeviceBusy, DeviceLock, lock_dir
from tinyfarm.errors import DeviceError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "farm.example.yaml"


def test_names_labels_and_unknown(monkeypatch):
    monkeypatch.delenv("TINYFARM_FARM", raising=False)
    backend = resolve_device("twin-b", farm=str(EXAMPLE))
    assert isinstance(backend, FarmBackend) and backend.spec.name == "twin-b"
    by_label = resolve_device("big-arena", farm=str(EXAMPLE))
    assert [d.name for d in by_label.candidates] == ["twin-c"]
    with pytest.raises(DeviceError, match="unknown device 'twin-z'.*twin-a, twin-b, twin-c"):
        resolve_device("twin-z", farm=str(EXAMPLE))
    # with an explicit farm its labels win ("twin" is one); other built-ins still resolve
    assert isinstance(resolve_device("twin", farm=str(EXAMPLE)), FarmBackend)
    assert not isinstance(resolve_device("twin:host", farm=str(EXAMPLE)), FarmBackend)
    monkeypatch.setenv("TINYFARM_FARM", str(EXAMPLE))
    assert isinstance(resolve_device("twin-a"), FarmBackend)


def test_farm_backend_holds_the_lock_and_busy_is_one_line(tmp_path):
    farm = load_farm(EXAMPLE)
    backend = resolve_device("twin-a", farm=str(EXAMPLE))
    backend._take_lock()  # what start() does first; no twin needed to test the lock
    try:
        probe = DeviceLock(farm.lock_key(farm.device("twin-a")), "twin-a", lock_dir())
        assert probe.probe() is not None
        other = resolve_device("twin-a", farm=str(EXAMPLE))
        with pytest.raises(DeviceBusy, match=r"device 'twin-a' is in use by pid \d+"):
            other._take_lock()
        # farm status names the holder without touching the device
        from click.testing import CliRunner
        from device_harness.farm.commands import farm as farm_cli
        res = CliRunner().invoke(farm_cli, ["status", "--farm", str(EXAMPLE), "--no-hello",
                                            "--json"])
        rows = {r["name"]: r for r in __import__("json").loads(res.output)}
        assert rows["twin-a"]["state"] == "locked"
        assert rows["twin-a"]["holder"]["pid"] == os.getpid()
        assert rows["twin-b"]["state"] == rows["twin-c"]["state"] == "free"
        # a label with a free device takes that one instead
        ci = resolve_device("ci", farm=str(EXAMPLE))
        ci._take_lock()
        assert ci.spec.name == "twin-b"
        ci.stop()
        # through the CLI: one line, non-zero exit
        res = subprocess.run([sys.executable, "-m", "tinyfarm.cli", "info", "--device", "twin-a"],
                             capture_output=True, text=True, cwd=tmp_path, timeout=60,
                             env=dict(os.environ, TINYFARM_FARM=str(EXAMPLE)))
        assert res.returncode != 0
        assert res.stderr.strip().splitlines() == [res.stderr.strip()]
        assert res.stderr.startswith("error: device 'twin-a' is in use by pid")
    finally:
        backend.stop()
    assert probe.probe() is None
