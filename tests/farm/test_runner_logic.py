"""Runner logic with scripted devices: retries, timeouts, lost devices, busy devices, the store."""

from __future__ import annotations

import threading
from types import SimpleNamespace
import time
from pathlib import Path


from device_harness.farm.inventory import parse_farm
from device_harness.farm.locks import DeviceLock, lock_dir
from device_harness.farm.scheduler import FarmRunner, ModelRef, RunOptions
from device_harness.farm.store import ResultsStore
from tinyfarm.errors import DeviceError, ModelError

FARM = """
devices:
  - {name: d0, backend: twin}
  - {name: d1, backend: twin}
"""


class ScriptedDevice:
    """Behaves as told per (device, model, attempt): ok, oserror, model_error, hang, fault."""

    script: dict = {}
    log: list = []

    def __init__(self, farm, spec):
        if self.script.get((spec.name, "factory")) == "fail":
            raise DeviceError("cannot open /dev/ttyACM9: no such device")
        if self.script.get((spec.name, "factory")) == "bug":
            raise ZeroDivisionError("a bug")
        self.spec, self.info = spec, SimpleNamespace(as_dict=lambda: {"board": "scripted"})
        self.attempts: dict[str, int] = {}
        self.aborted = threading.Event()

    def open(self):
        action = self.script.get((self.spec.name, "open"))
        if action == "fail":
            raise DeviceError("cannot open")

    def close(self):
        pass

    def restart(self):
        ScriptedDevice.log.append((self.spec.name, "restart"))
        if self.script.get((self.spec.name, "restart")) == "fail":
            raise DeviceError("restart failed: board gone")
        self.aborted.clear()

    def abort(self):
        self.aborted.set()

    def measure(self, model, options):
        n = self.attempts[model.name] = self.attempts.get(model.name, 0) + 1
        action = self.script.get((self.spec.name, model.name, n), "ok")
        if action == "oserror":
            raise OSError(5, "Input/output error")
        if action == "model_error":
            raise ModelError("model needs 900000 bytes of arena, board has 65536")
        if action == "hang":
            self.aborted.wait(10)
            raise OSError("port closed")
        time.sleep(0.01)
        return {"latency_us_median": 100.0 + n, "upload_s": 0.01}


def models(tmp_path: Path, n: int) -> list[ModelRef]:
    refs = []
    for i in range(n):
        p = tmp_path / f"m{i}.tflite"
        p.write_bytes(b"\0\0\0\0TFL3" + bytes([i]) * 10)
        refs.append(ModelRef(p, f"{i:064x}", f"m{i}", p.stat().st_size))
    return refs


def run(tmp_path, script, n_models=3, **opts):
    ScriptedDevice.script, ScriptedDevice.log = script, []
    farm = parse_farm(FARM, tmp_path / "farm.yaml")
    store = ResultsStore(tmp_path / "r.sqlite")
    options = RunOptions(**{"retries": 2, "job_timeout_s": 5, **opts})
    summary = FarmRunner(farm, farm.devices, models(tmp_path, n_models), store, options,
                         ScriptedDevice).run()
    return summary, store


def test_retry_then_success_and_model_fault_not_retried(tmp_path):
    summary, store = run(tmp_path, {("d0", "m1", 1): "oserror", ("d1", "m2", 1): "model_error"})
    by = {(r.device, r.model): r for r in summary.results}
    assert by["d0", "m1"].status == "ok" and by["d0", "m1"].attempts == 2
    assert by["d1", "m2"].status == "failed" and by["d1", "m2"].attempts == 1
    assert "arena" in by["d1", "m2"].reason
    assert ("d0", "restart") in ScriptedDevice.log
    rows = store.measurements(summary.run_id)
    assert len(rows) == 6 and sum(r["status"] == "ok" for r in rows) == 5
    assert store.run(summary.run_id)["status"] == "finished"


def test_watchdog_timeout_is_retried_then_failed_with_reason(tmp_path):
    script = {("d0", "m0", n): "hang" for n in (1, 2)}
    summary, store = run(tmp_path, script, n_models=2, job_timeout_s=0.3, retries=1)
    by = {(r.device, r.model): r for r in summary.results}
    assert by["d0", "m0"].status == "failed"
    assert "timed out after 0.3 s" in by["d0", "m0"].reason and by["d0", "m0"].attempts == 2
    assert by["d0", "m1"].status == "ok" and by["d1", "m0"].status == "ok"


def test_lost_device_fails_its_remaining_jobs_others_finish(tmp_path):
    script = {("d0", "m0", n): "oserror" for n in (1, 2, 3)}
    script[("d0", "restart")] = "fail"
    summary, store = run(tmp_path, script, n_models=3)
    d0 = [r for r in summary.results if r.device == "d0"]
    d1 = [r for r in summary.results if r.device == "d1"]
    assert all(r.status == "failed" for r in d0) and len(d0) == 3
    assert any("device lost" in r.reason for r in d0)
    assert all(r.status == "ok" for r in d1) and len(d1) == 3
    assert len(store.measurements(summary.run_id)) == 6


def test_device_that_never_opens(tmp_path):
    summary, _ = run(tmp_path, {("d1", "open"): "fail"}, n_models=2)
    d1 = [r for r in summary.results if r.device == "d1"]
    assert [r.reason for r in d1] == ["device unavailable: cannot open"] * 2


def test_busy_device_skip_and_wait(tmp_path):
    farm = parse_farm(FARM, tmp_path / "farm.yaml")
    held = DeviceLock(farm.lock_key(farm.device("d0")), "d0", lock_dir(), "someone else")
    held.acquire()
    try:
        summary, _ = run(tmp_path, {}, n_models=1, busy="skip")
        by = {r.device: r for r in summary.results}
        assert by["d0"].status == "failed" and "in use by pid" in by["d0"].reason
        assert by["d1"].status == "ok"
        summary, _ = run(tmp_path, {}, n_models=1, busy="wait", lock_timeout_s=0.2)
        assert "in use by" in {r.device: r for r in summary.results}["d0"].reason
        threading.Timer(0.3, held.release).start()
        summary, store = run(tmp_path, {}, n_models=1, busy="wait", lock_timeout_s=5)
        assert all(r.status == "ok" for r in summary.results)
    finally:
        held.release()
    sessions = store.sessions(summary.run_id)
    assert {s["device"] for s in sessions} == {"d0", "d1"}
    assert all(s["released_at"] >= s["acquired_at"] for s in sessions)


def test_backend_that_cannot_be_built_and_a_bug(tmp_path, capsys):
    summary, _ = run(tmp_path, {("d0", "factory"): "fail"}, n_models=2)
    d0 = [r.reason for r in summary.results if r.device == "d0"]
    assert d0 == ["device unavailable: cannot open /dev/ttyACM9: no such device"] * 2
    assert all(r.status == "ok" for r in summary.results if r.device == "d1")
    summary, _ = run(tmp_path, {("d1", "factory"): "bug"}, n_models=1)
    d1 = [r for r in summary.results if r.device == "d1"][0]
    assert d1.reason.startswith("device unavailable: internal error (a tinyfarm bug")
    assert "ZeroDivisionError: a bug" in capsys.readouterr().err  # the traceback is shown
