"""The pytest plugin: options, markers, skip reasons, and the dut fixture on a twin.

Runs that bring a twin up use a subprocess: numpy cannot be imported twice in one process, which
pytester's in-process mode would do.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

TESTS = """
import pytest

@pytest.mark.hil
def test_needs_device(dut):
    assert dut.info.board

@pytest.mark.hil(labels=["no-such-label"])
def test_needs_label(dut):
    pass

@pytest.mark.emulator
def test_needs_emulator(dut):
    pass
"""


def test_skips_with_reasons_without_devices(pytester, tmp_path):
    pytester.makepyfile(TESTS)
    result = pytester.runpytest("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(["*no device: pass --farm FILE*"])
    farm = tmp_path / "farm.yaml"
    farm.write_text("devices:\n  - {name: solo, backend: twin, labels: [ci]}\n")
    result = pytester.runpytest("-rs", "--farm", str(farm), "--device", "nothing")
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(["*--device 'nothing' is no device name or label*"])


@pytest.mark.slow
def test_farm_selection_reasons_and_two_sessions_never_share(pytester, tmp_path):
    """Two pytest processes (as xdist workers are) on a farm of two twins: each session holds
    its device until it ends, so two sessions that overlap in time use different twins."""
    farm = tmp_path / "farm.yaml"
    farm.write_text("devices:\n  - {name: t0, backend: twin, labels: [ci]}\n"
                    "  - {name: t1, backend: twin, labels: [ci]}\n")
    log = tmp_path / "holds.log"
    pytester.makepyfile(TESTS + f"""

import os, time

@pytest.mark.hil
def test_hold(dut):
    start = time.time()
    time.sleep(1.0)
    with open({str(log)!r}, "a") as fh:
        fh.write(f"{{dut.name}} {{start}} {{time.time()}}\\n")
""")
    args = [sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider", "--farm", str(farm),
            "--device", "ci", "--farm-db", str(tmp_path / "r.sqlite")]
    env = dict(os.environ, TINYFARM_LOCK_DIR=os.environ["TINYFARM_LOCK_DIR"])
    procs = [subprocess.Popen(args, cwd=pytester.path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out
        assert "2 passed, 2 skipped" in out, out
        assert f"no device in {farm} among --device 'ci' has labels no-such-label" in out
        assert "has backend qemu/renode" in out
    holds = [line.split() for line in log.read_text().splitlines()]
    assert len(holds) == 2
    (n0, s0, e0), (n1, s1, e1) = [(n, float(s), float(e)) for n, s, e in holds]
    overlap = s0 < e1 and s1 < e0
    assert n0 != n1 or not overlap, holds


def test_direct_device_without_farm(pytester, tmp_path):
    pytester.makepyfile(TESTS)
    result = pytester.runpytest_subprocess("-rs", "--device", "twin", "--farm-db", str(tmp_path / "r.db"),
                                "-k", "needs_device or needs_label")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*needs a farm device with labels no-such-label*"])
