"""Discovery: known USB IDs pick the candidates, HELLO confirms them (a twin stands in for a board)."""

from __future__ import annotations

import os

import yaml
from click.testing import CliRunner
from serial.tools.list_ports_common import ListPortInfo

from device_harness.backends.twin import TwinBackend
from device_harness.farm.commands import farm as farm_cli
from device_harness.farm.discovery import candidates, discover, farm_snippet
from device_harness.farm.usb_ids import identify


def _port(device: str, vid: int | None, pid: int | None) -> ListPortInfo:
    info = ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid, info.description = vid, pid, "test port"
    return info


def test_usb_table():
    assert identify(0x0483, 0x374B).name.startswith("ST-LINK/V2-1")
    assert identify(0x1366, 0x1015).name == "SEGGER J-Link"  # vendor-wide entry
    assert identify(0x2E8A, 0x000C).kind == "probe" and identify(0x2E8A, 0x1234).kind == "board"
    assert identify(0x1A86, 0x7523).kind == "bridge"
    assert identify(0x1234, 0x5678) is None and identify(None, None) is None


def test_discover_confirms_with_hello():
    master, slave = os.openpty()  # a known probe with nothing answering behind it
    silent = os.ttyname(slave)
    with TwinBackend() as twin:
        url = twin.url
        ports = [_port(url, 0x0483, 0x374B), _port(silent, 0x0D28, 0x0204),
                 _port("/dev/ttyS99", 0x1234, 0x5678)]
        assert [c.device for c in candidates(ports=ports)] == sorted([url, silent])
        assert len(candidates(all_ports=True, ports=ports)) == 3
        found = {c.device: c for c in discover(timeout=0.3, ports=ports)}
    os.close(master)
    os.close(slave)
    assert found[url].hello["board"] == "twin:stm32f4-discovery"
    assert found[url].known.startswith("ST-LINK")
    assert found[silent].hello is None and "no answer" in found[silent].error
    snippet = yaml.safe_load(farm_snippet(list(found.values())))
    assert snippet["devices"][0]["connection"]["url"] == url
    assert snippet["devices"][0]["backend"] == "board"


def test_discover_cli_on_this_machine():
    res = CliRunner().invoke(farm_cli, ["discover", "--json", "--timeout", "0.2"])
    assert res.exit_code == 0, res.output
    assert isinstance(__import__("json").loads(res.output), list)
