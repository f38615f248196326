"""The comparison figures (compare.py) and the named references of an on-device evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from device_harness.compare import compare, dequantize
from tinyfarm.cli import cli


def test_identical_tensors():
    a = np.arange(-5, 5, dtype=np.int8).reshape(2, 5)
    m = compare(dequantize(a, 0.5, 3), dequantize(a, 0.5, 3), step=0.5, top1=True)
    assert (m.cosine, m.rel_l2, m.max_abs_diff, m.max_steps) == (1.0, 0.0, 0.0, 0.0)
    assert m.identical_share == 1.0 and m.top1_agreement == 1.0 and m.samples == 2
    assert not m.departs()


def test_steps_cosine_and_top1():
    ref = np.array([[10, 0, 0], [0, 10, 0]], dtype=np.int8)
    act = ref.copy()
    act[1] = [0, 10, 12]                      # sample 1: 12 steps off, argmax moves
    m = compare(dequantize(act, 0.25, 0), dequantize(ref, 0.25, 0), step=0.25, top1=True)
    assert m.max_steps == 12.0 and m.max_abs_diff == 3.0
    assert m.top1_agreement == 0.5 and m.identical_share == 0.5
    assert m.rel_l2 == pytest.approx(12 / np.sqrt(200))
    assert 0 < m.cosine < 0.999 and m.departs() and m.departs(max_steps=None)
    one = compare(dequantize(ref + np.int8(1), 0.25, 0), dequantize(ref, 0.25, 0), step=0.25)
    assert one.max_steps == 1.0 and not one.departs(min_cosine=0.9)        # 1 step: within tolerance


def test_zero_reference_and_shapes():
    z = np.zeros((1, 4))
    assert compare(z, z).cosine == 1.0 and compare(z, z).rel_l2 == 0.0
    assert compare(z + 1, z).rel_l2 is None and compare(z + 1, z).cosine == 0.0
    assert compare(z, z).max_steps is None
    with pytest.raises(ValueError):
        compare(np.zeros((2, 3)), np.zeros((2, 4)))
    np.testing.assert_array_equal(dequantize(np.array([1.5]), 0.1, 3), [1.5])   # floats stay


@pytest.fixture(scope="module")
def sine_set(tmp_path_factory):
    x = np.linspace(0, 2 * np.pi, 24, dtype=np.float32).reshape(-1, 1)
    path = tmp_path_factory.mktemp("data") / "sine.npz"
    y = np.arange(len(x)) % 2                 # labels do not matter: accuracy is not looked at
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y)
    return path


def test_evaluate_names_every_reference(sine_set, suite_models):
    res = CliRunner().invoke(cli, ["evaluate", str(suite_models / "sine_int8.tflite"),
                                   "--dataset", str(sine_set), "--float",
                                   str(suite_models / "sine_float.tflite"), "--json"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["samples"] == 24 and out["reference"] == "host-tflm"  # the device reference
    refs = out["references"]
    assert set(refs) == {"host-tflm", "litert-reference", "float"}
    (m,) = refs["host-tflm"]["outputs"]                   # the firmware's kernels: identical
    assert m["identical_share"] == out["identical_share"] == 1.0 and m["max_steps"] == 0.0 and m["cosine"] == 1.0
    # LiteRT's reference kernels may round FULLY_CONNECTED differently from TFLM (TFLM's hello_world:
    # a few steps on 2 of these 24 samples, see test_litert_parity.py; sine_int8: none, measured)
    (m,) = refs["litert-reference"]["outputs"]
    assert m["identical_share"] > 0.8 and m["max_steps"] <= 4 and m["cosine"] > 0.999
    (f,) = refs["float"]["outputs"]
    assert f["cosine"] > 0.99 and 0 < f["rel_l2"] < 0.1 and f["max_steps"] >= 1 and f["top1_agreement"] == 1.0
    text = CliRunner().invoke(cli, ["evaluate", str(suite_models / "sine_int8.tflite"),
                                    "--dataset", str(sine_set), "--limit", "4", "--float",
                                    str(suite_models / "sine_float.tflite")], catch_exceptions=False)
    assert text.exit_code == 0 and "vs float, output 0: top-1 agreement" in text.stdout
    assert "vs host-tflm, output 0" in text.stdout


def test_evaluate_without_references(sine_set, suite_models):
    res = CliRunner().invoke(cli, ["evaluate", str(suite_models / "sine_int8.tflite"),
                                   "--dataset", str(sine_set), "--no-reference", "--json"],
                             catch_exceptions=False)
    out = json.loads(res.stdout)
    assert out["references"] == {} and out["identical_share"] is None and out["reference"] is None


def test_evaluate_float_model_of_another_shape_is_one_line(sine_set, suite_models):
    res = CliRunner().invoke(cli, ["evaluate", str(suite_models / "sine_int8.tflite"),
                                   "--dataset", str(sine_set), "--float",
                                   str(suite_models / "conv_int8.tflite")])
    assert res.exit_code != 0
    assert res.stderr.startswith("error: ") and len(res.stderr.strip().splitlines()) == 1
