"""``benchmarks/hostile_inputs.py --quick``: no traceback, no stray process, no zero exit (#15, case 5).

The full run (about 70 cases, a few minutes) is the benchmark; this runs its fast dozen, which
covers each kind of case: bad numbers, bad files, unreachable or hanging-up devices, a busy twin,
tinyfarm killed with SIGKILL mid-upload. Its stray-process detector is checked on a planted stray.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "hostile_inputs.py"
sys.path.insert(0, str(SCRIPT.parent))

from hostile_procs import MARK, leftovers, pids  # noqa: E402


def test_quick_run_has_no_traceback_no_stray_and_no_zero_exit():
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True,
                          timeout=180, cwd=REPO)
    assert time.monotonic() - t0 < 60, "the quick run should stay under a minute"
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr
    summary = json.loads(lines[-1])
    report = proc.stdout + proc.stderr
    assert summary["cases"] >= 10, report
    assert summary["tracebacks"] == 0, report
    assert summary["stray_processes"] == 0, report
    assert summary["nonzero_exits"] == summary["cases"], report
    assert summary["failed_cases"] == [], report
    assert proc.returncode == 0, report
    assert len(lines) == summary["cases"] + len(summary["skipped_cases"]) + 1  # one line per case


def test_the_stray_detector_finds_a_marked_process(tmp_path):
    before = pids()
    stray = subprocess.Popen(["sleep", "30"], env=dict(os.environ, **{MARK: "probe-token"}))
    try:
        time.sleep(0.2)
        assert stray.pid in leftovers(["probe-token"], before, str(tmp_path))
        assert stray.pid not in leftovers(["other-token"], before, str(tmp_path))
    finally:
        stray.kill()
        stray.wait()
    assert stray.pid not in leftovers(["probe-token"], before, str(tmp_path))
