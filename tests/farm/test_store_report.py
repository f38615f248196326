"""Results store (WAL, committed per job) and the report's regression verdict."""

from __future__ import annotations

import sqlite3

from click.testing import CliRunner

from device_harness.farm.commands import farm as farm_cli
from device_harness.farm.html_report import compare
from device_harness.farm.store import ResultsStore


def _model(tmp_path, name, payload):
    p = tmp_path / f"{name}.tflite"
    p.write_bytes(b"\0\0\0\0TFL3" + payload)
    return p


def _fill(store, tmp_path, latencies: dict, accuracy=0.9, failed=()):
    run = store.begin_run(farm="t", command="test")
    for (device, model), lat in latencies.items():
        dev = store.device_id(device, "twin", "b", f"twin:{device}")
        mid = store.model_id(_model(tmp_path, model, model.encode()))
        status = "failed" if (device, model) in failed else "ok"
        store.record(run, dev, mid, {"status": status, "reason": "boom" if status != "ok" else None,
                                     "started_at": 1.0, "finished_at": 2.0,
                                     "latency_us_median": lat, "latency_us_p90": lat * 1.1,
                                     "accuracy": accuracy, "arena_used": 1000})
    store.finish_run(run)
    return run


def test_store_is_wal_and_each_record_is_visible_to_other_connections(tmp_path):
    db = tmp_path / "r.sqlite"
    store = ResultsStore(db)
    run = store.begin_run(farm="t")
    dev = store.device_id("a", "twin", None, "twin:a", ["x"])
    assert store.device_id("a", "twin", None, "twin:a") == dev
    store.record(run, dev, store.model_id(_model(tmp_path, "m", b"1")),
                 {"status": "ok", "started_at": 1, "finished_at": 2, "upload_s": 0.5,
                  "extra_thing": 7})
    other = sqlite3.connect(db)  # a second reader sees the committed row at once
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 1
    assert other.execute("SELECT status, finished_at FROM runs").fetchone() == ("running", None)
    assert other.execute("SELECT COUNT(*) FROM versions WHERE run_id=?", (run,)).fetchone()[0] > 5
    row = store.measurements(run)[0]
    assert row["upload_s"] == 0.5 and '"extra_thing": 7' in row["extra_json"]


def test_verdict_flags_slower_failed_and_less_accurate(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    base = _fill(store, tmp_path, {("a", "m1"): 100.0, ("a", "m2"): 200.0, ("b", "m1"): 100.0})
    same = _fill(store, tmp_path, {("a", "m1"): 105.0, ("a", "m2"): 190.0, ("b", "m1"): 100.0})
    verdict = compare(store, same, base, latency_tol=0.10)
    assert not verdict.regressions and verdict.compared == 3
    slow = _fill(store, tmp_path, {("a", "m1"): 130.0, ("a", "m2"): 200.0, ("b", "m1"): 100.0},
                 failed={("b", "m1")}, accuracy=0.8)
    verdict = compare(store, slow, base, latency_tol=0.10, accuracy_tol=0.05)
    found = {(f.device, f.model, f.metric) for f in verdict.regressions}
    assert ("a", "m1", "latency_us_median") in found
    assert ("b", "m1", "status") in found
    assert ("a", "m2", "accuracy") in found
    assert ("a", "m2", "latency_us_median") not in found
    assert "REGRESSION" in verdict.summary()


def test_report_cli_writes_html_with_plots_and_fails_on_regression(tmp_path):
    db = tmp_path / "r.sqlite"
    store = ResultsStore(db)
    _fill(store, tmp_path, {("a", "m1"): 100.0, ("b", "m1"): 120.0})
    _fill(store, tmp_path, {("a", "m1"): 150.0, ("b", "m1"): 120.0})
    store.close()
    out = tmp_path / "report.html"
    runner = CliRunner()
    res = runner.invoke(farm_cli, ["report", "--db", str(db), "--baseline", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    html = out.read_text()
    assert html.count("data:image/png;base64,") == 3  # latency, accuracy, history
    assert "REGRESSION" in html and "x1.500" in html
    res = runner.invoke(farm_cli, ["report", "--db", str(db), "--baseline", "previous",
                                   "--out", str(out), "--fail-on-regression"])
    assert res.exit_code == 1 and "regression: m1 on a" in res.output
    res = runner.invoke(farm_cli, ["report", "--db", str(db), "--baseline", "1",
                                   "--latency-tol", "0.6", "--fail-on-regression", "--out", str(out)])
    assert res.exit_code == 0 and "OK: no regression" in res.output
