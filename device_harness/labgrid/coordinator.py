"""The process's one session with a labgrid coordinator.

labgrid allows one client session per process, and its session is asyncio on gRPC; tinyfarm's
farm is threads. So the session lives on its own event loop in a daemon thread, and every call
from a worker thread is posted there and waited for with a timeout: a coordinator that goes away
mid-run is a :class:`CoordinatorLost` (retryable) naming the address, never a hang. A lost
session is dropped, so the next call connects again (a restarted coordinator is picked up).

The session's name on the coordinator is labgrid's own ``host/user``; a place tinyfarm acquires
shows it in ``labgrid-client who`` like any other user's.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from tinyfarm.errors import DeviceError

from . import require

CALL_TIMEOUT_S = 10.0
log = logging.getLogger(__name__)


class _LabgridRootRecords(logging.Filter):
    """labgrid's client logs to the root logger ("coordinator is unavailable: …"), which Python
    prints to stderr when nothing is configured — a second line next to tinyfarm's one-line
    error. Those records go to tinyfarm's log at DEBUG instead (``tinyfarm -vv`` shows them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "root" and "labgrid" in record.pathname.replace("\\", "/").split("/"):
            log.debug("labgrid: %s", record.getMessage())
            return False
        return True


logging.getLogger().addFilter(_LabgridRootRecords())


class CoordinatorLost(DeviceError):
    """The coordinator does not answer (stopped, unreachable, or the session broke)."""

    retryable = True


class CoordinatorRefused(DeviceError):
    """The coordinator answered no (an unknown place, a place someone else holds, ...)."""


@dataclass(frozen=True)
class Resource:
    """One exported resource as the coordinator last announced it."""

    path: tuple[str, str, str, str]     # exporter, group, class, name
    cls: str
    params: dict[str, Any]
    avail: bool
    acquired: str | None


@dataclass(frozen=True)
class Place:
    name: str
    tags: dict[str, str]
    matches: tuple[str, ...]
    acquired: str | None                 # "host/user" of the holder
    reservation: str | None
    resources: tuple[tuple[str, str, str, str], ...]   # paths of the acquired resources


