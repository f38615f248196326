"""``tinyfarm regress``: passes against the committed baseline, fails when a baseline value is edited."""

from __future__ import annotations

import json

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
def test_suite_matches_the_committed_baseline_on_the_twin_and_the_qemu_engine_builds(
        models_present, qemu, qemu_tflm_elf, qemu_cmsis_nn_elf):
    code, out = run_cli("--suite", "emulators", "--baseline", str(BASELINE))
    assert code == 0, out
    assert "DRIFT" not in out


def changed_weight(model: bytes) -> bytes:
    """``model`` with one weight of its first FULLY_CONNECTED layer changed (still a valid model)."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    graph = m.subgraphs[0]
    fc = next(op for op in graph.operators
              if m.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.FULLY_CONNECTED)
    buffer = m.buffers[graph.tensors[fc.inputs[1]].buffer]
    buffer.data = buffer.data.copy()
    buffer.data[0] = (int(buffer.data[0]) + 64) % 256
    builder = flatbuffers.Builder(len(model) + 1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.mark.slow
@pytest.mark.emulator
def test_a_changed_model_fails_the_suite_on_qemu(models_present, qemu, qemu_tflm_elf, tmp_path):
    """The suite's hello_world_int8 with one weight changed: its outputs drift on the QEMU engine
    build (not only its hash), and the run exits 1."""
    changed = tmp_path / "hello_world_int8.tflite"
    changed.write_bytes(changed_weight((models_present / "hello_world_int8.tflite").read_bytes()))
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: emulators\nbackends: [qemu]\nmodels:\n"
                     "  - {name: hello_world_int8, path: hello_world_int8.tflite, seed: 1}\n")
    committed = json.loads(BASELINE.read_text())["results"]["qemu"]
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"results": {"qemu": {k: committed[k] for k in ("device", "hello_world_int8")}}}))
    code, out = run_cli("--suite", str(suite), "--baseline", str(baseline), "--json")
    assert code == 1, out
    drifted = {r["metric"] for r in json.loads(out[:out.rindex("]") + 1]) if r["status"] == "DRIFT"}
    assert {"model_sha256", "outputs_sha256"} <= drifted, drifted
    assert "arena_used" not in drifted  # same graph, same tensors: only the values moved


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
