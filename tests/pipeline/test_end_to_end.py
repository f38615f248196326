"""`tinyfarm run` end to end on the default digits pipeline, shortened (fewer epochs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from test_runner import assert_report_contract

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_default_digits_pipeline_shortened(tmp_path):
    config = yaml.safe_load((REPO / "configs" / "digits.yaml").read_text())
    config["baseline"]["epochs"] = 4
    config["prune"]["epochs"] = 3
    config["quantize"]["epochs"] = 1
    config["search"].update(fine_tune_epochs=3, prune_epochs=2, cluster_epochs=1, qat_epochs=1,
                            steps=config["search"]["steps"][1:2])  # w50_c16: fits 16 KB
    config["target"]["max_drop"] = 0.05  # a shortened run: the floor is not what this test is about
    path = tmp_path / "digits_short.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "tinyfarm.cli", "run", str(path), "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = assert_report_contract(out)
    assert report["dataset"]["name"] == "digits" and report["dataset"]["test"] == 450
    kinds = {v["kind"] for v in report["variants"]}
    assert kinds == {"float32", "dynamic", "float16", "int8", "int16x8"}
    pqat = next(v for v in report["variants"] if v["name"] == "pruned_pqat_int8")
    assert pqat["sparsity"] >= 0.75 and pqat["accuracy"] > 0.8
    tflm = report["deployable"]["tflm"]
    assert tflm["ops_supported"] and tflm["arena_bytes"] > 0 and tflm["compared"] == 450
    # Bit-identical except one-step rounding ties (TFLM rounds twice, LiteRT once; tflm_check.py).
    assert tflm["identical_share"] >= 0.9, tflm
    assert tflm["within_one_step_share"] >= 0.99 and tflm["same_top_class_share"] >= 0.99
    assert "epoch" in proc.stderr  # progress was shown
    search = report["search"]
    assert [c["name"] for c in search["candidates"]][:1] == ["baseline_int8"] and search["met"]
    assert report["deployable"]["copy_of"] == search["chosen"]
    for v in report["variants"]:
        assert {"flash_bytes", "ram_bytes", "macs", "compression", "fits"} <= set(v)
