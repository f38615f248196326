"""The farm on real device twins: CLI, a device killed mid-run, kill -9 of the runner,
two concurrent runs, and the one-line errors."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from device_harness.farm.connect import FarmDevice
from device_harness.farm.inventory import load_farm, parse_farm
from device_harness.farm.model_refs import collect_models
from device_harness.farm.scheduler import FarmRunner, RunOptions
from device_harness.farm.store import ResultsStore
from device_harness.farm.synthetic import write_standard_models
from tinyfarm.cli import cli

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "farm.example.yaml"
TINYFARM = [sys.executable, "-m", "tinyfarm.cli"]


@pytest.fixture(scope="module")
def small_models(tmp_path_factory, suite_models) -> list[Path]:
    synth = write_standard_models(tmp_path_factory.mktemp("synth"))
    return [suite_models / "sine_int8.tflite", synth[0]]


def _farm_file(tmp_path: Path, devices: str) -> Path:
    path = tmp_path / "farm.yaml"
    path.write_text(f"devices:\n{devices}")
    return path


def _twins(n: int, pace: int | None = None) -> str:
    launch = f", launch: {{pace_baud: {pace}}}" if pace else ""
    return "".join(f"  - {{name: t{i}, backend: twin, labels: [ci]{launch}}}\n" for i in range(n))


@pytest.mark.slow
def test_cli_list_status_run_report(tmp_path, small_models):
    runner = CliRunner()
    res = runner.invoke(cli, ["farm", "list", "--farm", str(EXAMPLE), "--json"])
    assert res.exit_code == 0, res.output
    assert [d["name"] for d in json.loads(res.output)] == ["twin-a", "twin-b", "twin-c"]
    res = runner.invoke(cli, ["farm", "status", "--farm", str(EXAMPLE), "--json"])
    status = json.loads(res.output)
    assert [s["state"] for s in status] == ["ok"] * 3, status
    assert status[2]["hello"]["arena_bytes"] == 262144  # twin-c's launch setting reached the twin
    db = tmp_path / "r.sqlite"
    models = ",".join(map(str, small_models))
    res = runner.invoke(cli, ["farm", "run", "--farm", str(EXAMPLE), "--models", models,
                              "--db", str(db), "--runs", "5", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert len(summary["jobs"]) == 6 and all(j["status"] == "ok" for j in summary["jobs"])
    assert all(j["arena_used"] > 0 and j["latency_us_median"] > 0 for j in summary["jobs"])
    rows = ResultsStore(db).measurements(summary["run_id"])
    assert {(r["device"], r["model"]) for r in rows} == {
        (d, Path(m).stem) for d in ("twin-a", "twin-b", "twin-c") for m in small_models}
    out = tmp_path / "report.html"
    res = runner.invoke(cli, ["farm", "report", "--db", str(db), "--out", str(out)])
    assert res.exit_code == 0 and "data:image/png;base64," in out.read_text()


class KillingDevice(FarmDevice):
    """Sends its own twin process a signal on chosen jobs, 0.3 s into the job: SIGKILL (the
    device dies) or SIGSTOP (the device hangs; only the watchdog gets the job back)."""

    kills: dict[tuple[str, str], list[int]] = {}

    def measure(self, model, options):
        todo = self.kills.get((self.spec.name, model.name))
        if todo:
            threading.Timer(0.3, os.kill, (self.backend.pid, todo.pop(0))).start()
        return super().measure(model, options)


@pytest.mark.slow
def test_device_killed_mid_run_retried_or_failed_others_finish(tmp_path, suite_models):
    farm = parse_farm(f"devices:\n{_twins(4, pace=115200)}", tmp_path / "farm.yaml")
    models, _ = collect_models([str(suite_models / "conv_int8.tflite"),
                                str(suite_models / "sine_int8.tflite")])
    # conv_int8's upload takes ~1.7 s at 115200 baud: the signal lands in the middle of it.
    KillingDevice.kills = {("t1", "conv_int8"): [signal.SIGKILL],  # retried, ok
                           ("t2", "conv_int8"): [signal.SIGKILL] * 2,  # failed
                           ("t3", "conv_int8"): [signal.SIGSTOP]}  # hangs
    events = []
    store = ResultsStore(tmp_path / "r.sqlite")
    summary = FarmRunner(farm, farm.devices, models, store,
                         RunOptions(runs=5, warmup=1, retries=1, job_timeout_s=8),
                         KillingDevice, on_event=lambda *e: events.append(e)).run()
    by = {(r.device, r.model): r for r in summary.results}
    assert by["t0", "conv_int8"].status == "ok"
    assert by["t0", "conv_int8"].attempts == 1
    assert by["t1", "conv_int8"].status == "ok"
    assert by["t1", "conv_int8"].attempts == 2
    failed = by["t2", "conv_int8"]
    assert failed.status == "failed" and failed.attempts == 2
    assert failed.reason.startswith("failed after 2 attempts:")
    hung = by["t3", "conv_int8"]
    assert hung.status == "ok" and hung.attempts == 2  # restarted after the hang, then ok
    retry_reasons = {d: e["reason"] for d, kind, e in events if kind == "retry"}
    assert set(retry_reasons) == {"t1", "t2", "t3"}, retry_reasons
    # every device, killed or hung, was restarted and ran its next job
    assert all(by[d, "sine_int8"].status == "ok" for d in ("t0", "t1", "t2", "t3"))
    rows = store.measurements(summary.run_id)
    assert len(rows) == 8
    assert {r["status"] for r in rows if r["device"] == "t2"} == {"ok", "failed"}


def _wait_rows(db: Path, n: int, proc: subprocess.Popen, limit: float = 60) -> int:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if db.exists():
            try:
                with sqlite3.connect(db) as con:
                    count = con.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]
                if count >= n:
                    return count
            except sqlite3.OperationalError:
                pass
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} results after {limit} s")


def _spawn(args: list[str], env_extra: dict) -> subprocess.Popen:
    env = dict(os.environ, **env_extra)
    return subprocess.Popen(TINYFARM + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, start_new_session=True, cwd=REPO)


def _kill_group(proc: subprocess.Popen) -> None:
    """The runner's twins were started by it (same process group): end them too."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.mark.slow
