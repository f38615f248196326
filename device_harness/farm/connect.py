"""Bring a farm device up: its backend (the harness's twin/QEMU/Renode/board drivers), a protocol
client on the URL the backend hands back, and HELLO.

The farm adds nothing to the drivers: a farm entry is translated into the same ``--device`` string
and options every tinyfarm command resolves (:func:`device_harness.devices.resolve_device`), so a
device behaves the same in ``farm run``, in pytest and in ``tinyfarm bench --device``.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from types import SimpleNamespace
from typing import Any

from tinyfarm.errors import ConfigError, DeviceError

from .inventory import DeviceSpec, Farm
from .runner import ModelRef, RunOptions


def backend_for(farm: Farm, spec: DeviceSpec):
    """The unstarted harness Backend for a farm entry."""
    from device_harness.devices import resolve_device

    from device_harness.boards import board_names, get_board

    board = spec.board
    known_board = board if board in board_names() else None  # a board without a profile is fine
    if spec.connection is not None:  # attached: a board on a port, or an emulator already running
        conn = spec.connection
        if "://" not in conn.url and not os.path.exists(conn.url):
            raise DeviceError(f"cannot open {conn.url}: no such device")
        if spec.backend == "board":
            from device_harness.backends.board import BoardBackend
            baud = conn.baud or (get_board(known_board).baud if known_board else 115200)
            return BoardBackend(conn.url, baud=baud, board=known_board, target=conn.target,
                                probe=conn.probe)
        backend = resolve_device(conn.url, baud=conn.baud)
        if known_board:
            backend.profile = get_board(known_board)
        return backend
    launch = spec.launch
    if spec.backend == "twin":
        kwargs: dict[str, Any] = {"board": board}
        if launch is not None:
            kwargs.update(arena_bytes=launch.arena_bytes, baud=launch.pace_baud,
                          pace=launch.pace_baud is not None, tcp=launch.transport == "tcp")
        return resolve_device("twin", **kwargs)
    if spec.backend in ("qemu", "renode"):
        elf = farm.resolve_path(launch.elf) if launch is not None and launch.elf else None
        return resolve_device(f"{spec.backend}:{elf}" if elf else spec.backend, board=board)
    raise ConfigError(f"device {spec.name}: backend {spec.backend!r} needs connection.url")


class PortInUse(DeviceError):
    """Another program holds the port (exclusive lock): retrying now would not help."""

    transient = False


def _is_path(url: str) -> bool:
    return "://" not in url and not url.startswith("loop")


def connect_client(url: str, baud: int | None, name: str):
    """A DeviceClient on ``url``; device paths are opened exclusively (a port someone else holds
    open with a lock is reported, not shared)."""
    from device_harness.client import DeviceClient
    from device_harness.transports import open_port

    extra = {"exclusive": True} if _is_path(url) else {}
    try:
        port = open_port(url, baud=baud, **extra)
    except DeviceError as exc:
        text = str(exc)
        if "exclusively lock" in text or "Resource temporarily unavailable" in text:
            raise PortInUse(f"port {url} is already in use by another program") from None
        raise
    return DeviceClient(port, baud=baud, name=name)


class FarmDevice:
    """A farm entry brought up for a run: backend started, client connected, HELLO done."""

    def __init__(self, farm: Farm, spec: DeviceSpec):
        self.farm, self.spec = farm, spec
        self.backend = backend_for(farm, spec)
        self.client = None
        self.info: dict[str, Any] = {}
        self._client_lock = threading.Lock()

    @property
    def url(self) -> str | None:
        return self.backend.url

    def _connect(self, url: str) -> None:
        client = connect_client(url, self.backend.baud, f"{self.spec.name} ({url})")
        try:
            info = client.hello()
        except BaseException:
            client.close()
            raise
        with self._client_lock:
            self.client = client
        self.info = info.as_dict()

    def open(self) -> None:
        url = self.backend.start()
        try:
            self._connect(url)
        except BaseException:
            self.backend.stop()
            raise

    def close(self) -> None:
        with self._client_lock:
            client, self.client = self.client, None
        if client is not None:
            client.close()
        self.backend.stop()

    def restart(self) -> None:
        """Reset the device (a launched one is restarted, an attached one reconnected)."""
        with self._client_lock:
            client, self.client = self.client, None
        if client is not None:
            client.close()
        url = self.backend.restart()
        self._connect(url)

    def abort(self) -> None:
        """From the watchdog thread: make a call blocked on this device return with an error.

        Closing a file descriptor does not wake a thread blocked writing to it (a hung device
        stops draining its line), so a launched device's process is killed (its end of the pty
        goes away: the write fails) and a TCP link is shut down, before the port is closed. The
        worker then restarts the device as after any fault.
        """
        with self._client_lock:
            client = self.client
        proc = getattr(self.backend, "_proc", None)
        pid = getattr(self.backend, "pid", None) or getattr(proc, "pid", None)
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if client is not None:
            sock = getattr(client.port, "_socket", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            client.close()

    def measure(self, model: ModelRef, options: RunOptions) -> dict[str, Any]:
        from .measure_job import measure
        if self.client is None:
            raise DeviceError(f"{self.spec.name} is not connected")
        return measure(self.client, model, options)


class DirectDevice(FarmDevice):
    """A ``--device`` value without a farm file (``twin``, ``qemu:fw.elf``, a URL)."""

    def __init__(self, selector: str):
        from device_harness.devices import resolve_device
        self.farm = None
        self.backend = resolve_device(selector)
        profile = getattr(self.backend, "profile", None)
        self.spec = SimpleNamespace(name=selector, backend=selector.split(":")[0],
                                    board=profile.name if profile else None, labels=())
        self.client = None
        self.info = {}
        self._client_lock = threading.Lock()


def probe_device(farm: Farm, spec: DeviceSpec, timeout: float) -> dict[str, Any]:
    """Bring a device up, HELLO, shut it down; HELLO's fields. Bounded by ``timeout`` seconds."""
    device = FarmDevice(farm, spec)
    done = threading.Event()
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            device.open()
            result["info"] = device.info
        except BaseException as exc:  # noqa: BLE001
            result["error"] = exc
        finally:
            done.set()

    t = threading.Thread(target=work, daemon=True)
    t.start()
    if not done.wait(timeout):
        device.abort()
        done.wait(5)
        device.close()
        raise DeviceError(f"{spec.name}: no HELLO within {timeout:g} s")
    device.close()
    if "error" in result:
        raise result["error"]
    return result["info"]


COMMON_BAUDS = (115200, 921600)


def hello_url(url: str, timeout: float, bauds: tuple[int, ...] = COMMON_BAUDS) -> dict[str, Any]:
    """HELLO on a serial port found by discovery: short timeout, no retries, each common baud
    rate in turn; the port is opened exclusively so one in use elsewhere is reported, not
    disturbed."""
    last: Exception | None = None
    for baud in bauds:
        client = connect_client(url, baud, url)
        try:
            client.response_s = timeout
            client.retries = 0
            info = client.hello().as_dict()
            info["baud"] = baud
            return info
        except DeviceError as exc:
            last = exc
        finally:
            client.close()
    assert last is not None
    raise last
