"""Transports: everything is a pyserial URL.

A device path or pty path, ``socket://host:port``, ``rfc2217://host:port`` and ``loop://`` are
pyserial's own; this package adds, as pyserial URL handlers (registered in
``serial.protocol_handler_packages`` on import):

* ``fault://<inner-url>#corrupt=0.01&drop=0&dup=0&seed=1&reset_after=N&direction=both`` — a
  seeded fault-injecting wrapper around any other URL (see :mod:`.faulty`);
* ``paced://<inner-url>#baud=115200`` — delivers bytes no faster than a UART at that baud rate
  (see :mod:`.paced`).

:func:`open_port` opens any of them and turns failures into one clear :class:`DeviceError` line.
"""

from __future__ import annotations

import os
from typing import Any

import serial

from tinyfarm.errors import DeviceError

if "device_harness.transports" not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append("device_harness.transports")


def open_port(url: str, *, baud: int | None = None, timeout: float = 0.0, **kwargs: Any) -> Any:
    """``serial.serial_for_url`` with a one-line DeviceError for unreachable or unknown URLs."""
    if "://" not in url and not os.path.exists(url):
        raise DeviceError(f"cannot open {url}: no such device (not a path or pyserial URL)")
    try:
        return serial.serial_for_url(url, baudrate=baud or 115200, timeout=timeout, **kwargs)
    except (serial.SerialException, ValueError, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DeviceError(f"cannot open {url}: {msg}") from None
