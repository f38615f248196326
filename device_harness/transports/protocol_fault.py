"""pyserial URL handler ``fault://<inner-url>#corrupt=R&drop=R&dup=R&seed=N&direction=both``."""

from device_harness.transports.faulty import FaultyPort as Serial

__all__ = ["Serial"]
