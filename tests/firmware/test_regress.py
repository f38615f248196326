"""``tinyfarm regress``: passes against the committed baseline, fails when a baseline value is edited."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from device_harness import regress as rg
from tinyfarm.cli import cli

BASELINE = rg.SUITES_DIR / "emulators.baseline.json"


@pytest.fixture()
def models_present(shared_models):
    return shared_models


def run_cli(*args: str):
    result = CliRunner().invoke(cli, ["regress", *args])
    return result.exit_code, result.output


@pytest.mark.slow
@pytest.mark.emulator
def test_suite_matches_the_committed_baseline_on_twin_and_qemu(models_present, qemu_elf):
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm not on PATH")
    code, out = run_cli("--suite", "emulators", "--baseline", str(BASELINE))
    assert code == 0, out
    assert "DRIFT" not in out


@pytest.mark.slow
def test_hand_edited_baseline_fails(models_present, tmp_path):
    edited = json.loads(BASELINE.read_text())
    edited["results"]["twin"]["hello_world_int8"]["arena_used"] += 64
    edited["results"]["twin"]["micro_speech_quantized"]["outputs_sha256"] = "0" * 64
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(edited))
    code, out = run_cli("--suite", "emulators", "--baseline", str(path), "--backend", "twin")
    assert code == 1, out
    assert "2 value(s) drifted" in out
    assert "twin/hello_world_int8/arena_used" in out and "outputs_sha256" in out


def test_compare_rules():
    suite = rg.Suite(name="t", backends=["a", "b"], models=[rg.ModelEntry(name="m", synthetic_bytes=8)],
                     tolerance=rg.Tolerance(arena_bytes=16, ticks_rel=0.05),
                     backend_tolerance={"b": rg.Tolerance(ticks_rel=None)})
    base = {"results": {"a": {"m": {"ticks": 1000, "arena_used": 100, "verified": True, "gone": 1}},
                        "b": {"m": {"ticks": 1000}}}}
    cur = {"a": {"m": {"ticks": 1049, "arena_used": 117, "verified": True, "new": 2}},
           "b": {"m": {"ticks": 5000}}}
    status = {(r["backend"], r["metric"]): r["status"] for r in rg.compare(suite, base, cur)}
    assert status[("a", "ticks")] == "ok"            # within 5 %
    assert status[("a", "arena_used")] == "DRIFT"    # 17 B > 16 B
    assert status[("a", "verified")] == "ok"
    assert status[("a", "gone")] == "DRIFT"          # missing now
    assert status[("a", "new")] == "DRIFT"           # not in the baseline
    assert status[("b", "ticks")] == "info"          # not compared on b
    cur["a"]["m"]["ticks"] = 1051
    assert {r["metric"]: r["status"] for r in rg.compare(suite, base, cur) if r["backend"] == "a"}["ticks"] == "DRIFT"


def test_bad_inputs_are_one_line_errors(tmp_path):
    code, out = run_cli("--suite", "no-such-suite", "--baseline", str(tmp_path / "b.json"))
    assert code == 2 and "not found" in out
    code, out = run_cli("--suite", "emulators", "--baseline", str(tmp_path / "missing.json"))
    assert code == 2 and "--update" in out
    bad = tmp_path / "suite.yaml"
    bad.write_text("name: x\nbackends: []\nmodels: []\n")
    code, out = run_cli("--suite", str(bad), "--baseline", str(tmp_path / "b.json"))
    assert code == 2 and "backends" in out
    code, out = run_cli("--suite", "emulators", "--baseline", str(BASELINE), "--backend", "renode")
    assert code == 2 and "not in suite" in out
