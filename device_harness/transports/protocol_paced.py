"""pyserial URL handler ``paced://<inner-url>#baud=115200``."""

from device_harness.transports._wrapper_url import make_serial_class
from device_harness.transports.paced import PacedPort


def _wrap(inner, opts):
    if set(opts) - {"baud"}:
        raise ValueError(f"unknown option(s) {sorted(set(opts) - {'baud'})}")
    return PacedPort(inner, int(opts.get("baud", 115200)))


Serial = make_serial_class("paced", _wrap)