class Coordinator:
    """A session with the coordinator at ``address`` (use :func:`coordinator`, which shares it)."""

    def __init__(self, address: str):
        require()
        from labgrid.remote.client import ClientSession  # noqa: PLC0415 - optional extra

        self.address = address
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="labgrid-session",
                                        daemon=True)
        self._thread.start()

        async def make() -> Any:
            return ClientSession(address, self._loop)

        self._session = self._run(make(), "connect", CALL_TIMEOUT_S)
        try:
            self._run(self._session.start(), "connect", CALL_TIMEOUT_S)
        except Exception as exc:
            self.close()
            detail = _detail(exc)
            hint = ("is labgrid-coordinator running there? the farm file's labgrid.coordinator "
                    "or $LG_COORDINATOR names it") if "Could not connect" in detail else detail
            raise CoordinatorLost(f"cannot reach the labgrid coordinator at {address} "
                                  f"({hint})") from None
        self.name = f"{self._session.gethostname()}/{self._session.getuser()}"

    # -- plumbing ----------------------------------------------------------------------------------
    def _run(self, awaitable: Awaitable[Any], what: str, timeout: float) -> Any:
        async def wrapped() -> Any:
            return await awaitable

        future = asyncio.run_coroutine_threadsafe(wrapped(), self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise CoordinatorLost(f"the labgrid coordinator at {self.address} did not answer "
                                  f"{what} within {timeout:g} s") from None

    @property
    def alive(self) -> bool:
        session = getattr(self, "_session", None)
        return session is not None and not session.stopping.is_set() and self._loop.is_running()

    def call(self, what: str, make: Callable[[Any, Any], Awaitable[Any]],
             timeout: float = CALL_TIMEOUT_S) -> Any:
        """Run ``make(session, pb2)`` on the session's loop; gRPC refusals become one line."""
        if not self.alive:
            raise CoordinatorLost(f"lost the labgrid coordinator at {self.address}")
        import grpc  # noqa: PLC0415
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2  # noqa: PLC0415

        async def run() -> Any:
            result = await make(self._session, pb2)
            await self._session.sync_with_coordinator()
            return result

        try:
            result = self._run(run(), what, timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                              grpc.StatusCode.DEADLINE_EXCEEDED):
                raise CoordinatorLost(f"lost the labgrid coordinator at {self.address} "
                                      f"({what}: {exc.details()})") from None
            raise CoordinatorRefused(f"labgrid coordinator: {what}: {exc.details()}") from None
        if not self.alive:
            raise CoordinatorLost(f"lost the labgrid coordinator at {self.address} ({what})")
        return result

    def snapshot(self) -> tuple[dict[str, Place], dict[tuple[str, str, str, str], Resource]]:
        """Places and resources as the session last heard them (read on the session's loop)."""
        if not self.alive:
            raise CoordinatorLost(f"lost the labgrid coordinator at {self.address}")

        async def read() -> Any:
            await self._session.sync_with_coordinator()  # every update sent so far is in
            places = {name: Place(name=name, tags=dict(p.tags), matches=tuple(repr(m) for m in p.matches),
                                  acquired=p.acquired, reservation=p.reservation,
                                  resources=tuple(tuple(r) for r in p.acquired_resources))
                      for name, p in self._session.places.items()}
            resources = {}
            for exporter, groups in self._session.resources.items():
                for group, entries in groups.items():
                    for rname, entry in entries.items():
                        if "cls" not in entry.data:  # being removed (its exporter left)
                            continue
                        path = (exporter, group, entry.cls, rname)
                        resources[path] = Resource(path, entry.cls, dict(entry.params),
                                                   bool(entry.avail), entry.acquired)
            return places, resources

        return self._run(read(), "read places", CALL_TIMEOUT_S)

    # -- the calls tinyfarm makes ------------------------------------------------------------------
    def reserve(self, filters: dict[str, str], prio: int = 0) -> str:
        async def make(s: Any, pb2: Any) -> Any:
            group = pb2.Reservation.Filter(filter=filters)
            return await s.stub.CreateReservation(
                pb2.CreateReservationRequest(filters={"main": group}, prio=prio))
        return self.call("reserve", make).reservation.token

    def poll(self, token: str) -> tuple[str, str | None]:
        """The reservation's state name (waiting, allocated, acquired, expired, invalid) and the
        place allocated to it, if any."""
        from labgrid.remote.common import ReservationState  # noqa: PLC0415

        async def make(s: Any, pb2: Any) -> Any:
            return await s.stub.PollReservation(pb2.PollReservationRequest(token=token))
        res = self.call("poll reservation", make).reservation
        places = [name for group in res.allocations.values() for name in group.split()] \
            if res.allocations else []
        return ReservationState(res.state).name, (places[0] if places else None)

    def cancel(self, token: str) -> None:
        async def make(s: Any, pb2: Any) -> Any:
            return await s.stub.CancelReservation(pb2.CancelReservationRequest(token=token))
        self.call("cancel reservation", make)

    def acquire(self, place: str) -> None:
        async def make(s: Any, pb2: Any) -> Any:
            return await s.stub.AcquirePlace(pb2.AcquirePlaceRequest(placename=place))
        self.call(f"acquire {place}", make)

    def release(self, place: str, from_user: str | None = None) -> None:
        """Release ``place``; with ``from_user``, only if that user still holds it."""
        async def make(s: Any, pb2: Any) -> Any:
            request = pb2.ReleasePlaceRequest(placename=place)
            if from_user:
                request.fromuser = from_user
            return await s.stub.ReleasePlace(request)
        self.call(f"release {place}", make)

    def add_place(self, place: str) -> None:
        async def make(s: Any, pb2: Any) -> Any:
            return await s.stub.AddPlace(pb2.AddPlaceRequest(name=place))
        self.call(f"add place {place}", make)

    def add_match(self, place: str, pattern: str) -> None:
        async def make(s: Any, pb2: Any) -> Any:
            return await s.stub.AddPlaceMatch(pb2.AddPlaceMatchRequest(placename=place,
                                                                       pattern=pattern))
        self.call(f"add match {pattern} to {place}", make)

    def set_tags(self, place: str, tags: dict[str, str]) -> None:
        async def make(s: Any, pb2: Any) -> Any:
            return await s.stub.SetPlaceTags(pb2.SetPlaceTagsRequest(placename=place, tags=tags))
        self.call(f"set tags of {place}", make)

    def close(self) -> None:
        session = getattr(self, "_session", None)
        if session is not None and self.alive:
            try:
                self._run(session.stop(), "stop", 2.0)
                self._run(session.close(), "stop", 2.0)
            except Exception:  # noqa: BLE001 - leaving anyway
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)


_SESSIONS: dict[str, Coordinator] = {}
_SESSIONS_LOCK = threading.Lock()


def coordinator(address: str) -> Coordinator:
    """The shared session with ``address``, connected on first use and again after a loss."""
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(address)
        if session is None or not session.alive:
            if session is not None:
                session.close()
            session = _SESSIONS[address] = Coordinator(address)
        return session


def disconnect(address: str) -> None:
    """Close the shared session with ``address`` (before stopping that coordinator)."""
    with _SESSIONS_LOCK:
        session = _SESSIONS.pop(address, None)
    if session is not None:
        session.close()


@atexit.register
def _close_all() -> None:
    with _SESSIONS_LOCK:
        for session in _SESSIONS.values():
            session.close()
        _SESSIONS.clear()


def _detail(exc: BaseException) -> str:
    details = getattr(exc, "details", None)
    text = details() if callable(details) else str(exc)
    return (text or type(exc).__name__).strip().splitlines()[0].removeprefix("Error: ")