def test_kill_9_of_the_runner_loses_no_finished_result(tmp_path, suite_models, small_models,
                                                       private_lock_dir):
    farm = _farm_file(tmp_path, _twins(2, pace=115200))
    db = tmp_path / "r.sqlite"
    # sine_int8 is quick, conv_int8 (1.7 s upload) is where the kill lands
    models = [str(small_models[0]), str(small_models[1]),
              str(suite_models / "conv_int8.tflite"),
              str(suite_models / "sine_float.tflite")]
    proc = _spawn(["farm", "run", "--farm", str(farm), "--models", ",".join(models),
                   "--db", str(db), "--runs", "5"],
                  {"TINYFARM_LOCK_DIR": str(private_lock_dir)})
    try:
        seen = _wait_rows(db, 3, proc)
        with sqlite3.connect(db) as con:
            before = con.execute("SELECT * FROM measurements ORDER BY id").fetchall()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        _kill_group(proc)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    after = con.execute("SELECT * FROM measurements ORDER BY id").fetchall()
    assert len(after) >= seen >= 3 and after[:len(before)] == before
    assert len(after) < 8  # really killed mid-run
    assert all(r[4] == "ok" for r in after)  # status column
    assert con.execute("SELECT status, finished_at FROM runs").fetchone() == ("running", None)
    # the locks died with the runner: a new run gets the devices at once
    store = ResultsStore(db)
    f = load_farm(farm)
    res = FarmRunner(f, f.devices, collect_models([models[0]])[0], store,
                     RunOptions(runs=3, busy="skip"), FarmDevice).run()
    assert all(r.status == "ok" for r in res.results)


