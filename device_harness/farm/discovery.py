"""Find boards on this machine: serial ports of known USB probes/boards/bridges, confirmed by HELLO.

A USB ID only says a probe is plugged in; the HELLO says tinyfarm firmware answers behind it. Ports
that another process holds open exclusively are reported as busy, never stolen.
"""

from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from serial.tools import list_ports

from .usb_ids import identify


@dataclass
class Candidate:
    device: str
    description: str | None
    usb_id: str | None
    serial_number: str | None
    known: str | None
    kind: str | None
    hello: dict[str, Any] | None = None
    error: str | None = None

    @property
    def board(self) -> str | None:
        return (self.hello or {}).get("board")

    @property
    def firmware_version(self) -> str | None:
        return (self.hello or {}).get("firmware_version")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def candidates(all_ports: bool = False, ports: list | None = None) -> list[Candidate]:
    """Serial ports worth a HELLO (known USB IDs; every port with ``all_ports``)."""
    found = []
    for port in (ports if ports is not None else list_ports.comports()):
        known = identify(port.vid, port.pid)
        if known is None and not all_ports:
            continue
        usb = f"{port.vid:04x}:{port.pid:04x}" if port.vid is not None else None
        found.append(Candidate(device=port.device, description=port.description,
                               usb_id=usb, serial_number=port.serial_number,
                               known=known.name if known else None,
                               kind=known.kind if known else None))
    return sorted(found, key=lambda c: c.device)


def discover(timeout: float = 0.5, all_ports: bool = False,
             hello: Callable[[str, float], dict[str, Any]] | None = None,
             ports: list | None = None) -> list[Candidate]:
    """Candidates, each confirmed (or not) with a HELLO; ports are probed side by side."""
    if hello is None:
        from .connect import hello_url
        hello = hello_url
    found = candidates(all_ports, ports)

    def confirm(c: Candidate) -> None:
        try:
            c.hello = hello(c.device, timeout)
        except Exception as exc:  # noqa: BLE001 - every failure is this port's answer
            from .scheduler import one_line
            c.error = one_line(exc)

    threads = [threading.Thread(target=confirm, args=(c,), daemon=True) for c in found]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 5)
    return found


def stable_path(device: str) -> str:
    """/dev/serial/by-id/... for a /dev/ttyACMn when udev made one: it survives re-plugging."""
    folder = Path("/dev/serial/by-id")
    if folder.is_dir():
        for link in sorted(folder.iterdir()):
            if os.path.realpath(link) == os.path.realpath(device):
                return str(link)
    return device


def farm_snippet(found: list[Candidate]) -> str:
    """Farm-file YAML for the ports that answered, keyed by stable /dev/serial/by-id paths."""
    import yaml

    devices = []
    for i, c in enumerate(c for c in found if c.hello):
        name = f"{(c.board or 'board').lower().replace(' ', '-')}-{i}"
        entry = {"name": name, "backend": "board", "connection": {"url": stable_path(c.device)},
                 "labels": ["hil"] + ([c.kind] if c.kind else [])}
        devices.append(entry)
    return yaml.safe_dump({"devices": devices}, sort_keys=False) if devices else ""
