"""A full disk is one line, a non-zero exit and earlier results intact: ``tinyfarm run`` (no
truncated ``.npz``, no temporary files left), ``farm run`` (the run is not left "running"),
``farm report``. The real thing is a small tmpfs (root only, else those tests skip); the
fallbacks make the same errors by monkeypatching."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from safety_helpers import assert_one_error_line, run_cli

TINY_CONFIG = """\
baseline: {width: 4, depth: 1, dense_units: 8, epochs: 1}
prune: {enabled: false}
quantize: {qat: false}
export: {baseline_kinds: [float32, int8], representative_samples: 20, c_array: false}
evaluate: {max_test_samples: 40}
tflm: {enabled: false}
deploy: {enabled: false}
search: {enabled: false}
report: {plot: false}
"""


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs, unmounted afterwards."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def assert_small(folder) -> None:
    """Never fill a real disk: only a file system of at most 64 MiB."""
    st = os.statvfs(folder)
    assert st.f_blocks * st.f_frsize <= 64 << 20, f"{folder} is not the small test disk"


def fill(disk, leave: int = 0):
    """Fill ``disk`` up to ``leave`` free bytes (a file ``filler``); returns its path."""
    filler = disk / "filler"
    assert_small(disk)
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 16, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def _snapshot(out):
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in out.rglob("*") if p.is_file()}


def test_full_disk_during_tinyfarm_run(tmp_path, small_disk, monkeypatch):
    (tmp_path / "c.yaml").write_text(TINY_CONFIG)
    out = small_disk / "out"
    result, _ = run_cli(["run", str(tmp_path / "c.yaml"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    before = _snapshot(out)

    # The disk fills up while a reference .npz is being written (the tester's truncated .npz).
    real_savez = np.savez

    def savez_on_a_filling_disk(file, *args, **kwargs):
        fill(small_disk)
        return real_savez(file, *args, **kwargs)

    fill(small_disk, leave=256 * 1024)  # room for the model and variants, not for everything
    monkeypatch.setattr(np, "savez", savez_on_a_filling_disk)
    result, lines = run_cli(["run", str(tmp_path / "c.yaml"), "--out", str(out), "--force"])
    monkeypatch.undo()
    errors = [ln for ln in lines if "error" in ln.lower() or "Traceback" in ln]
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert errors == [lines[-1]], result.output
    assert lines[-1].startswith("error: no space left on device writing ")
    assert lines[-1].endswith(".npz") and str(out / "stages/evaluate/reference") in lines[-1]
    after = _snapshot(out)
    assert set(after) == set(before)  # nothing half-written beside, no temporary left
    for rel in ("stages/evaluate/reference/baseline_float32.npz", "report.json",
                "stages/evaluate/record.json"):
        assert after[rel] == before[rel], rel  # the failed writes left the earlier files whole
    for rel in after:
        if rel.endswith(".npz"):
            with np.load(out / rel) as z:
                assert set(z.files) == {"inputs", "outputs", "labels"}
        elif rel.endswith(".json"):
            json.loads((out / rel).read_text())


FARM_CHILD = textwrap.dedent("""
    import os
    import sys
    from types import SimpleNamespace
    from device_harness.farm import connect

    FILLER = sys.argv[1]  # taken before sys.argv becomes the command line

    def fill(path):
        st = os.statvfs(os.path.dirname(path))
        if st.f_blocks * st.f_frsize > 64 << 20:
            raise SystemExit(f"refusing to fill {path}: not the small test disk")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        for size in (1 << 16, 512, 1):
            try:
                while True:
                    os.write(fd, b"\\0" * size)
            except OSError:
                pass
        os.close(fd)

    class DiskFillingDevice:
        def __init__(self, farm, spec):
            self.spec, self.info = spec, SimpleNamespace(as_dict=lambda: {"board": "fake"})
        def open(self): pass
        def close(self): pass
        def restart(self): pass
        def abort(self): pass
        def measure(self, model, options):
            fill(FILLER)
            return {"latency_us_median": 1.0}

    connect.FarmDevice = DiskFillingDevice
    from tinyfarm.cli import main
    sys.argv = ["tinyfarm", *sys.argv[2:]]
    main()
