"""The distill stage end to end on a small MNIST-1D subset: variants, report.json, report.md."""

from __future__ import annotations

import json

import pytest

from pipeline.config import parse_config
from pipeline.stages import run_pipeline

pytestmark = pytest.mark.slow


def test_distill_stage_writes_variants_and_the_distillation_report(tmp_path):
    from tinyfarm_datasets import load_dataset

    splits = load_dataset("mnist1d", seed=0).subset(train=400, test=100)
    cfg = parse_config({
        "dataset": {"name": "mnist1d"},
        "baseline": {"width": 8, "depth": 2, "kernel_size": 5, "epochs": 3, "batch_size": 64},
        "prune": {"enabled": False, "target_sparsity": 0.5, "epochs": 2, "batch_size": 64},
        "quantize": {"qat": False, "epochs": 1, "batch_size": 64},
        "export": {"baseline_kinds": ["float32"], "c_array": False, "representative_samples": 32},
        "tflm": {"enabled": False},
        "search": {"enabled": False},
        "deploy": {"enabled": False},
        "report": {"plot": False},
        "distill": {"enabled": True, "teacher": "baseline", "student": {"width_multiplier": 0.5},
                    "temperature": 4.0, "alpha": 0.2, "epochs": 2, "batch_size": 64,
                    "teacher_cache": str(tmp_path / "cache")},
    })
    results = run_pipeline(cfg, tmp_path / "run", splits=splits, log=lambda line: None)
    assert "distill" in results
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    d = report["distillation"]
    for key in ("teacher_accuracy", "student_scratch_accuracy", "student_distilled_accuracy",
                "student_compressed_accuracy"):
        assert 0.0 <= d[key] <= 1.0, key
    assert d["student_params"] < d["teacher_params"]
    assert d["teacher_logits_cache"]["kind"] == "logits"
    assert (tmp_path / "cache").is_dir() and list((tmp_path / "cache").glob("*.npz"))
    by_name = {v["name"]: v for v in report["variants"]}
    for name in ("student_scratch_float32", "student_distilled_float32",
                 "student_distilled_pruned_float32", "student_distilled_pruned_pqat_int8"):
        assert by_name[name]["accuracy"] is not None and (tmp_path / "run" / by_name[name]["path"]).is_file()
    compressed = by_name["student_distilled_pruned_pqat_int8"]
    assert compressed["kind"] == "int8" and compressed["sparsity"] > 0.3  # measured in the flatbuffer
    # The stage's own numbers are the evaluate stage's numbers (same LiteRT reference kernels).
    assert d["student_distilled_accuracy"] == pytest.approx(by_name["student_distilled_float32"]["accuracy"])
    assert d["student_compressed_accuracy"] == pytest.approx(compressed["accuracy"])
    assert "## Distillation" in (tmp_path / "run" / "report.md").read_text()
    # The deployable model stays the baseline chain's.
    assert report.get("deployable", {}).get("source") != "distill"
