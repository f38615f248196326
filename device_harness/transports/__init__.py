"""Transports: everything is a pyserial URL.

A device path or pty path, ``socket://host:port``, ``rfc2217://host:port`` and ``loop://`` are
pyserial's own; this package adds, as pyserial URL handlers (registered in
``serial.protocol_handler_packages`` on import):

* ``fault://<inner-url>#corrupt=0.01&drop=0&dup=0&seed=1&direction=both`` — a seeded
  fault-injecting port around any other URL (:class:`.faulty.FaultyPort`);
* ``paced://<inner-url>#baud=115200`` — delivers bytes no faster than a UART at that baud rate
  (:class:`.paced.PacedPort`).

Both are pyserial port classes (:class:`.wrapped.WrappedPort`, a ``serial.SerialBase``), the way
pyserial's own ``spy://`` handler is one.

:func:`open_port` opens any of them and turns failures into one clear :class:`DeviceError` line.
"""

from __future__ import annotations

import os
from typing import Any

import serial

from tinyfarm.errors import DeviceError

if "device_harness.transports" not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append("device_harness.transports")


class PortInUse(DeviceError):
    """Another program holds the port (exclusive lock): retrying now would not help."""

    retryable = False


def is_device_path(url: str) -> bool:
    return "://" not in url and not url.startswith("loop")


def open_port(url: str, *, baud: int | None = None, timeout: float = 0.0, exclusive: bool = False,
              **kwargs: Any) -> Any:
    """``serial.serial_for_url`` with a one-line DeviceError for unreachable or unknown URLs.

    ``exclusive``: a device path is opened with an exclusive lock, so a port another program holds
    is reported (:class:`PortInUse`), not shared; URLs ignore it.
    """
    if "://" not in url and not os.path.exists(url):
        raise DeviceError(f"cannot open {url}: no such device (not a path or pyserial URL)")
    if exclusive and is_device_path(url):
        kwargs["exclusive"] = True
    try:
        return serial.serial_for_url(url, baudrate=baud or 115200, timeout=timeout, **kwargs)
    except (serial.SerialException, ValueError, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "exclusively lock" in msg or "Resource temporarily unavailable" in msg:
            raise PortInUse(f"port {url} is already in use by another program") from None
        raise DeviceError(f"cannot open {url}: {msg}") from None
