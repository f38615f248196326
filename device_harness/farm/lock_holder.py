"""Who holds a device, and the error a taker sees when it is held: shared by the file locks
(:mod:`.locks`) and labgrid's places (:mod:`device_harness.labgrid.place_lock`)."""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tinyfarm.errors import DeviceError


def file_stem(device: str, key: str) -> str:
    """A lock or holder-note file name: the device's name (readable) and a digest of its key."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in device)[:40]
    return f"{safe}-{digest}"


def this_command() -> str:
    """This process's command line, as a holder note records it."""
    return " ".join([Path(sys.argv[0]).name] + sys.argv[1:])[:200]


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
