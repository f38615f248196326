"""The chained pipeline: report.json contract, per-stage records, and skip-if-unchanged re-runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.config import parse_config
from pipeline.stages import run_pipeline

TINY = {
    "baseline": {"width": 4, "depth": 2, "dense_units": 8, "epochs": 2},
    "prune": {"epochs": 2, "target_sparsity": 0.75},
    "quantize": {"epochs": 1},
    "export": {"baseline_kinds": ["float32", "int8"], "pruned_kinds": [], "representative_samples": 20},
    "evaluate": {"max_test_samples": 60},
    "tflm": {"max_samples": 30},
    "report": {"plot": True},
    "search": {"enabled": False},  # the search loop has its own tests (test_search_stage.py)
    # not cached, so it would upload to a fresh twin on every one of the runs below; the deploy
    # stage has its own tests (test_deploy_stage.py, test_end_to_end.py, test_tflite_quantize.py)
    "deploy": {"enabled": False},
}

REQUIRED_VARIANT_KEYS = {"name", "kind", "accuracy", "size_bytes", "sparsity", "path"}


def assert_report_contract(out: Path) -> dict:
    """The fields other parts rely on (see issue 2, "Contract")."""
    report = json.loads((out / "report.json").read_text())
    assert isinstance(report["dataset"], dict) and report["dataset"]["name"]
    assert report["variants"], "no variants"
    names = [v["name"] for v in report["variants"]]
    assert len(names) == len(set(names))
    for v in report["variants"]:
        assert REQUIRED_VARIANT_KEYS <= set(v), v
        assert v["kind"] in {"float32", "dynamic", "float16", "int8", "int16x8"}
        assert 0.0 <= v["accuracy"] <= 1.0 and 0.0 <= v["sparsity"] <= 1.0
        assert not Path(v["path"]).is_absolute()
        assert (out / v["path"]).is_file() and (out / v["path"]).stat().st_size == v["size_bytes"]
    return report


@pytest.mark.slow
def test_pipeline_report_records_and_skip_if_unchanged(tmp_path, small_digits):
    cfg = parse_config(TINY)
    out = tmp_path / "run"
    lines: list[str] = []
    first = run_pipeline(cfg, out, splits=small_digits, log=lines.append)
    report = assert_report_contract(out)
    kinds = {v["name"]: v["kind"] for v in report["variants"]}
    assert kinds == {"pruned_pqat_int8": "int8", "baseline_float32": "float32", "baseline_int8": "int8"}
    pqat = next(v for v in report["variants"] if v["name"] == "pruned_pqat_int8")
    assert pqat["sparsity"] >= 0.74  # measured in the flatbuffer, survived PQAT
    assert report["deployable"]["copy_of"] == "pruned_pqat_int8"
    assert (out / "model_int8.tflite").read_bytes() == (out / pqat["path"]).read_bytes()
    assert (out / "model_int8.cc").is_file() and (out / "model_int8.h").is_file()
    tflm = report["deployable"]["tflm"]
    assert tflm["ops_supported"] and tflm["arena_bytes"] > 0 and tflm["compared"] == 30
    assert tflm["within_one_step_share"] == 1.0 and 0.0 <= tflm["identical_share"] <= 1.0
    md = (out / "report.md").read_text()
    assert md.count("| pruned_pqat_int8 |") == 1
    assert f"tensor arena of at least {tflm['arena_bytes']} B" in md  # the Next section's figures
    assert f"shrinks the download ({pqat['gzip_bytes']} B gzipped)" in md
    assert (out / "accuracy_vs_size.png").stat().st_size > 1000
    for name in ("baseline", "prune", "quantize", "export", "evaluate", "tflm"):
        record = json.loads((out / "stages" / name / "record.json").read_text())
        assert record["seed"] == 0 and record["versions"]["tensorflow"]
        assert "config" in record and "inputs" in record and record["outputs"] is not None
        assert all(len(h) == 64 for h in record["outputs"].values())
    assert not any(r.skipped for r in first.values())

    # Same inputs: every cached stage is skipped.
    second = run_pipeline(cfg, out, splits=small_digits, log=lines.append)
    assert all(second[n].skipped for n in ("baseline", "prune", "quantize", "export", "evaluate", "tflm"))
    assert not second["report"].skipped
    assert_report_contract(out)

    # A changed export section re-runs export and what follows, not the training stages.
    cfg2 = parse_config({**TINY, "export": {**TINY["export"], "baseline_kinds": ["float32"]}})
    third = run_pipeline(cfg2, out, splits=small_digits, log=lines.append)
    assert [n for n, r in third.items() if r.skipped] == ["baseline", "prune", "quantize"]
    assert {v["name"] for v in assert_report_contract(out)["variants"]} == {"pruned_pqat_int8", "baseline_float32"}

    # A damaged output is noticed: the stage that wrote it runs again.
    (out / "variants" / "baseline_float32.tflite").write_bytes(b"garbage")
    fourth = run_pipeline(cfg2, out, splits=small_digits, log=lines.append)
    assert not fourth["export"].skipped and fourth["quantize"].skipped
    assert_report_contract(out)


@pytest.mark.slow
def test_user_model_file_with_plain_qat(tmp_path, small_digits, trained_tiny):
    """A user's tf-keras file as the baseline (not retrained), no pruning, plain QAT."""
    model_path = tmp_path / "user.keras"
    trained_tiny.save(model_path)
    cfg = parse_config({
        "baseline": {"model_path": str(model_path), "train": False},
        "prune": {"enabled": False},
        "quantize": {"epochs": 1},
        "export": {"baseline_kinds": ["int8"], "representative_samples": 20},
        "evaluate": {"max_test_samples": 40},
        "tflm": {"enabled": False},
        "search": {"enabled": False},
        "deploy": {"enabled": False},
    })
    out = tmp_path / "run"
    results = run_pipeline(cfg, out, splits=small_digits, log=lambda line: None)
    assert "prune" not in results and "tflm" not in results
    report = assert_report_contract(out)
    assert {v["name"]: v["method"] for v in report["variants"]} == {"qat_int8": "qat", "baseline_int8": "ptq"}
    assert report["deployable"]["copy_of"] == "qat_int8"
    assert results["baseline"].summary["model_path"] == str(model_path)
    assert results["baseline"].summary["epochs_run"] == 0
