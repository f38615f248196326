"""The farm across lab hosts on labgrid: a real coordinator, two exporters with ser2net, twins
behind them — all on 127.0.0.1 (:class:`device_harness.labgrid.loopback_lab.LoopbackLab`)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from device_harness.farm.connect import FarmDevice
from device_harness.farm.inventory import load_farm, parse_farm
from device_harness.farm.model_refs import collect_models
from device_harness.farm.scheduler import FarmRunner, RunOptions
from device_harness.farm.store import ResultsStore
from device_harness.farm.synthetic import write_standard_models
from tinyfarm.errors import ConfigError


def _missing() -> str | None:
    try:
        import labgrid  # noqa: F401
    except ImportError:
        return "labgrid is not installed (pip install 'tinyfarm[labgrid]')"
    if not (shutil.which("ser2net") or os.path.exists("/usr/sbin/ser2net")):
        return "ser2net is not installed (apt-get install ser2net)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")

TINYFARM = [sys.executable, "-m", "tinyfarm.cli"]
HOSTS = {"host-a": ["twin-1", "twin-2"], "host-b": ["twin-3"]}


def _start_lab(tmp: Path, pace_baud: int | None = None):
    from device_harness.labgrid.lab_setup import setup_places
    from device_harness.labgrid.loopback_lab import LoopbackLab

    lab = LoopbackLab(HOSTS, pace_baud=pace_baud).start()
    lab.farm_path = lab.farm_file(tmp / "lab.yaml")
    setup_places(load_farm(lab.farm_path))
    return lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """One lab for the tests that leave it as they found it."""
    lab = _start_lab(tmp_path_factory.mktemp("lab"))
    yield lab
    lab.stop()


#: three of the suite's own models (tests/data): with two synthetic ones, the five a farm run measures
THREE_MODELS = ("sine_int8", "sine_float", "conv_int8")


@pytest.fixture(scope="module")
def five_models(tmp_path_factory, suite_models):
    synth = write_standard_models(tmp_path_factory.mktemp("synth"))
    models, notes = collect_models([*(str(suite_models / f"{n}.tflite") for n in THREE_MODELS), *map(str, synth)])
    assert len(models) == 5 and not notes
    return models


def _run(farm_path: Path, models, db: Path, on_event=None, **options) -> tuple:
    farm = load_farm(farm_path)
    opts = dict(runs=3, warmup=1, retries=1, job_timeout_s=60)
    opts.update(options)
    with ResultsStore(db) as store:
        summary = FarmRunner(farm, farm.devices, models, store, RunOptions(**opts), FarmDevice,
                             on_event=on_event, command="test_labgrid").run()
        return summary, store.measurements(summary.run_id), store.sessions()


def _places(lab):
    from device_harness.labgrid.coordinator import coordinator
    places, _ = coordinator(lab.address).snapshot()
    return places


def test_five_models_three_twins_two_exporters_one_coordinator(lab, five_models, tmp_path,
                                                               private_lock_dir):
    summary, rows, sessions = _run(lab.farm_path, five_models, tmp_path / "r.sqlite")
    assert not summary.failed, [(r.device, r.model, r.reason) for r in summary.failed]
    assert len(rows) == 15 and {r["status"] for r in rows} == {"ok"}
    assert {r["device"] for r in rows} == {"twin-1", "twin-2", "twin-3"}
    assert all(r["latency_us_median"] and r["arena_used"] for r in rows)
    # held through the coordinator, then given back: no place acquired, no holder note left
    assert len(sessions) == 3 and all(s["released_at"] >= s["acquired_at"] for s in sessions)
    assert all(s["identity"].startswith(f"labgrid:{lab.address}:") for s in sessions)
    assert all(p.acquired is None and p.reservation is None for p in _places(lab).values())
    assert not list(private_lock_dir.glob("labgrid-*"))


def test_nothing_listens_beyond_loopback(lab):
    from device_harness.labgrid.loopback_lab import listening_sockets
    sockets = listening_sockets(lab.pids())
    assert len(sockets) >= 4  # the coordinator and one ser2net port per twin
    outside = [(pid, a) for pid, a in sockets
               if not (a.startswith("127.0.0.1:") or a.startswith("::ffff:127.0.0.1:"))]
    assert not outside, outside


def test_two_concurrent_runs_never_hold_one_place_at_once(lab, five_models, tmp_path,
                                                          private_lock_dir):
    db = tmp_path / "r.sqlite"
    models = ",".join(str(m.path) for m in five_models[:2])
    args = ["farm", "run", "--farm", str(lab.farm_path), "--models", models, "--db", str(db),
            "--runs", "3", "--busy", "wait"]
    env = dict(os.environ, TINYFARM_LOCK_DIR=str(private_lock_dir))
    procs = [subprocess.Popen(TINYFARM + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env, start_new_session=True) for _ in range(2)]
    try:
        outs = [p.communicate(timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err.decode()[-2000:]
    store = ResultsStore(db)
    runs = {r["id"] for r in store.runs()}
    by_place: dict[str, list] = {}
    for s in store.sessions():
        by_place.setdefault(s["identity"], []).append(s)
    assert len(runs) == 2 and len(by_place) == 3
    for identity, held in by_place.items():
        held.sort(key=lambda s: s["acquired_at"])
        assert {s["run_id"] for s in held} == runs
        first, second = held
        assert first["released_at"] <= second["acquired_at"], (identity, held)
    assert [m["status"] for m in store.measurements()] == ["ok"] * 12


def test_device_labgrid_place_in_a_device_command(lab, suite_models, tmp_path):
    env = dict(os.environ, LG_COORDINATOR=lab.address, TINYFARM_LOCK_DIR=str(tmp_path))
    res = subprocess.run(TINYFARM + ["bench", str(suite_models / "sine_int8.tflite"),
                                     "--device", "labgrid:twin-2", "--runs", "3", "--json"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    figures = json.loads(res.stdout.strip().splitlines()[-1])
    assert figures["runs"] == 3 and figures["median_us"] > 0
    assert figures["device"] == "labgrid:twin-2"
    assert _places(lab)["twin-2"].acquired is None  # released on the way out
    res = subprocess.run(TINYFARM + ["bench", str(suite_models / "sine_int8.tflite"),
                                     "--device", "labgrid:no-such-place"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "no-such-place" in res.stderr


def test_a_dead_holders_place_is_released_a_live_one_is_shown(lab, tmp_path, private_lock_dir):
    from device_harness.labgrid.place_lock import PlaceLock
    hold = ("import sys, time; from pathlib import Path\n"
            "from device_harness.labgrid.place_lock import PlaceLock\n"
            f"lock = PlaceLock({lab.address!r}, {{'name': 'twin-1'}}, 'twin-1', "
            f"Path({str(private_lock_dir)!r}), 'holder-for-the-test')\n"
            "lock.acquire(timeout=10); print('held', flush=True); time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        env = dict(os.environ, TINYFARM_LOCK_DIR=str(private_lock_dir))
        res = subprocess.run(TINYFARM + ["farm", "status", "--farm", str(lab.farm_path),
                                         "--no-hello", "--json"],
                             capture_output=True, text=True, env=env, timeout=60)
        rows = {r["name"]: r for r in json.loads(res.stdout)}
        assert rows["twin-1"]["state"] == "locked"
        assert rows["twin-1"]["holder"]["pid"] == holder.pid
        assert rows["twin-1"]["holder"]["command"] == "holder-for-the-test"
        assert rows["twin-2"]["state"] == "free"
        lock = PlaceLock(lab.address, {"name": "twin-1"}, "twin-1", private_lock_dir)
        with pytest.raises(Exception, match=rf"in use: twin-1 by pid {holder.pid}"):
            lock.acquire(timeout=0)
        holder.kill()  # kill -9: labgrid has no lease, the place stays acquired
        holder.wait(10)
        assert _places(lab)["twin-1"].acquired is not None
        lock.acquire(timeout=5)  # the dead holder's place is released, then taken
        assert _places(lab)["twin-1"].acquired is not None and lock.place == "twin-1"
        lock.release()
        assert _places(lab)["twin-1"].acquired is None
    finally:
        holder.kill()


def test_pytest_dut_on_a_labgrid_place_and_next_to_labgrids_plugin(lab, pytester,
                                                                    suite_models):
    pytester.makepyfile(test_dut=f"""
        import numpy as np
        def test_runs(dut):
            dut.load_model({str(suite_models / 'sine_int8.tflite')!r})
            assert len(dut.invoke([np.zeros((1, 1), np.int8)])) == 1
            assert dut.info.board.startswith("twin")
    """)
    env = {"LG_COORDINATOR": lab.address}
    for key, value in env.items():
        pytester._monkeypatch.setenv(key, value)
    result = pytester.runpytest_subprocess("--device", "labgrid:twin-3", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    # through the farm file: a label matching three places takes the first free one
    result = pytester.runpytest_subprocess("--farm", str(lab.farm_path), "--device", "lab",
                                           "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    # labgrid's own plugin: --lg-env with a RemotePlace, acquired the labgrid way
    pytester.makefile(".yaml", env=f"""
        targets:
          main:
            resources:
              RemotePlace:
                name: twin-3
        options:
          coordinator_address: {lab.address}
    """)
    client = [str(Path(sys.executable).parent / "labgrid-client"), "-x", lab.address, "-p",
              "twin-3"]
    subprocess.run(client + ["acquire"], check=True, capture_output=True, timeout=30)
    try:
        result = pytester.runpytest_subprocess("-p", "tinyfarm", "--lg-env", "env.yaml",
                                               "-p", "no:cacheprovider")
        result.assert_outcomes(passed=1)
    finally:
        subprocess.run(client + ["release"], check=True, capture_output=True, timeout=30)


def test_labgrid_setup_is_idempotent_and_farm_file_errors_are_one_line(lab, tmp_path):
    env = dict(os.environ)
    res = subprocess.run(TINYFARM + ["farm", "labgrid-setup", "--farm", str(lab.farm_path)],
                         capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0 and res.stdout.count("unchanged") == 3, res.stdout + res.stderr
    bad = [("{name: x, backend: labgrid}", "needs 'place'"),
           ("{name: x, backend: twin, place: {name: p}}", "only for labgrid"),
           ("{name: x, backend: labgrid, place: {match: [a/b/C]}}", "a name or tags"),
           ("{name: x, backend: labgrid, place: {name: p, match: [nonsense]}}", "exporter/group"),
           ("{name: x, backend: labgrid, place: {tags: {Board: F4}}}", "lower-case")]
    for device, message in bad:
        with pytest.raises(ConfigError, match=message):
            parse_farm(f"devices:\n  - {device}\n", tmp_path / "f.yaml")


def test_exporter_killed_mid_run(five_models, tmp_path, private_lock_dir):
    """kill -9 of host-b's exporter while twin-3 works (its ser2net keeps serving): twin-3's jobs
    fail with the reason, host-a's finish, nothing stored is lost; the place is then refused."""
    lab = _start_lab(tmp_path, pace_baud=460800)
    try:
        def on_event(device, event, details):
            if device == "twin-3" and event == "job_start" and details["model"] == five_models[1].name:
                lab.kill_exporter("host-b")

        summary, rows, _ = _run(lab.farm_path, five_models, tmp_path / "r.sqlite",
                                on_event=on_event)
        by = {(r["device"], r["model"]): r for r in rows}
        assert len(rows) == 15  # every job recorded
        for twin in ("twin-1", "twin-2"):
            assert all(by[(twin, m.name)]["status"] == "ok" for m in five_models)
        assert by[("twin-3", five_models[0].name)]["status"] == "ok"  # done before the kill
        in_flight = by[("twin-3", five_models[1].name)]  # may finish before the news arrives
        assert in_flight["status"] == "ok" or "exporter host-b is gone" in in_flight["reason"]
        lost = [by[("twin-3", m.name)] for m in five_models[2:]]
        assert all(r["status"] == "failed" for r in lost), [(r["model"], r["status"], r["reason"]) for r in lost]
        assert all("exporter host-b is gone" in r["reason"] for r in lost), \
            [r["reason"] for r in lost]
        assert lab.hosts["host-b"].ser2net.poll() is None  # the bypass was there, unused
        summary, rows, _ = _run(lab.farm_path, five_models[:1], tmp_path / "r.sqlite")
        reasons = {r["device"]: r["reason"] for r in rows}
        assert "no resources (is its exporter running?" in reasons["twin-3"]
        assert reasons["twin-1"] is None and reasons["twin-2"] is None
    finally:
        lab.stop()