@pytest.mark.slow
def test_two_concurrent_runs_never_share_a_device(tmp_path, small_models, private_lock_dir):
    farm = _farm_file(tmp_path, _twins(2))
    db = tmp_path / "r.sqlite"
    args = ["farm", "run", "--farm", str(farm), "--models", ",".join(map(str, small_models)),
            "--db", str(db), "--runs", "5", "--busy", "wait"]
    env = {"TINYFARM_LOCK_DIR": str(private_lock_dir)}
    procs = [_spawn(args, env), _spawn(args, env)]
    try:
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            _kill_group(p)
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err.decode()[-2000:]
    store = ResultsStore(db)
    runs = [r["id"] for r in store.runs()]
    assert len(runs) == 2
    sessions = store.sessions()
    assert len(sessions) == 4  # each run held each of the 2 devices once
    by_device: dict[str, list] = {}
    for s in sessions:
        by_device.setdefault(s["identity"], []).append(s)
    for identity, held in by_device.items():
        held.sort(key=lambda s: s["acquired_at"])
        assert {s["run_id"] for s in held} == set(runs)
        first, second = held
        assert first["released_at"] <= second["acquired_at"], (identity, held)
    # and every job of both runs finished
    assert len(store.measurements()) == 8
    assert all(m["status"] == "ok" for m in store.measurements())


def _one_line_error(args: list[str], tmp_path: Path, env: dict | None = None) -> str:
    res = subprocess.run(TINYFARM + args, capture_output=True, text=True, cwd=tmp_path,
                         env=dict(os.environ, **(env or {})), timeout=120)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    return lines[0]


def test_bad_farm_file_unknown_device_port_in_use(tmp_path, small_models, private_lock_dir):
    bad = tmp_path / "bad.yaml"
    bad.write_text("devices:\n  - {name: x, backend: twin, launch: {arena: 5}}\n")
    line = _one_line_error(["farm", "list", "--farm", str(bad)], tmp_path)
    assert "launch.arena: unknown key" in line
    line = _one_line_error(["farm", "run", "--farm", str(EXAMPLE), "--device", "nope",
                            "--models", str(small_models[0])], tmp_path)
    assert "unknown device 'nope'" in line and "twin-a" in line

    import serial
    master, slave = os.openpty()
    path = os.ttyname(slave)
    holder = serial.Serial(path, exclusive=True)  # another program has the port open
    try:
        farm = _farm_file(tmp_path, f"  - {{name: bench-board, backend: board, "
                                    f"connection: {{url: {path}}}}}\n")
        line = _one_line_error(["farm", "run", "--farm", str(farm), "--models",
                                str(small_models[0]), "--db", str(tmp_path / "r.sqlite")],
                               tmp_path, {"TINYFARM_LOCK_DIR": str(private_lock_dir)})
        assert f"bench-board: port {path} is already in use by another program" in line
    finally:
        holder.close()
        os.close(master)
        os.close(slave)


def test_accuracy_with_a_dataset(tmp_path, suite_models):
    """--dataset: accuracy where the model takes the data set's samples (the 64-input synthetic
    MLP on 8x8 digits; its weights are random, so only the plumbing is checked), and a note, not a
    failure, where it does not."""
    synth = write_standard_models(tmp_path / "synth")
    farm = parse_farm(f"devices:\n{_twins(1)}", tmp_path / "farm.yaml")
    models, _ = collect_models([str(synth[1]), str(suite_models / "sine_int8.tflite")])
    store = ResultsStore(tmp_path / "r.sqlite")
    summary = FarmRunner(farm, farm.devices, models, store,
                         RunOptions(runs=3, dataset="digits", samples=20), FarmDevice).run()
    rows = {r["model"]: r for r in store.measurements(summary.run_id)}
    wide = rows["synthetic_mlp_wide"]
    assert wide["status"] == "ok" and wide["samples"] == 20 and wide["dataset"] == "digits"
    assert 0.0 <= wide["accuracy"] <= 1.0
    # share of outputs identical to LiteRT's reference kernels is recorded (measured 0.95 here:
    # the int8 SOFTMAX head differs by one step on some samples)
    assert 0.0 <= json.loads(wide["extra_json"])["identical_share"] <= 1.0
    sine = rows["sine_int8"]
    assert sine["status"] == "ok" and sine["accuracy"] is None
    assert sine["reason"].startswith("no accuracy on digits:")
    assert sine["latency_us_median"] > 0
