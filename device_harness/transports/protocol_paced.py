"""pyserial URL handler ``paced://<inner-url>#baud=115200``."""

from device_harness.transports.paced import PacedPort as Serial

__all__ = ["Serial"]
