"""Must-show: models deployed to the twin vs LiteRT's reference kernels on the same raw inputs.

Measured here: micro_speech and hello_world_float are bit-identical to LiteRT (BUILTIN_REF) on every
input tried. hello_world_int8 is NOT: over all 256 int8 inputs, 23 outputs differ by 1-3 steps — in
TFLM itself (the twin returns exactly what the TFLM runtime computes, asserted below), most likely
TFLM's single-rounding requantization vs TFLite's double rounding. The test pins both facts.
"""

from __future__ import annotations

import numpy as np
import pytest

from device_harness.boards import get_board
from device_harness.client import DeviceClient
from tinyfarm.litert_reference import ReferenceInterpreter
from device_harness.twin.server import TwinServer
from device_harness.twin.tflm_process import TflmProcess


@pytest.fixture(scope="module")
def dev():
    with TwinServer(get_board()) as server, DeviceClient.open(server.url) as client:
        client.hello()
        yield client


def _inputs(rng: np.random.Generator, dev: DeviceClient, n: int) -> list[list[np.ndarray]]:
    out = []
    for _ in range(n):
        sample = []
        for t in dev.inputs:
            if t.numpy_dtype.kind == "f":
                sample.append(rng.uniform(0, 2 * np.pi, t.dims).astype(t.numpy_dtype))
            else:
                info = np.iinfo(t.numpy_dtype)
                sample.append(rng.integers(info.min, info.max + 1, t.dims, dtype=t.numpy_dtype))
        out.append(sample)
    return out


@pytest.mark.parametrize("name", ["hello_world_float.tflite", "micro_speech_quantized.tflite"])
def test_twin_outputs_are_identical_to_litert_reference_kernels(dev, shared_models, name):
    model = (shared_models / name).read_bytes()
    assert dev.upload(model).loaded
    reference = ReferenceInterpreter(model)
    for inputs in _inputs(np.random.default_rng(0), dev, 30):
        got, _ = dev.invoke(inputs)
        for g, w in zip(got, reference(inputs)):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g.reshape(w.shape), w)


def test_hello_world_int8_twin_is_tflm_exactly_and_litert_differs_by_at_most_3_steps(dev, shared_models):
    model = (shared_models / "hello_world_int8.tflite").read_bytes()
    assert dev.upload(model).loaded
    xs = np.arange(-128, 128, dtype=np.int8).reshape(256, 1, 1)
    twin_out = np.array([dev.invoke([x])[0][0].reshape(-1)[0] for x in xs])
    with TflmProcess() as tflm:
        tflm.load(model, 4096)
        direct, _ = tflm.invoke_batch([xs])
    np.testing.assert_array_equal(twin_out, direct[0].reshape(-1))  # the harness adds nothing
    reference = ReferenceInterpreter(model)
    ref = np.array([reference([x])[0].reshape(-1)[0] for x in xs])
    diff = np.abs(twin_out.astype(int) - ref.astype(int))
    assert diff.max() <= 3
    assert 0.85 <= np.mean(diff == 0) < 1.0  # 233/256 identical when measured
