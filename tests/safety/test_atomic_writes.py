"""Result files are written through one helper: a fresh private temporary file beside the final
one, fsynced, then renamed. A symlink planted at the old fixed ``<name>.tmp`` (or at the final
name) is never followed, and a failed write leaves the previous file whole."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from tinyfarm import atomic_files
from tinyfarm.errors import StorageError
from tinyfarm.provenance import write_json

REPO = Path(__file__).resolve().parents[2]


def _plant(link: Path, target: Path) -> None:
    target.write_text("precious\n")
    link.symlink_to(target)


def test_symlink_at_the_old_tmp_name_is_not_followed(tmp_path):
    target = tmp_path / "victim.txt"
    out = tmp_path / "run" / "report.json"
    out.parent.mkdir()
    _plant(out.with_suffix(".json.tmp"), target)  # the name write_json used to open
    write_json(out, {"ok": True})
    assert target.read_text() == "precious\n"
    assert json.loads(out.read_text()) == {"ok": True} and not out.is_symlink()
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.json", "report.json.tmp"]


def test_symlink_at_the_final_name_is_replaced_not_followed(tmp_path):
    target = tmp_path / "victim.txt"
    out = tmp_path / "model_int8.tflite"
    _plant(out, target)
    atomic_files.write_bytes(out, b"TFL3")
    assert target.read_text() == "precious\n"
    assert not out.is_symlink() and out.read_bytes() == b"TFL3"


def test_html_report_and_lock_notes_use_the_helper(tmp_path, monkeypatch):
    from device_harness.farm.html_report import write_report
    from device_harness.farm.locks import DeviceLock
    from device_harness.farm.store import ResultsStore

    target = tmp_path / "victim.txt"
    _plant(tmp_path / "report.html.tmp", target)
    store = ResultsStore(tmp_path / "r.sqlite")
    run = store.begin_run(farm="t")
    store.finish_run(run)
    write_report(store, tmp_path / "report.html", run, None)
    assert target.read_text() == "precious\n" and "<html" in (tmp_path / "report.html").read_text()

    lock = DeviceLock("twin:x", "x", tmp_path / "locks", "test")
    lock.info_path.parent.mkdir(parents=True, exist_ok=True)
    _plant(lock.info_path.with_suffix(f".{os.getpid()}.tmp"), tmp_path / "victim2.txt")
    lock.acquire(timeout=1)
    lock.release()
    assert (tmp_path / "victim2.txt").read_text() == "precious\n"


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    out = tmp_path / "ref.npz"
    np.savez(out, a=np.arange(3))
    before = out.read_bytes()
    with pytest.raises(RuntimeError):
        with atomic_files.atomic_path(out) as tmp:
            np.savez(tmp, a=np.arange(10))
            raise RuntimeError("killed half-way")
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ref.npz"]
    # an OSError of the disk is one StorageError line naming the final file
    with pytest.raises(StorageError, match=r"^no space left on device writing .*ref\.npz$"):
        with atomic_files.atomic_path(out) as tmp:
            raise OSError(28, "No space left on device")
    assert out.read_bytes() == before


def test_no_result_is_written_by_name_outside_the_helper():
    """pipeline/, the farm, regress and the core write results only through tinyfarm.atomic_files."""
    pattern = re.compile(r"\.write_(bytes|text)\(|np\.savez(_compressed)?\(|np\.save\(|\.savefig\(|"
                         r"\.save\((?!tmp)|\.tmp\b|os\.replace\(|\.replace\(path\)")
    allowed = {"tinyfarm/atomic_files.py"}
    offenders = []
    files = [*REPO.glob("pipeline/*.py"), *REPO.glob("device_harness/farm/*.py"),
             REPO / "device_harness/regress.py", REPO / "device_harness/commands.py",
             *REPO.glob("tinyfarm/*.py"), *REPO.glob("datasets/*.py")]
    for path in files:
        rel = str(path.relative_to(REPO))
        if rel in allowed:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if pattern.search(code) and "tmp" not in code and "buf" not in code:
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
