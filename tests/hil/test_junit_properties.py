"""The pytest plugin writes every ``dut`` measurement as a JUnit property (``pytest --junitxml``).

The inner run is a subprocess (``runpytest_subprocess``): it brings a twin up, and numpy cannot be
imported twice in one process, which pytester's in-process mode would do.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

INNER = """
import numpy as np
import pytest

from device_harness.farm.synthetic import write_standard_models
from tinyfarm.litert_reference import quantize


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_standard_models(tmp_path_factory.mktemp("models"))[0]


def test_measures(dut, model):
    dut.load_model(model)
    stats = dut.bench(runs=8, warmup=1)
    t_in = dut.client.inputs[0]
    x = np.random.default_rng(0).uniform(-1, 1, size=(6, *t_in.dims)).astype(np.float32)
    q = quantize(x, t_in.numpy_dtype, t_in.scale, t_in.zero_point)
    y = np.array([int(np.argmax(dut.invoke([s])[0])) for s in q])  # the device's own answers
    result = dut.evaluate(x, y, dataset="noise")
    with open("measured.txt", "w") as fh:
        fh.write(f"{stats['latency_us_median']} {result.accuracy}")


def test_measures_nothing(dut):
    assert dut.info.board
"""


def _properties(xml_path) -> dict[str, dict[str, list[str]]]:
    """test name -> property name -> values (in the order recorded)."""
    found: dict[str, dict[str, list[str]]] = {}
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        props = found.setdefault(case.get("name"), {})
        for prop in case.iter("property"):
            props.setdefault(prop.get("name"), []).append(prop.get("value"))
    return found


def test_measurements_become_junit_properties(pytester, tmp_path):
    pytester.makepyfile(test_inner=INNER)
    xml_path = tmp_path / "hil.xml"
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--device", "twin", "--farm-db", str(tmp_path / "r.sqlite"),
        f"--junitxml={xml_path}", "-o", "junit_family=xunit1", timeout=180)
    result.assert_outcomes(passed=2)
    props = _properties(xml_path)
    measured = props["test_measures"]
    median_us, accuracy = (float(v) for v in (pytester.path / "measured.txt").read_text().split())

    assert measured["tinyfarm.device"] == ["twin"]
    assert measured["tinyfarm.board"] == ["twin:stm32f4-discovery"]
    assert measured["tinyfarm.firmware_version"][0] and measured["tinyfarm.tflm_version"][0]
    assert measured["tinyfarm.tick_source"] == ["estimate"]
    assert measured["tinyfarm.model"] == ["synthetic_mlp_small.tflite"]
    assert int(measured["tinyfarm.model_bytes"][0]) > 100
    (used,), (capacity,) = measured["tinyfarm.arena_used_bytes"], measured["tinyfarm.arena_capacity_bytes"]
    assert 0 < int(used) <= int(capacity) == 65536
    assert float(measured["tinyfarm.latency_us_median"][0]) == median_us > 0
    assert float(measured["tinyfarm.latency_us_p90"][0]) >= median_us
    assert measured["tinyfarm.bench_runs"] == ["8"]
    assert float(measured["tinyfarm.accuracy"][0]) == round(accuracy, 6)
    assert accuracy == 1.0 and measured["tinyfarm.accuracy_samples"] == ["6"]
    # a test that measures nothing carries no properties
    assert props["test_measures_nothing"] == {}
