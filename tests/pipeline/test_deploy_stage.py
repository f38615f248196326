"""The pipeline's deploy stage: upload to a device, then on-device latency and accuracy figures."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.deploy_stage import deploy_model, render_deploy
from tinyfarm.errors import DeviceError


def test_deploy_model_on_twin_measures_on_the_device(conv_int8):
    model = conv_int8
    rng = np.random.default_rng(0)
    # conv_int8: one int8 input of 1960 features, 4 classes; quantized by the device's scale
    x = rng.uniform(-20, 20, size=(12, 1960)).astype(np.float32)
    y = rng.integers(0, 4, size=12)
    figures = deploy_model(model, "twin", x, y, dataset="synthetic", runs=7, warmup=1)

    assert figures["model_bytes"] == len(model)
    assert figures["samples"] == 12
    assert figures["latency"]["runs"] == 7
    assert figures["latency"]["min_ticks"] <= figures["latency"]["median_ticks"] <= figures["latency"]["max_ticks"]
    assert figures["tick_source"] == "estimate"  # a board-profile twin speaks in that board's (estimated) time
    assert figures["latency"]["min_ticks"] == figures["latency"]["max_ticks"]
    # the host TFLM's allocation record for this model: 9,808 B (TflmProcess.load(...).arena_used)
    assert figures["arena_used_bytes"] == 9808
    assert 0.0 <= figures["accuracy"] <= 1.0
    assert figures["identical_outputs"] == round(figures["identical_share"] * 12)
    figures["model"] = "model_int8.tflite"
    text = "\n".join(render_deploy(figures))
    assert "On the device" in text and "identical" in text
    assert figures["line_paced"] is False and "unpaced pty" in text  # a twin's figures say what they are
    assert "estimated" in text and "not a measurement" in text


def test_deploy_to_unknown_device_is_one_clear_error(sine_int8):
    model = sine_int8
    with pytest.raises(DeviceError, match="unknown device"):
        deploy_model(model, "no-such-board", np.zeros((1, 1)), np.zeros(1), dataset="x", runs=1, warmup=0)
