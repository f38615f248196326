"""The valid ranges of the numbers a user gives the device harness, in one place.

The CLI options (click ranges), the farm file (pydantic constraints) and ``python -m
device_harness.twin`` all check against these, where the value is read, so a bad number is one
clear line naming the option or field, never a crash far away (an arena of 0 bytes segfaults TFLM;
a baud rate of 0 divides by zero in the line pacer).
"""

from __future__ import annotations

#: tensor arena: below ~1 KB TFLM cannot even allocate its interpreter (it segfaults); the largest
#: microcontroller boards have a few MB of RAM
MIN_ARENA_BYTES = 1024
MAX_ARENA_BYTES = 256 << 20
#: serial line rates: the slowest standard rate up to far beyond any UART
MIN_BAUD = 50
MAX_BAUD = 50_000_000
#: TCP ports (0 = any free port, where a port is chosen)
MAX_PORT = 65535
#: seconds a twin keeps a silent TCP client before dropping it (``tinyfarm twin --idle-timeout``)
DEFAULT_IDLE_TIMEOUT_S = 60.0
