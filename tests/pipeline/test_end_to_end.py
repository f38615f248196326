"""`tinyfarm run` end to end on the default digits pipeline, shortened (fewer epochs)."""

from __future__ import annotations

import pytest

from test_runner import assert_report_contract


@pytest.mark.slow
def test_default_digits_pipeline_shortened(digits_short_run):
    proc, out, _ = digits_short_run  # the real process, run once (conftest.py); shared read-only
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
