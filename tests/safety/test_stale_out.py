"""Re-running into an ``--out`` made with another config leaves nothing stale: a stage that runs
again removes the files its earlier record lists and it no longer writes (variants, reference
outputs, the plot), and a stage the config now disables has its files and record removed."""

from __future__ import annotations

import json

from pipeline.config import parse_config
from pipeline.stage_runner import remove_outputs
from pipeline.stages import run_pipeline

TINY = {
    "baseline": {"width": 4, "depth": 1, "dense_units": 8, "epochs": 1},
    "prune": {"enabled": False},
    "quantize": {"epochs": 1},
    "export": {"baseline_kinds": ["float32", "int8"], "representative_samples": 20},
    "evaluate": {"max_test_samples": 30},
    "tflm": {"enabled": False},
    "deploy": {"enabled": False},
    "search": {"enabled": False},
    "report": {"plot": True},
}


def _small_digits():
    from tinyfarm_datasets import load_dataset

    return load_dataset("digits", val_fraction=0.1, seed=0).subset(train=200, test=60)


def test_second_config_removes_what_the_first_wrote(tmp_path):
    data, out, lines = _small_digits(), tmp_path / "run", []
    run_pipeline(parse_config(TINY), out, splits=data, log=lines.append)
    first = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"variants/baseline_float32.tflite", "variants/qat_int8.tflite", "accuracy_vs_size.png",
            "stages/evaluate/reference/baseline_float32.npz", "stages/quantize/record.json"} <= first

    second = {**TINY, "quantize": {"qat": False}, "export": {**TINY["export"], "baseline_kinds": ["int8"]},
              "report": {"plot": False}}
    run_pipeline(parse_config(second), out, splits=data, log=lines.append)
    now = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    gone = {"variants/baseline_float32.tflite", "stages/evaluate/reference/baseline_float32.npz",
            "accuracy_vs_size.png",  # the report no longer draws it
            "variants/qat_int8.tflite", "stages/quantize/record.json",  # quantize is now disabled
            "stages/evaluate/reference/qat_int8.npz"}
    assert not gone & now, gone & now
    assert not (out / "stages" / "quantize").exists()
    report = json.loads((out / "report.json").read_text())
    assert [v["path"] for v in report["variants"]] == ["variants/baseline_int8.tflite"]
    assert report["deployable"]["copy_of"] == "baseline_int8"
    # what is left is what the report and the records account for
    recorded = {rel for rec in (out / "stages").glob("*/record.json")
                for rel in json.loads(rec.read_text())["outputs"]}
    records = {p.relative_to(out).as_posix() for p in (out / "stages").glob("*/record.json")}
    assert now == recorded | records
    assert any("removed" in line for line in lines)


def test_a_record_cannot_remove_files_outside_the_run_folder(tmp_path):
    out = tmp_path / "run"
    (out / "variants").mkdir(parents=True)
    (tmp_path / "precious.txt").write_text("keep")
    (out / "variants" / "link.tflite").symlink_to(tmp_path / "precious.txt")
    (out / "variants" / "old.tflite").write_bytes(b"x")
    removed = remove_outputs(out, {"../precious.txt": "", "variants/../../precious.txt": "",
                                   "/etc/passwd": "", "variants/link.tflite": "",
                                   "variants/old.tflite": "", "variants/keep.tflite": ""},
                             keep=["variants/keep.tflite"])
    assert removed == 2  # the symlink itself (not its target) and the stale variant
    assert (tmp_path / "precious.txt").read_text() == "keep"
    assert not (out / "variants" / "link.tflite").is_symlink()