def test_coordinator_killed_mid_run(five_models, tmp_path, private_lock_dir):
    lab = _start_lab(tmp_path, pace_baud=460800)
    try:
        def on_event(device, event, details):
            if device == "twin-1" and event == "job_start" and details["model"] == five_models[2].name:
                lab.kill_coordinator()

        started = time.monotonic()
        summary, rows, _ = _run(lab.farm_path, five_models, tmp_path / "r.sqlite",
                                on_event=on_event)
        assert time.monotonic() - started < 90  # an error, never a hang
        assert len(rows) == 15
        ok = [r for r in rows if r["status"] == "ok"]
        failed = [r for r in rows if r["status"] != "ok"]
        assert ok and failed
        assert all("lost the labgrid coordinator" in r["reason"] for r in failed), \
            [r["reason"] for r in failed]
        with ResultsStore(tmp_path / "r.sqlite") as store:  # finished results kept, run closed
            assert len([m for m in store.measurements() if m["status"] == "ok"]) == len(ok)
            assert store.runs()[-1]["status"] == "finished"
    finally:
        lab.stop()


def test_url_handlers_work_with_pyserial_labgrid(lab):
    """labgrid's pyserial-labgrid replaces pyserial's ``serial`` package: tinyfarm's own URL
    handlers (pyserial port subclasses) still open, and carry the protocol over an RFC 2217 port
    served by ser2net."""
    from importlib.metadata import version

    import serial

    from device_harness.client import DeviceClient
    from device_harness.labgrid.backend import serial_url
    # the active `serial` package is labgrid's fork (the Makefile reinstalls it last)
    assert serial.VERSION == version("pyserial-labgrid"), (
        f"serial {serial.VERSION} is pyserial's, not pyserial-labgrid's: "
        "pip install --force-reinstall --no-deps pyserial-labgrid")
    port = lab.hosts["host-a"].ports["twin-1"]
    url = serial_url({"host": "127.0.0.1", "port": port, "protocol": "rfc2217"}, "twin-1")
    for wrapped in (url, f"paced://{url}#baud=1000000", f"fault://{url}#corrupt=0&seed=1"):
        client = DeviceClient.open(wrapped, baud=115200)
        try:
            assert client.hello().board.startswith("twin"), wrapped
        finally:
            client.close()
    assert serial.serial_for_url("fault://loop://#seed=1", timeout=0).__class__.__name__ == "FaultyPort"


