"""Hardware-in-the-loop examples: what a user writes against ``dut`` (twins in CI, boards on a bench).

    pytest tests/hil                                   # the example farm's twins
    pytest tests/hil --farm lab.yaml --device nucleo   # a real board
"""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.hil
def test_sine_model_on_device(dut, suite_models):
    """sine_int8 predicts sin(x): quantize x, invoke on the device, dequantize the answer."""
    dut.load_model(suite_models / "sine_int8.tflite")
    t_in, t_out = dut.client.inputs[0], dut.client.outputs[0]
    errors = []
    for x in np.linspace(0.5, 5.5, 6):
        q = np.array(np.round(x / t_in.scale + t_in.zero_point), dtype=np.int8).reshape(t_in.dims)
        y = (int(dut.invoke([q])[0].reshape(-1)[0]) - t_out.zero_point) * t_out.scale
        errors.append(abs(y - np.sin(x)))
    assert max(errors) < 0.2, errors


@pytest.mark.hil
def test_bench_is_recorded(dut, synthetic_models, tinyfarm_pool):
    dut.load_model(synthetic_models[0])
    stats = dut.bench(runs=10, warmup=2)
    assert len(stats["ticks"]) == 10
    assert stats["latency_us_min"] <= stats["latency_us_median"] <= stats["latency_us_max"]
    assert 0 < stats["arena_used"] <= dut.info.arena_bytes
    rows = tinyfarm_pool._store.measurements(tinyfarm_pool._run_id)
    assert rows[-1]["test_id"].endswith("test_bench_is_recorded")
    assert rows[-1]["device"] == dut.name and rows[-1]["model"] == synthetic_models[0].stem


@pytest.mark.hil(labels=["big-arena"])
def test_label_picks_the_big_arena_twin(dut):
    assert dut.name == "twin-c" and dut.info.arena_bytes == 262144


@pytest.mark.hil
def test_model_too_large_is_a_clear_device_error(dut, tmp_path):
    from tinyfarm.errors import DeviceError
    big = tmp_path / "big.tflite"
    big.write_bytes(b"\0\0\0\0TFL3" + bytes(dut.info.max_model_bytes))
    with pytest.raises(DeviceError, match="at most"):
        dut.load_model(big)


@pytest.mark.emulator
def test_emulator_only(dut):
    """Skipped on a farm of twins (with the reason); runs where the farm has a QEMU device."""
    assert dut.info.tick_source == "qemu-icount"
