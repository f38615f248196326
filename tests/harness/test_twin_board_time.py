"""Board time on twins: a board profile's twin reports the board's estimated ticks (the cost model of
``tinyfarm fit``), ``--host-time`` (or ``?ticks=host``, ``TINYFARM_TWIN_TICKS=host``) keeps host ns,
and the ``host`` profile always reports host ns."""

from __future__ import annotations

import numpy as np
import pytest

from device_harness.boards import get_board
from device_harness.client import DeviceClient
from device_harness.device_registry import resolve_device
from device_harness.fit import latency
from device_harness.twin.device import estimated_cycles
from device_harness.twin.server import TwinServer
from tinyfarm.errors import ConfigError
from tinyfarm.tflite_macs import op_costs


def _fit_cycles(model: bytes, board: str) -> int:
    p = get_board(board)
    return latency(op_costs(model), p.cpu, p.cpu_hz, p.kernels)["cycles"]


@pytest.mark.parametrize("fixture", ["conv_int8", "sine_int8"])
def test_board_profile_twin_reports_estimated_board_ticks(fixture, request):
    model = request.getfixturevalue(fixture)
    expected = _fit_cycles(model, "stm32f4-discovery")
    assert expected > 0 and estimated_cycles(model, get_board("stm32f4-discovery")) == expected
    with TwinServer(get_board("stm32f4-discovery")) as server, DeviceClient.open(server.url) as dev:
        info = dev.hello()
        assert info.tick_source == "estimate" and info.tick_hz == 168_000_000 == info.cpu_hz
        dev.upload(model)
        x = [np.zeros(t.dims, t.numpy_dtype) for t in dev.inputs]
        _, ticks = dev.invoke(x)
        assert ticks == expected
        bench = dev.bench(warmup=1, runs=5)
        assert list(bench) == [expected] * 5  # deterministic: the same for every run and input


def test_host_time_keeps_host_ns(conv_int8):
    expected = _fit_cycles(conv_int8, "stm32f4-discovery")
    with TwinServer(get_board("stm32f4-discovery"), host_time=True) as server, \
            DeviceClient.open(server.url) as dev:
        info = dev.hello()
        assert info.tick_source == "host-ns" and info.tick_hz == 1_000_000_000
        assert info.cpu_hz == 168_000_000
        dev.upload(conv_int8)
        ticks = dev.bench(warmup=0, runs=3)
        assert all(t > 0 for t in ticks) and list(ticks) != [expected] * 3


def test_host_profile_stays_host_ns(sine_int8):
    with TwinServer(get_board("host")) as server, DeviceClient.open(server.url) as dev:
        info = dev.hello()
        assert info.tick_source == "host-ns" and info.tick_hz == 1_000_000_000


def test_host_time_reaches_twins_started_for_a_device(monkeypatch):
    monkeypatch.delenv("TINYFARM_TWIN_TICKS", raising=False)
    assert resolve_device("twin:stm32f4-discovery").host_time is False
    assert resolve_device("twin:stm32f4-discovery?ticks=host").host_time is True
    backend = resolve_device("twin?ticks=host", board="nano33-ble-sense")
    assert backend.host_time is True and backend.profile.name == "nano33-ble-sense"
    assert "--host-time" in backend.command()
    assert "--host-time" not in resolve_device("twin").command()
    with pytest.raises(ConfigError, match="ticks=host"):
        resolve_device("twin:stm32f4-discovery?ticks=wall")
    monkeypatch.setenv("TINYFARM_TWIN_TICKS", "host")
    assert resolve_device("twin").host_time is True
    assert resolve_device("twin?ticks=estimate").host_time is False


def test_twin_subprocess_with_host_time(monkeypatch):
    from device_harness.session import DeviceSession

    monkeypatch.delenv("TINYFARM_TWIN_TICKS", raising=False)
    with DeviceSession.for_device("twin:stm32f4-discovery?ticks=host") as session:
        assert session.info.tick_source == "host-ns" and session.info.tick_hz == 1_000_000_000
    with DeviceSession.for_device("twin:nano33-ble-sense") as session:
        assert session.info.tick_source == "estimate" and session.info.tick_hz == 64_000_000
