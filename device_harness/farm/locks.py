"""Exclusive, cross-process device locks: two runs, two pytest workers, never one port.

Each device identity (see :meth:`Farm.lock_key`) maps to one lock file; the lock is an OS file
lock (``filelock``), so the kernel releases it when the holder dies, even by ``kill -9`` — no stale
locks to clean. Beside it a small JSON note says who holds it (pid, host, command, since), for
``tinyfarm farm status`` and for the one-line error a waiting user sees.

Where: ``$TINYFARM_LOCK_DIR``, else the farm file's ``lock_dir``, else ``~/.cache/tinyfarm/locks``.
All users of one device must agree on the folder (it is per user by default; point
``lock_dir`` at a shared folder on a multi-user bench).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import filelock

from tinyfarm.atomic_files import write_text

from .lock_holder import DeviceBusy, Holder, file_stem, this_command

if TYPE_CHECKING:
    from .inventory import DeviceSpec, Farm

DEFAULT_LOCK_DIR = Path("~/.cache/tinyfarm/locks")


def lock_dir(farm_lock_dir: str | None = None) -> Path:
    chosen = os.environ.get("TINYFARM_LOCK_DIR") or farm_lock_dir or str(DEFAULT_LOCK_DIR)
    path = Path(os.path.expanduser(chosen))
    path.mkdir(parents=True, exist_ok=True)
    return path


class DeviceLock:
    """An exclusive lock on one device identity; a context manager.

    ``timeout=None`` waits forever, ``0`` tries once. ``acquired_at``/``released_at`` are the
    wall-clock moments the lock was really held (taken after acquiring, before releasing), so
    hold intervals of different processes can be compared.
    """

    def __init__(self, key: str, device: str, directory: Path, command: str | None = None):
        self.key = key
        self.device = device
        self.path = directory / f"{file_stem(device, key)}.lock"
        self.info_path = self.path.with_suffix(".holder.json")
        self.command = command or this_command()
        self._lock = filelock.FileLock(str(self.path), thread_local=False)
        self.acquired_at: float | None = None
        self.released_at: float | None = None

    def acquire(self, timeout: float | None = None) -> None:
        try:
            self._lock.acquire(timeout=-1 if timeout is None else timeout, poll_interval=0.05)
        except filelock.Timeout:
            holder = self.holder()
            who = holder.describe() if holder else "another process"
            raise DeviceBusy(f"device {self.device!r} is in use by {who}") from None
        self.acquired_at = time.time()
        note = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                "device": self.device, "since": self.acquired_at, "key": self.key}
        write_text(self.info_path, json.dumps(note), durable=False)

    def release(self) -> None:
        if not self._lock.is_locked:
            return
        self.released_at = time.time()
        try:
            self.info_path.unlink()
        except FileNotFoundError:
            pass
        self._lock.release()

    @property
    def is_locked(self) -> bool:
        return self._lock.is_locked

    def holder(self) -> Holder | None:
        """Who holds the lock now, from its note; None when it is free or the note is stale."""
        try:
            note = json.loads(self.info_path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return Holder(pid=note["pid"], host=note["host"], command=note["command"],
                      device=note["device"], since=note["since"])

    def probe(self) -> Holder | None:
        """Non-blocking: None when the device is free now, else its holder (maybe unknown pid)."""
        if self._lock.is_locked:  # held by this very process
            return self.holder()
        probe = filelock.FileLock(str(self.path), thread_local=False)
        try:
            probe.acquire(timeout=0)
        except filelock.Timeout:
            return self.holder() or Holder(0, "?", "unknown", self.device, time.time())
        probe.release()
        return None

    def __enter__(self) -> "DeviceLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def device_lock(farm: "Farm", spec: "DeviceSpec", directory: Path, command: str | None = None):
    """The lock of one farm device: a file lock here, or its place on the labgrid coordinator
    (:class:`device_harness.labgrid.place_lock.PlaceLock`, the same interface)."""
    if spec.place is not None:
        from device_harness.labgrid.place_lock import PlaceLock  # noqa: PLC0415

        return PlaceLock(farm.labgrid_address, farm.place_filters(spec), spec.name, directory,
                         command)
    return DeviceLock(farm.lock_key(spec), spec.name, directory, command)


def lock_first_free(farm: "Farm", candidates: Sequence["DeviceSpec"], *, wait_s: float | None = 0.0,
                    command: str | None = None) -> tuple["DeviceSpec", DeviceLock]:
    """The one way to take a device: the first of ``candidates`` whose lock is free, held.

    Polls every 0.1 s for ``wait_s`` seconds (None: forever, 0: one try each), then raises
    DeviceBusy naming the holder(s). A single labgrid device waits in the coordinator's
    reservation queue instead. The farm runner, ``--device NAME --farm`` and the pytest
    plugin all take their devices here.
    """
    directory = lock_dir(farm.spec.lock_dir)
    if len(candidates) == 1 and candidates[0].place is not None:  # wait in labgrid's queue
        lock = device_lock(farm, candidates[0], directory, command)
        lock.acquire(timeout=wait_s)
        return candidates[0], lock
    deadline = None if wait_s is None else time.monotonic() + wait_s
    while True:
        busy = []
        for spec in candidates:
            lock = device_lock(farm, spec, directory, command)
            try:
                lock.acquire(timeout=0)
            except DeviceBusy as exc:
                busy.append(str(exc))
                continue
            return spec, lock
        if deadline is not None and time.monotonic() >= deadline:
            raise DeviceBusy(busy[0] if len(busy) == 1 else
                             f"every device matching is in use: {'; '.join(busy)}")
        time.sleep(0.1)
