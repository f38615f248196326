"""Who holds a device, and the error a taker sees when it is held: shared by the file locks
(:mod:`.locks`) and labgrid's places (:mod:`device_harness.labgrid.place_lock`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from tinyfarm.errors import DeviceError


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    command: str
    device: str
    since: float

    def describe(self) -> str:
        age = time.time() - self.since
        return f"pid {self.pid} on {self.host} ({self.command}) for {age:.0f} s"


class DeviceBusy(DeviceError):
    """The device is locked by someone else and we were not willing to wait (longer)."""

    retryable = False
