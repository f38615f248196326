"""The Backend interface: something that gives you a pyserial URL to a device speaking the protocol.

Implementations: the TFLM twin (:mod:`.twin`), QEMU/Renode emulators and physical boards (firmware
backends), farm devices. A backend owns the device's lifetime; the protocol client is separate:

    with TwinBackend(board="stm32f4-discovery") as backend:      # start() on enter, stop() on exit
        with DeviceClient.open(backend.url, baud=backend.baud) as dev:
            dev.hello()
        backend.restart()                                         # after a fault, like a reset button

Subclasses implement :meth:`start` and :meth:`stop`; :meth:`restart` defaults to stop + start.
"""

from __future__ import annotations

import abc
import subprocess
from typing import Any

from device_harness.boards import BoardProfile



def stop_process(proc: "subprocess.Popen", timeout: float = 5.0) -> None:
    """SIGTERM, wait, then SIGKILL: an emulator or twin never outlives the backend that started it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Backend(abc.ABC):
    """A device the harness can talk to. ``name`` identifies it (e.g. ``twin``, ``qemu:fw.elf``)."""

    name: str = "backend"
    #: the board this backend is (or emulates); None when unknown (a bare serial URL)
    profile: BoardProfile | None = None
    #: the serial line rate when it is known and real (used to scale timeouts); None = unknown/unpaced
    baud: int | None = None

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

    @property
    def running(self) -> bool:
        return self.url is not None

    def client(self, **kwargs: Any):
        """A :class:`~device_harness.client.DeviceClient` on this backend's URL (started if needed)."""
        from device_harness.client import DeviceClient  # noqa: PLC0415

        if self.url is None:
            self.start()
        return DeviceClient.open(self.url, baud=self.baud, **kwargs)

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