""")


def test_full_disk_during_farm_run(tmp_path, small_disk):
    from device_harness.farm.store import ResultsStore
    from device_harness.farm.synthetic import write_standard_models

    (tmp_path / "farm.yaml").write_text("devices:\n  - {name: d0, backend: twin}\n")
    models = write_standard_models(tmp_path / "models")
    db = small_disk / "results.sqlite"
    env = {**os.environ, "TINYFARM_LOCK_DIR": str(tmp_path / "locks")}
    proc = subprocess.run(
        [sys.executable, "-c", FARM_CHILD, str(small_disk / "filler"), "farm", "run", "--json",
         "--farm", str(tmp_path / "farm.yaml"), "--models", ",".join(map(str, models[:2])),
         "--db", str(db)], env=env, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert lines == [f"error: no space left on device writing {db}"], lines
    (small_disk / "filler").unlink()
    store = ResultsStore(db)  # the runner's process is gone: its run is no longer "running"
    (run,) = store.runs()
    assert run["status"] in ("failed", "interrupted"), run
    store.close()
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# -- without root: the same errors, made by monkeypatching ----------------------------------------

def test_enospc_writing_an_html_report(tmp_path, monkeypatch):
    from device_harness.farm.store import ResultsStore
    from tinyfarm import atomic_files

    store = ResultsStore(tmp_path / "r.sqlite")
    store.finish_run(store.begin_run(farm="t"))
    store.close()
    (tmp_path / "report.html").write_text("earlier report")

    def no_space(path, directory=False):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic_files, "_fsync", no_space)
    result, lines = run_cli(["farm", "report", "--db", str(tmp_path / "r.sqlite"),
                             "--out", str(tmp_path / "report.html")])
    assert_one_error_line(result, lines, f"no space left on device writing {tmp_path / 'report.html'}")
    assert (tmp_path / "report.html").read_text() == "earlier report"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_store_that_cannot_record_marks_the_run_failed(tmp_path, monkeypatch):
    from device_harness.farm.inventory import parse_farm
    from device_harness.farm.scheduler import FarmRunner, ModelRef, RunOptions
    from device_harness.farm.store import ResultsStore
    from tinyfarm.errors import StorageError

    class Device:
        def __init__(self, farm, spec):
            self.spec = spec
            self.info = type("Info", (), {"as_dict": staticmethod(lambda: {})})()

        def open(self): ...
        def close(self): ...
        def restart(self): ...
        def abort(self): ...

        def measure(self, model, options):
            return {"latency_us_median": 1.0}

    store = ResultsStore(tmp_path / "r.sqlite")

    def full(*args, **kwargs):
        raise StorageError(f"no space left on device writing {store.path}")

    monkeypatch.setattr(store, "record", full)
    farm = parse_farm("devices:\n  - {name: d0, backend: twin}\n", tmp_path / "farm.yaml")
    model = tmp_path / "m.tflite"
    model.write_bytes(b"\0\0\0\0TFL3" + bytes(10))
    runner = FarmRunner(farm, farm.devices, [ModelRef(model, "0" * 64, "m", 16)], store,
                        RunOptions(retries=0), Device)
    with pytest.raises(StorageError):
        runner.run()
    assert store.run(runner.run_id)["status"] == "failed"


def test_a_run_left_running_by_a_dead_process_is_marked_interrupted(tmp_path):
    from device_harness.farm.store import ResultsStore

    store = ResultsStore(tmp_path / "r.sqlite")
    run = store.begin_run(farm="t")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store._write("UPDATE runs SET pid=? WHERE id=?", (dead.pid, run))
    store.close()
    reopened = ResultsStore(tmp_path / "r.sqlite")
    assert reopened.run(run)["status"] == "interrupted" and reopened.run(run)["finished_at"] is None
