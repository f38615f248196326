"""A labgrid place as a harness backend: ``--device labgrid:PLACE`` and ``backend: labgrid``.

The place's ``NetworkSerialPort`` (ser2net on the lab host, published by its exporter) becomes
the pyserial URL the device session opens — ``rfc2217://HOST:PORT?ign_set_control`` (ser2net on a
pty does not answer RFC 2217's control-line requests; labgrid passes the same option) or
``socket://HOST:PORT`` for ``protocol: raw``. From there on it is the same link, client and
protocol as every other device.

While started, a watcher checks the place every :data:`WATCH_S` seconds: when the coordinator is
lost or the exporter's resources vanish, the session's line is aborted, so the running call fails
at once (retryable) instead of waiting for a timeout; :meth:`restart` then says why the place
cannot be used. A watcher matters because an exporter killed with ``-9`` leaves its ser2net
serving: without it, the job would go on through a port the lab no longer accounts for.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

from device_harness.backends.base import Backend
from device_harness.boards import get_board
from device_harness.device_registry import register_device
from tinyfarm.errors import DeviceError

from . import coordinator_address, selector_filters
from .coordinator import Coordinator, coordinator
from .place_lock import PlaceLock, PlaceUnusable, check_resources

WATCH_S = 0.5


class PlaceLost(DeviceError):
    """The held place stopped being usable mid-job (exporter or coordinator gone)."""

    retryable = True


def serial_url(params: dict[str, Any], place: str) -> str:
    """The pyserial URL of a ``NetworkSerialPort``'s parameters."""
    host, port = params.get("host"), params.get("port")
    if not host or not port:
        raise PlaceUnusable(f"labgrid place {place}: NetworkSerialPort without host/port")
    protocol = params.get("protocol", "rfc2217")
    if protocol == "raw":
        return f"socket://{host}:{port}"
    if protocol == "rfc2217":
        return f"rfc2217://{host}:{port}?ign_set_control"
    raise PlaceUnusable(f"labgrid place {place}: NetworkSerialPort protocol {protocol!r} "
                        "(use rfc2217 or raw)")


class LabgridBackend(Backend):
    """A place on a labgrid coordinator. With ``lock`` (already held: the farm took it) the place
    is used as is; without, :meth:`start` takes it and :meth:`stop` lets it go."""

    def __init__(self, place: str | None = None, *, tags: dict[str, str] | None = None,
                 address: str | None = None, lock: PlaceLock | None = None,
                 board: str | None = None, wait_s: float | None = 0.0,
                 lock_dir: Path | None = None):
        super().__init__()
        self.address = coordinator_address(address)
        self.filters = selector_filters(place, tags)
        self.lock, self._own_lock = lock, lock is None
        self.wait_s, self._lock_dir = wait_s, lock_dir
        self.profile = get_board(board) if board else None
        self.name = f"labgrid:{place or self.filters}"
        self.lost_callback: Callable[[str], None] | None = None
        self.lost_reason: str | None = None
        self._stop_watch = threading.Event()
        self._watcher: threading.Thread | None = None
        self._session: Coordinator | None = None

    @property
    def place(self) -> str | None:
        return self.lock.place if self.lock is not None else None

    def start(self) -> str:
        if self.lock is None or not self.lock.is_locked:
            from device_harness.farm.locks import lock_dir  # noqa: PLC0415

            self.lock = PlaceLock(self.address, self.filters, self.name,
                                  self._lock_dir or lock_dir())
            self._own_lock = True
            self.lock.acquire(timeout=self.wait_s)
        try:
            self.url = self._serial_url()
        except BaseException:
            self.stop()
            raise
        self.name = f"labgrid:{self.place}"
        self.lost_reason = None
        self._start_watch()
        return self.url

    def _serial_url(self) -> str:
        place = self.place or ""
        session = self._session = coordinator(self.address)
        check_resources(session, place)
        places, resources = session.snapshot()
        ports = [resources[p] for p in places[place].resources
                 if p in resources and resources[p].cls == "NetworkSerialPort"]
        if not ports:
            raise PlaceUnusable(f"labgrid place {place} has no NetworkSerialPort (tinyfarm talks "
                                "to a device through its serial port)")
        return serial_url(ports[0].params, place)

    def _start_watch(self) -> None:
        self._stop_watch.clear()
        self._watcher = threading.Thread(target=self._watch, name=f"watch-{self.place}",
                                         daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stop_watch.wait(WATCH_S):
            reason = self.problem()
            if reason:
                self.lost_reason = reason
                if self.lost_callback is not None:
                    self.lost_callback(reason)
                return

    def problem(self) -> str | None:
        """Why the held place cannot be used now, or None. The session the place was taken on
        is asked (not a new one): a place does not outlive the coordinator session holding it."""
        session = self._session
        if session is None or not session.alive:
            return f"lost the labgrid coordinator at {self.address}"
        try:
            check_resources(session, self.place or "")
        except DeviceError as exc:
            return str(exc)
        return None

    def check(self) -> None:
        reason = self.lost_reason or self.problem()
        if reason:
            raise PlaceLost(reason)

    def restart(self) -> str:
        """A place is not power-cycled here (labgrid's power drivers are the lab's business);
        the line is reopened after checking the place is still usable."""
        self.check()
        self._stop_watch.set()
        self.url = self._serial_url()
        self._start_watch()
        return self.url

    def stop(self) -> None:
        self._stop_watch.set()
        self.url = None
        if self._own_lock and self.lock is not None:
            self.lock.release()

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(coordinator=self.address, place=self.place)
        return d


def _labgrid(arg: str | None, **options: Any) -> Backend:
    """``--device labgrid:PLACE`` (or ``labgrid:tag=value,tag=value``), coordinator from
    ``$LG_COORDINATOR``; ``--device-wait`` seconds to wait for the place."""
    if not arg:
        raise DeviceError("--device labgrid:PLACE (or labgrid:tag=value,...) names the place")
    if "=" in arg:
        tags = dict(item.split("=", 1) for item in arg.split(",") if item)
        place = None
    else:
        place, tags = arg, None
    wait = options.get("device_wait")
    return LabgridBackend(place, tags=tags, board=options.get("board"),
                          wait_s=float(wait) if wait is not None else 0.0)


register_device("labgrid", _labgrid)
