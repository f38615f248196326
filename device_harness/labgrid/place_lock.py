"""A labgrid place held through the coordinator, with the interface of a device file lock.

Taking it is labgrid's own sequence: create a reservation (filters: the place's name, or tags
that select places), wait for the coordinator to allocate a place to it, acquire that place, and
check that its resources are there and available — the coordinator lets a place be acquired while
its exporter is down, with nothing in it. Letting go releases the place and cancels the
reservation, on every exit path (``with``, an exception, SIGTERM's unwinding).

labgrid's locks have no lease: a holder that dies keeps the place. So before acquiring, tinyfarm
writes a holder note (pid, host, command, place, reservation) beside its file locks; ``farm
status`` shows it, and a later taker on the same host releases a place whose noted holder is dead
(only when the coordinator still shows it held by the same ``host/user``).
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

from tinyfarm import child_process
from tinyfarm.atomic_files import write_text
from tinyfarm.errors import DeviceError

from ..farm.lock_holder import DeviceBusy, Holder, file_stem, this_command
from . import place_key
from .coordinator import (
    Coordinator,
    CoordinatorLost,
    CoordinatorRefused,
    Place,
    coordinator,
)

POLL_S = 0.1
NOTE_PREFIX = "labgrid-"

# this process's held places by (key, device): the farm takes the lock, then builds the device's
# backend, which finds the place here. The device name is part of it: two farm entries may select
# places by the same tags, and each must find its own.
_HELD: dict[tuple[str, str], "PlaceLock"] = {}


def held(key: str, device: str) -> "PlaceLock | None":
    """The place this process holds for farm device ``device`` whose selector is ``key`` (see
    :func:`device_harness.labgrid.place_key`)."""
    return _HELD.get((key, device))


_LIVE: set["PlaceLock"] = set()      # locks with a reservation or a place outstanding
_CLOSING = threading.Event()         # the process is leaving: take nothing more
_IN_FLIGHT = threading.Condition()   # guards _in_flight[0]: acquisitions under way
_in_flight = [0]


class Leaving(DeviceError):
    """tinyfarm is exiting: no place is taken any more."""


@atexit.register
def _release_all() -> None:
    """However tinyfarm leaves (SIGTERM unwinds the main thread while farm workers, daemon
    threads, still hold places or are taking one): stop taking, let acquisitions under way finish
    (each then gives its place back), give every place back and cancel every reservation. Runs
    before the coordinator sessions close (atexit is last-in, first-out)."""
    _CLOSING.set()
    with _IN_FLIGHT:  # each sees _CLOSING within a poll (0.1 s) or when its call returns
        _IN_FLIGHT.wait_for(lambda: _in_flight[0] == 0, timeout=5.0)
    for lock in list(_LIVE):
        try:
            lock.release()
        except Exception:  # noqa: BLE001 - leaving anyway; the next taker's stale check remains
            pass


class PlaceUnusable(DeviceError):
    """The place was acquired but cannot be used: no resources (exporter down) or none available."""


def describe_selector(filters: dict[str, str]) -> str:
    if set(filters) == {"name"}:
        return f"place {filters['name']}"
    return "a place with " + ", ".join(f"{k}={v}" for k, v in sorted(filters.items()))


class PlaceLock:
    """Hold one place matching ``filters`` on the coordinator at ``address``; a context manager.

    ``timeout=None`` waits forever (in the coordinator's queue, by priority and age), ``0`` tries
    once. ``acquired_at``/``released_at`` are the wall-clock moments the place was really held.
    """

    def __init__(self, address: str, filters: dict[str, str], device: str, directory: Path,
                 command: str | None = None):
        self.address, self.filters, self.device = address, dict(filters), device
        self.directory = directory
        self.key = place_key(address, self.filters)
        self.command = command or this_command()
        self.place: str | None = None
        self.token: str | None = None
        self.acquired_at: float | None = None
        self.released_at: float | None = None
        self._session: Coordinator | None = None

    # -- notes -------------------------------------------------------------------------------------
    def _note_path(self, place: str) -> Path:
        return self.directory / f"{NOTE_PREFIX}{file_stem(place, f'{self.address}|{place}')}.holder.json"

    def _notes(self) -> Iterator[tuple[Path, dict]]:
        for path in self.directory.glob(f"{NOTE_PREFIX}*.holder.json"):
            try:
                note = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(note, dict) and note.get("coordinator") == self.address:
                yield path, note

    def _release_stale(self, session: Coordinator) -> None:
        """Release places this host's dead tinyfarm processes still hold (no lease in labgrid)."""
        places, _ = session.snapshot()
        here = socket.gethostname()
        for path, note in self._notes():
            if note.get("host") != here or child_process.pid_alive(int(note.get("pid", 0))):
                continue
            place = places.get(note.get("place", ""))
            if place is not None and place.acquired == note.get("user"):
                try:
                    session.release(place.name, from_user=note["user"])
                except CoordinatorRefused:
                    pass
            if note.get("token"):
                try:
                    session.cancel(note["token"])
                except CoordinatorRefused:
                    pass
            path.unlink(missing_ok=True)

    # -- the lock ----------------------------------------------------------------------------------
    def acquire(self, timeout: float | None = None) -> None:
        with _IN_FLIGHT:
            if _CLOSING.is_set():
                raise Leaving("tinyfarm is exiting: no labgrid place is taken")
            _in_flight[0] += 1
        try:
            self._acquire(timeout)
        finally:
            with _IN_FLIGHT:
                _in_flight[0] -= 1
                _IN_FLIGHT.notify_all()

    def _acquire(self, timeout: float | None) -> None:
        session = self._session = coordinator(self.address)
        self._release_stale(session)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if _CLOSING.is_set():
                raise Leaving("tinyfarm is exiting: no labgrid place is taken")
            self.token = session.reserve(self.filters)
            _LIVE.add(self)
            try:
                place = self._wait_for_allocation(session, deadline)
                if self._take(session, place):
                    if _CLOSING.is_set():  # taken while the process was leaving: give it back
                        self.release()
                        raise Leaving("tinyfarm is exiting: no labgrid place is taken")
                    return
            except BaseException:
                self._cancel_reservation()
                raise
            self._cancel_reservation()  # someone took the place outside reservations: queue again
            if deadline is not None and time.monotonic() >= deadline:
                raise DeviceBusy(self._busy_message(session))
            time.sleep(POLL_S)

    def _wait_for_allocation(self, session: Coordinator, deadline: float | None) -> str:
        while True:
            if _CLOSING.is_set():
                raise Leaving("tinyfarm is exiting: no labgrid place is taken")
            state, place = session.poll(self.token or "")
            if state in ("allocated", "acquired") and place:
                return place
            if state in ("expired", "invalid"):
                raise DeviceError(f"{self.device}: labgrid reservation for "
                                  f"{describe_selector(self.filters)} became {state}")
            if deadline is not None and time.monotonic() >= deadline:
                raise DeviceBusy(self._busy_message(session))
            time.sleep(POLL_S)

    def _take(self, session: Coordinator, place: str) -> bool:
        """Acquire the allocated place and check it; False when another client beat us to it."""
        note = {"pid": os.getpid(), "host": socket.gethostname(), "user": session.name,
                "command": self.command, "device": self.device, "since": time.time(),
                "place": place, "token": self.token, "coordinator": self.address}
        note_path = self._note_path(place)
        write_text(note_path, json.dumps(note), durable=False)
        try:
            session.acquire(place)
        except CoordinatorRefused:
            note_path.unlink(missing_ok=True)
            return False
        except BaseException:
            note_path.unlink(missing_ok=True)
            raise
        self.place, self.acquired_at = place, time.time()
        _HELD[(self.key, self.device)] = self
        try:
            check_resources(session, place)
        except BaseException:
            self.release()
            raise
        return True

    def _cancel_reservation(self) -> None:
        token, self.token = self.token, None
        if self.place is None:
            _LIVE.discard(self)
        if token and self._session is not None and self._session.alive:
            try:
                self._session.cancel(token)
            except DeviceError:
                pass

    def release(self) -> None:
        """Release the place and cancel the reservation; a lost coordinator is not an error here
        (it no longer holds anything for us)."""
        place, self.place = self.place, None
        if _HELD.get((self.key, self.device)) is self:
            del _HELD[(self.key, self.device)]
        if place is not None:
            self.released_at = time.time()
            session = self._session
            try:
                if session is not None and session.alive:
                    session.release(place, from_user=session.name)
            except DeviceError:
                pass
            finally:
                self._note_path(place).unlink(missing_ok=True)
        self._cancel_reservation()

    @property
    def is_locked(self) -> bool:
        return self.place is not None

    # -- who holds it ------------------------------------------------------------------------------
    def _matching(self, places: dict[str, Place]) -> list[Place]:
        tags = {k: v for k, v in self.filters.items() if k != "name"}
        return [p for p in places.values()
                if self.filters.get("name", p.name) == p.name
                and all(p.tags.get(k) == v for k, v in tags.items())]

    def _holder_of(self, place: Place) -> Holder:
        for _, note in self._notes():
            if note.get("place") == place.name and note.get("user") == place.acquired:
                return Holder(pid=int(note["pid"]), host=str(note["host"]),
                              command=str(note["command"]), device=self.device,
                              since=float(note["since"]))
        host, _, user = (place.acquired or "?/?").partition("/")
        return Holder(pid=0, host=host, command=f"labgrid user {user}", device=self.device,
                      since=time.time())

    def holder(self) -> Holder | None:
        return self.probe()

    def probe(self) -> Holder | None:
        """None when a matching place is free now, else the holder of the first matching one."""
        places, _ = coordinator(self.address).snapshot()
        matching = self._matching(places)
        if not matching:
            raise DeviceError(f"{self.device}: no labgrid place matches "
                              f"{describe_selector(self.filters)} on {self.address}")
        if any(p.acquired is None and p.reservation is None for p in matching):
            return None
        held = [p for p in matching if p.acquired] or matching
        return self._holder_of(held[0]) if held[0].acquired else Holder(
            0, "?", f"reserved ({held[0].reservation})", self.device, time.time())

    def _busy_message(self, session: Coordinator) -> str:
        try:
            places, _ = session.snapshot()
        except CoordinatorLost as exc:
            return str(exc)
        matching = self._matching(places)
        if not matching:
            return (f"{self.device}: no labgrid place matches {describe_selector(self.filters)} "
                    f"on {self.address}")
        who = "; ".join(f"{p.name} by {self._holder_of(p).describe()}" if p.acquired
                        else f"{p.name} reserved" for p in matching)
        return f"device {self.device!r} ({describe_selector(self.filters)}) is in use: {who}"

    def __enter__(self) -> "PlaceLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def check_resources(session: Coordinator, place: str) -> None:
    """Raise :class:`PlaceUnusable` unless every resource of the acquired place is announced and
    available (a place acquired while its exporter is down has none)."""
    places, resources = session.snapshot()
    info = places.get(place)
    if info is None:
        raise PlaceUnusable(f"labgrid place {place} no longer exists")
    if not info.resources:
        raise PlaceUnusable(f"labgrid place {place} has no resources (is its exporter running? "
                            f"matches: {', '.join(info.matches) or 'none'})")
    for path in info.resources:
        entry = resources.get(path)
        if entry is None:
            raise PlaceUnusable(f"labgrid place {place}: exporter {path[0]} is gone "
                                f"({'/'.join(path)} no longer announced)")
        if not entry.avail:
            raise PlaceUnusable(f"labgrid place {place}: {'/'.join(path)} is not available "
                                f"on exporter {path[0]}")
