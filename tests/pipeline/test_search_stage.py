"""The search stage on tiny models: candidates measured, compressed bit-identically, chosen for the goal."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import yaml
from click.testing import CliRunner

from pipeline.config import parse_config
from pipeline.stages import run_pipeline
from tinyfarm.cli import cli

TINY_SEARCH = {
    "baseline": {"width": 8, "depth": 2, "dense_units": 16, "epochs": 4},
    "prune": {"enabled": False},
    "quantize": {"qat": False},
    "export": {"baseline_kinds": ["int8"], "pruned_kinds": [], "representative_samples": 20,
               "c_array": True},
    "search": {"steps": [{"width": 1.0, "sparsity": 0.75, "clusters": 8}, {"width": 0.5, "clusters": 8}],
               "fine_tune_epochs": 2, "prune_epochs": 2, "cluster_epochs": 1, "qat_epochs": 1,
               "stop_early": False},
    "tflm": {"max_samples": 40},
    "deploy": {"enabled": False},
    "report": {"plot": True},
}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, small_digits):
    """TINY_SEARCH's baseline and export stages, run once for the module (search, TFLM and report
    off). A test copies the folder and runs its config into the copy: the baseline is not trained
    again (same inputs, the stage is skipped) and everything from the search on runs."""
    cfg = parse_config({**TINY_SEARCH, "search": {**TINY_SEARCH["search"], "enabled": False},
                        "tflm": {"enabled": False}, "report": {"plot": False}})
    out = tmp_path_factory.mktemp("search") / "run"
    results = run_pipeline(cfg, out, splits=small_digits, log=lambda line: None)
    assert not results["baseline"].skipped and "search" not in results
    return out


def _run_into_copy(trained_run, out, cfg, splits):
    shutil.copytree(trained_run, out)
    results = run_pipeline(cfg, out, splits=splits, log=lambda line: None)
    assert results["baseline"].skipped and not results["search"].skipped
    return results


@pytest.mark.slow
def test_search_measures_compresses_and_chooses(tmp_path, small_digits, trained_run):
    cfg = parse_config({**TINY_SEARCH, "target": {"flash_bytes": 1 << 20, "goal": "smallest",
                                                  "max_drop": None}})
    out = tmp_path / "run"
    _run_into_copy(trained_run, out, cfg, small_digits)
    report = json.loads((out / "report.json").read_text())
    search = report["search"]
    names = [c["name"] for c in search["candidates"]]
    assert names == ["baseline_int8", "search_w100_s75_c8", "search_w50_c8"]
    for v in report["variants"]:
        for key in ("flash_bytes", "ram_bytes", "macs", "compression", "fits"):
            assert key in v, (v["name"], key)
    sparse = next(c for c in search["candidates"] if c["name"] == "search_w100_s75_c8")
    enc = sparse["encodings"]
    # The same int8 weights, stored three ways: each smaller than the plain file, each bit-identical.
    for method in ("lut", "prune"):
        assert enc[method]["bytes"] < enc["none"]["bytes"] < sparse["int8_bytes"], enc
        assert enc[method]["bit_identical"] and enc[method]["compared"] == len(small_digits.x_test)
    assert enc["none"]["bit_identical"]  # the TFLM-only trim alone (one zero point per tensor)
    assert sparse["flash_bytes"] == enc["auto"]["bytes"] <= min(enc["lut"]["bytes"], enc["prune"]["bytes"])
    narrow = next(c for c in search["candidates"] if c["name"] == "search_w50_c8")
    assert narrow["macs"] < sparse["macs"]  # structured pruning cuts compute, not only bytes
    # No floor, everything fits: the smallest wins, is the deployable model and is what TFLM checked.
    smallest = min(search["candidates"], key=lambda c: c["flash_bytes"])
    assert search["met"] and search["chosen"] == smallest["name"]
    dep = report["deployable"]
    assert dep["copy_of"] == smallest["name"] and dep["tflm_only"]
    assert dep["compression"] == smallest["compression"]
    assert (out / dep["path"]).stat().st_size == smallest["flash_bytes"]
    assert sum(dep["bytes"].values()) == smallest["flash_bytes"]
    tflm = dep["tflm"]
    assert tflm["model"].endswith(".tflm.tflite")
    assert ("DECODE" in " ".join(tflm["ops"]).upper()) == bool(dep["compression"])
    # (vs LiteRT: TFLM rounds twice, so a step here and there; the stored model itself was proven
    # bit-identical to the int8 model on TFLM, the encodings above)
    assert tflm["compared"] == 40 and tflm["same_top_class_share"] == 1.0
    assert (out / "accuracy_vs_budget.png").stat().st_size > 1000
    assert "## Fitting the target" in (out / "report.md").read_text()

    # A changed budget re-uses the trained candidates: nothing is trained again.
    lines: list[str] = []
    cfg2 = parse_config({**TINY_SEARCH, "target": {"flash_bytes": 1 << 20, "goal": "accurate",
                                                   "max_drop": None}})
    run_pipeline(cfg2, out, splits=small_digits, log=lines.append)
    again = json.loads((out / "report.json").read_text())["search"]
    assert [c["flash_bytes"] for c in again["candidates"]] == [c["flash_bytes"] for c in search["candidates"]]
    best = max(again["candidates"], key=lambda c: (c["accuracy"], -c["flash_bytes"]))
    assert again["chosen"] == best["name"]


@pytest.mark.slow
def test_unmeetable_budget_is_one_line_and_a_full_report(tmp_path, digits_short_run):
    """No model fits 512 B. Runs into a copy of the shortened default run (conftest.py) with the
    512 B target (TFLM and deploy off): its trained stages and search candidates are reused, the
    search measures them against the new budget and fails."""
    first_proc, first_out, config = digits_short_run
    assert first_proc.returncode == 0, first_proc.stderr[-2000:]
    out = tmp_path / "run"
    shutil.copytree(first_out, out)
    config = copy.deepcopy(config)
    config["target"].update(flash_bytes=512, goal="smallest", max_drop=None)
    config["search"]["stop_early"] = False
    config["tflm"]["enabled"] = False
    config["deploy"] = {"enabled": False}  # as in TINY_SEARCH
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    # The CLI in-process (click's runner): the same command and error path, no second TF import.
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(out)])
    assert result.exit_code not in (0, None)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: target not met") and "over the flash budget" in last, result.stderr[-1500:]
    assert "Traceback" not in result.output
    search = json.loads((out / "report.json").read_text())["search"]
    assert not search["met"] and len(search["candidates"]) == 2
    assert all(not c["fits"] for c in search["candidates"])


def test_candidate_zero_is_deployed_as_stored(tmp_path, small_digits, trained_run):
    """When the PTQ baseline wins, the device gets its stored (TFLM-only) file, as measured."""
    cfg = parse_config({**TINY_SEARCH, "search": {**TINY_SEARCH["search"], "stop_early": True},
                        "target": {"flash_bytes": 1 << 20, "goal": "accurate", "max_drop": None}})
    out = tmp_path / "run"
    _run_into_copy(trained_run, out, cfg, small_digits)
    report = json.loads((out / "report.json").read_text())
    assert [c["name"] for c in report["search"]["candidates"]] == ["baseline_int8"]  # fits: stop
    dep = report["deployable"]
    assert dep["copy_of"] == "baseline_int8" and dep["tflm_only"]
    assert (out / dep["path"]).stat().st_size == dep["flash_bytes"] < (out / "variants/baseline_int8.tflite").stat().st_size
    assert dep["tflm"]["model"] == dep["tflm_path"] and dep["tflm"]["compared"] == 40
