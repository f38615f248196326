"""The quantize-only path: a float ``.tflite`` as ``baseline.model_path`` -> stage ``ptq``
(ai-edge-quantizer, full int8) -> evaluate, TFLM check, deploy to the twin, report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.config import parse_config
from pipeline.stages import STAGES
from pipeline.tflite_quantize import check_float_tflite, is_tflite_path, quantize_only
from tinyfarm.errors import ModelError

pytest.importorskip("ai_edge_quantizer")


def _enabled(config) -> list[str]:
    return [s.name for s in STAGES if s.enabled(config)]


def test_tflite_model_path_skips_training_and_runs_ptq():
    cfg = parse_config({"baseline": {"model_path": "m.tflite"}})
    assert quantize_only(cfg) and is_tflite_path("A.TFLITE") and not is_tflite_path("m.keras")
    assert _enabled(cfg) == ["ptq", "evaluate", "tflm", "deploy", "report"]
    default = _enabled(parse_config({}))
    assert "ptq" not in default and default[:4] == ["baseline", "prune", "quantize", "export"]


@pytest.fixture(scope="module")
def float_tflite(tiny_tflite):
    return tiny_tflite("float32")


@pytest.fixture(scope="module")
def digits():
    """The whole digits test split (450 samples): 1 point is 4.5 samples, not 1.2."""
    from tinyfarm_datasets import load_dataset

    return load_dataset("digits", val_fraction=0.1, seed=0).subset(train=400)


def test_refuses_a_quantized_tflite_in_one_line(tiny_tflite, small_digits):
    for kind in ("int8", "dynamic", "float16"):
        model = tiny_tflite(kind)
        with pytest.raises(ModelError, match="already quantized") as err:
            check_float_tflite(model, small_digits.input_shape, small_digits.num_classes, label="q.tflite")
        assert "\n" not in str(err.value)


def test_refuses_a_shape_mismatch_in_one_line(float_tflite, small_digits):
    with pytest.raises(ModelError, match=r"takes input \[1, 8, 8, 1\].*\[28, 28, 1\]") as err:
        check_float_tflite(float_tflite, (28, 28, 1), small_digits.num_classes, label="f.tflite")
    assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match="outputs 10 scores, the data set has 3 classes"):
        check_float_tflite(float_tflite, small_digits.input_shape, 3, label="f.tflite")


def test_quantize_only_pipeline_keeps_accuracy_and_runs_on_the_twin(tmp_path, float_tflite, digits):
    from pipeline.stages import run_pipeline

    src = tmp_path / "model.tflite"
    src.write_bytes(float_tflite)
    cfg = parse_config({"baseline": {"model_path": str(src)}, "export": {"representative_samples": 100},
                        "deploy": {"device": "twin", "runs": 5, "warmup": 1},
                        "report": {"plot": False}})
    out = tmp_path / "run"
    results = run_pipeline(cfg, out, splits=digits, log=lambda line: None)
    assert list(results) == ["ptq", "evaluate", "tflm", "deploy", "report"]

    ptq = results["ptq"].summary
    assert ptq["quantizer"]["name"] == "ai-edge-quantizer" and ptq["quantizer"]["io_type"] == "int8"
    assert [v["name"] for v in ptq["variants"]] == ["float32", "int8"]
    assert (out / "variants/float32.tflite").read_bytes() == float_tflite
    assert ptq["deployable"]["copy_of"] == "int8"
    assert (out / "model_int8.tflite").read_bytes() == (out / "variants/int8.tflite").read_bytes()
    assert ptq["int8_bytes"] < 0.6 * ptq["float_bytes"]  # tiny model: headers weigh

    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=(out / "model_int8.tflite").read_bytes())
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert interp.get_output_details()[0]["dtype"] == np.int8

    acc = results["evaluate"].summary["results"]
    assert acc["float32"]["accuracy"] > 0.5  # a trained model, not chance
    assert abs(acc["int8"]["accuracy"] - acc["float32"]["accuracy"]) <= 0.01

    check = results["tflm"].summary["deployable_check"]
    # Runs on TFLM; outputs as LiteRT's but for TFLM's double rounding (see pipeline/tflm_check.py).
    assert check["ops_supported"] and check["arena_bytes"], check
    assert check["within_one_step_share"] >= 0.99 and check["same_top_class_share"] >= 0.99, check
    deploy = results["deploy"].summary["deploy"]
    assert deploy["device"] == "twin" and deploy["samples"] == len(digits.x_test)
    assert abs(deploy["accuracy"] - acc["int8"]["accuracy"]) <= 0.01

    report = json.loads((out / "report.json").read_text())
    assert report["deployable"]["copy_of"] == "int8"

    # Unchanged inputs: the ptq stage is reused, not re-run.
    again = run_pipeline(cfg, out, splits=digits, log=lambda line: None)
    assert again["ptq"].skipped
