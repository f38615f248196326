"""The Backend interface: something that gives you a pyserial URL to a device speaking the protocol.

Implementations: the TFLM twin (:mod:`.twin`), QEMU/Renode emulators and physical boards (firmware
backends), farm devices. A backend owns the device's lifetime, nothing else; the link and the
protocol are :class:`~device_harness.session.DeviceSession`'s, which starts and stops its backend:

    with DeviceSession(TwinBackend(board="stm32f4-discovery")) as session:
        session.info.board
        session.restart()                        # after a fault, like a reset button

Subclasses implement :meth:`start` and :meth:`stop`; :meth:`restart` defaults to stop + start.
A backend that runs a process starts it with :func:`tinyfarm.child_process.spawn` (it dies with
tinyfarm, even on SIGKILL) and keeps it in ``_proc``: ``pid`` names it (the watchdog kills it).
"""

from __future__ import annotations

import abc
import socket
import subprocess
from typing import Any, Callable

from device_harness.boards import BoardProfile
from tinyfarm import child_process


def stop_process(proc: "subprocess.Popen", timeout: float = 5.0) -> None:
    """SIGTERM, wait, then SIGKILL: an emulator or twin never outlives the backend that started it
    (and, started with :func:`tinyfarm.child_process.spawn`, never outlives tinyfarm either)."""
    child_process.stop(proc, timeout)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a process about to listen there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Backend(abc.ABC):
    """A device the harness can talk to. ``name`` identifies it (e.g. ``twin``, ``qemu:fw.elf``)."""

    name: str = "backend"
    #: the board this backend is (or emulates); None when unknown (a bare serial URL)
    profile: BoardProfile | None = None
    #: the serial line rate when it is known and real (used to scale timeouts); None = unknown/unpaced
    baud: int | None = None
    #: emulated instructions per second of the device's own clock (QEMU -icount, Renode's
    #: PerformanceInMips), so ticks convert to instructions; None for real boards and twins
    instructions_per_second: float | None = None
    #: set by the device session: a backend that learns its device is gone (a labgrid exporter
    #: that vanished) calls it with the reason, and the session aborts the call in progress
    lost_callback: "Callable[[str], None] | None" = None

    def __init__(self) -> None:
        self.url: str | None = None

    @abc.abstractmethod
    def start(self) -> str:
        """Bring the device up; return its pyserial URL (also stored in ``self.url``)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Shut the device down and release everything (idempotent)."""

    def restart(self) -> str:
        """Power-cycle / reset the device (after a fault); returns the (possibly new) URL."""
        self.stop()
        return self.start()

    def check(self) -> None:
        """Raise a (retryable) DeviceError when the device cannot be used now; called before each
        farm job. Most backends learn of trouble from the link itself: nothing to check."""

    @property
    def running(self) -> bool:
        return self.url is not None

    @property
    def pid(self) -> int | None:
        """The device's own process (a twin, an emulator), when this backend runs one."""
        proc = getattr(self, "_proc", None)
        return proc.pid if proc is not None else None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "board": self.profile.name if self.profile else None,
                "baud": self.baud}

    def __enter__(self) -> "Backend":
        if self.url is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} url={self.url}>"


class UrlBackend(Backend):
    """An already-running device reachable at a pyserial URL or device path (nothing to start)."""

    def __init__(self, url: str, *, baud: int | None = None, profile: BoardProfile | None = None) -> None:
        super().__init__()
        self._target = url
        self.name = url
        self.baud = baud
        self.profile = profile

    def start(self) -> str:
        self.url = self._target
        return self.url

    def stop(self) -> None:
        self.url = None

    def restart(self) -> str:
        return self.start()  # no way to reset a bare URL; reconnecting is all we can do
