"""Transports: pyserial URL handlers (fault://, paced://), the line pacer, device resolution."""

from __future__ import annotations

import pytest
import serial

from device_harness.backends.base import Backend, UrlBackend
from device_harness.backends.twin import TwinBackend
from device_harness.device_registry import register_device, resolve_device
from device_harness.session import DeviceSession
from device_harness.transports import open_port
from device_harness.transports.faulty import FaultyPort
from device_harness.transports.paced import LinePacer
from tinyfarm.errors import DeviceError


def test_fault_url_wraps_any_url_and_is_seeded():
    outs = []
    for _ in range(2):
        port = serial.serial_for_url("fault://loop://#corrupt=0.2&seed=7&direction=tx", timeout=0.2)
        port.write(bytes(200))
        outs.append(port.read(200))
        assert port.counts["corrupted"] > 10
        port.close()
    assert outs[0] == outs[1] and outs[0] != bytes(200)  # same seed, same damage


def test_faulty_port_drop_and_duplicate_counts():
    port = FaultyPort(serial.serial_for_url("loop://", timeout=0.2), drop=0.1, dup=0.1, seed=1, direction="rx")
    port.write(bytes(1000))
    got = port.read(2000)
    assert len(got) == 1000 - port.counts["dropped"] + port.counts["duplicated"]


def test_paced_url_and_unknown_options():
    port = serial.serial_for_url("paced://loop://#baud=115200", timeout=0.5)
    port.write(b"abc")
    assert port.read(3) == b"abc"
    with pytest.raises(DeviceError, match="unknown option"):
        open_port("fault://loop://#nonsense=1")


def test_line_pacer_releases_bytes_at_the_line_rate():
    pacer = LinePacer(1000)  # 100 bytes/s: one byte every 10 ms
    pacer.arrive(b"0123456789", now=0.0)
    assert pacer.take(now=0.005) == b""
    assert pacer.take(now=0.0301) == b"012"
    assert pacer.take(now=1.0) == b"3456789"
    assert pacer.schedule_tx(10, now=2.0) == pytest.approx(2.1)
    assert pacer.schedule_tx(10, now=2.0) == pytest.approx(2.2)  # queued behind the first


def test_resolve_device_variants_and_the_plugin_hook(tmp_path):
    assert isinstance(resolve_device("socket://127.0.0.1:1234"), UrlBackend)
    twin = resolve_device("twin:nano33-ble-sense", pace=True)
    assert isinstance(twin, TwinBackend) and twin.profile.name == "nano33-ble-sense" and twin.baud == 115200
    assert "--baud" in twin.command()
    with pytest.raises(DeviceError, match="no such device"):
        resolve_device("/dev/does-not-exist")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("bogus-device-name")

    class Fake(Backend):
        name = "fake"

        def __init__(self, arg):
            super().__init__()
            self.arg = arg

        def start(self):
            self.url = f"loop://{self.arg}"
            return self.url

        def stop(self):
            self.url = None

    register_device("fakeboard", lambda arg, **opts: Fake(arg))
    backend = resolve_device("fakeboard:fw.elf")
    with backend as b:
        assert b.url == "loop://fw.elf"
    assert backend.url is None


def test_twin_backend_subprocess_restart():
    backend = TwinBackend()
    with DeviceSession(backend) as session:
        assert session.info.board == "twin:stm32f4-discovery"
        first = backend.pid
        session.restart()
        assert backend.pid != first
        assert session.info.tick_source == "estimate"  # a board profile's twin: estimated board ticks