def test_no_coordinator_is_one_line_and_a_failed_job_not_a_hang(tmp_path, suite_models):
    from device_harness.backends.base import free_port
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    env = dict(os.environ, LG_COORDINATOR=address, TINYFARM_LOCK_DIR=str(tmp_path))
    res = subprocess.run(TINYFARM + ["bench", str(suite_models / "sine_int8.tflite"),
                                     "--device", "labgrid:p1"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode != 0
    assert res.stderr.strip().splitlines() == [
        f"error: cannot reach the labgrid coordinator at {address} (is labgrid-coordinator "
        "running there? the farm file's labgrid.coordinator or $LG_COORDINATOR names it)"]
    farm = tmp_path / "lab.yaml"
    farm.write_text(f"labgrid: {{coordinator: '{address}'}}\n"
                    "devices:\n  - {name: p1, backend: labgrid, place: {tags: {core: m4}}}\n")
    summary, rows, _ = _run(farm, collect_models([str(suite_models / f"{n}.tflite") for n in THREE_MODELS])[0],
                            tmp_path / "r.sqlite")
    assert [r["status"] for r in rows] == ["failed"] * 3
    assert all(f"cannot reach the labgrid coordinator at {address}" in r["reason"] for r in rows)


def test_tags_select_places_each_worker_gets_its_own(lab, five_models, tmp_path, private_lock_dir):
    farm = tmp_path / "tags.yaml"
    farm.write_text(f"labgrid: {{coordinator: '{lab.address}'}}\ndevices:\n"
                    "  - {name: a-1, backend: labgrid, place: {tags: {host: host_a}}}\n"
                    "  - {name: a-2, backend: labgrid, place: {tags: {host: host_a}}}\n")
    import threading
    both_holding = threading.Barrier(2, timeout=30)  # each job starts once both hold a place

    def on_event(device, event, details):
        if event == "job_start":
            both_holding.wait()

    summary, rows, _ = _run(farm, five_models[:1], tmp_path / "r.sqlite", on_event=on_event)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    used = sorted(json.loads(r["extra_json"])["labgrid_place"] for r in rows)
    assert used == ["twin-1", "twin-2"]  # one host-a place per worker, never host-b's
    assert all(p.acquired is None for p in _places(lab).values())


def test_sigterm_mid_run_releases_every_place_and_reservation(lab, five_models, tmp_path,
                                                              private_lock_dir):
    from device_harness.labgrid.coordinator import coordinator
    env = dict(os.environ, TINYFARM_LOCK_DIR=str(private_lock_dir))
    models = ",".join(str(m.path) for m in five_models)
    proc = subprocess.Popen(TINYFARM + ["farm", "run", "--farm", str(lab.farm_path), "--models",
                                        models, "--db", str(tmp_path / "r.sqlite"),
                                        "--runs", "400"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not any(p.acquired for p in _places(lab).values()):
            assert time.monotonic() < deadline and proc.poll() is None, "no place was taken"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, proc.stderr.read()[-2000:]
    places = _places(lab)
    assert all(p.acquired is None and p.reservation is None for p in places.values()), places
    async def reservations(s, pb2):
        return (await s.stub.GetReservations(pb2.GetReservationsRequest())).reservations
    assert list(coordinator(lab.address).call("list reservations", reservations)) == []
    assert not list(private_lock_dir.glob("labgrid-*"))
