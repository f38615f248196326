"""Farm entries as backends, and farm device names in every ``--device``.

:func:`backend_for` turns a farm entry into the harness backend it describes. A resolver for
:mod:`device_harness.device_registry` makes the names usable anywhere:

``tinyfarm bench model.tflite --farm farm.yaml --device twin-b`` (or ``TINYFARM_FARM=farm.yaml``)
resolves ``twin-b`` to that entry's backend; a label (``--device ci``) takes the first free
device carrying it. The returned backend holds the device's farm lock from ``start()`` to
``stop()``, so a single command never uses a device a farm run or a pytest worker is using: it
stops with one line naming the holder (``--device-wait``/``TINYFARM_LOCK_WAIT`` seconds to wait
instead; default 0).
"""

from __future__ import annotations

import os
from typing import Any

from device_harness.backends.base import Backend
from device_harness.boards import board_names, get_board
from device_harness.device_registry import known_devices, register_resolver, resolve_device
from tinyfarm.errors import ConfigError, DeviceError

from .inventory import DeviceSpec, Farm, load_farm
from .locks import lock_dir, lock_first_free


def backend_for(farm: Farm, spec: DeviceSpec):
    """The unstarted harness Backend for a farm entry."""
    board = spec.board
    if spec.place is not None:  # a labgrid place: the one this process holds, else its own take
        from device_harness.labgrid.backend import LabgridBackend
        from device_harness.labgrid.place_lock import held
        return LabgridBackend(spec.place.name, tags=spec.place.tags,
                              address=farm.labgrid_address, board=board,
                              lock=held(farm.lock_key(spec), spec.name),
                              lock_dir=lock_dir(farm.spec.lock_dir))
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


class FarmBackend(Backend):
    """A farm entry's backend plus its cross-process lock (held while started)."""

    def __init__(self, farm: Farm, candidates: list[DeviceSpec], wait_s: float = 0.0):
        super().__init__()
        self.farm, self.candidates, self.wait_s = farm, candidates, wait_s
        self.spec: DeviceSpec = candidates[0]
        self.name = f"farm:{self.spec.name}"
        self.inner: Backend | None = None
        self.lock: Any = None   # a DeviceLock, or a labgrid PlaceLock

    def _take_lock(self) -> None:
        self.spec, self.lock = lock_first_free(self.farm, self.candidates, wait_s=self.wait_s)
        self.name = f"farm:{self.spec.name}"

    def start(self) -> str:
        if self.lock is None:
            self._take_lock()
        try:
            if self.inner is None:
                self.inner = backend_for(self.farm, self.spec)
            self.inner.lost_callback = self.lost_callback
            self.url = self.inner.start()
        except BaseException:
            self.stop()
            raise
        self.profile, self.baud = self.inner.profile, self.inner.baud
        self.instructions_per_second = self.inner.instructions_per_second
        return self.url

    def stop(self) -> None:
        try:
            if self.inner is not None:
                self.inner.stop()
        finally:
            self.url = None
            if self.lock is not None:
                self.lock.release()
                self.lock = None

    def check(self) -> None:
        if self.inner is not None:
            self.inner.check()

    def restart(self) -> str:
        if self.inner is None or self.lock is None:
            return self.start()
        self.url = self.inner.restart()
        return self.url

    @property
    def pid(self) -> int | None:
        return self.inner.pid if self.inner is not None else None

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(farm=str(self.farm.path), device=self.spec.name, backend=self.spec.backend)
        return d


def resolve_farm_device(spec: str, **options: Any) -> Backend | None:
    """``spec`` as a device name or label of the farm file in ``options['farm']`` (or
    ``$TINYFARM_FARM``); None when there is no farm file or the name is not in it."""
    path = options.get("farm") or os.environ.get("TINYFARM_FARM")
    if not path:
        return None
    farm = load_farm(path)
    matches = farm.match(spec)
    if not matches:
        builtin = spec.partition(":")[0].lower() in known_devices()
        if options.get("farm") and not builtin:  # the user pointed at this farm: say what it has
            known = ", ".join(d.name for d in farm.devices)
            raise DeviceError(f"unknown device {spec!r}: not a device name or label in "
                              f"{farm.path} (devices: {known})")
        return None
    wait = options.get("device_wait")
    if wait is None:
        wait = float(os.environ.get("TINYFARM_LOCK_WAIT", "0") or 0)
    return FarmBackend(farm, matches, wait_s=float(wait))


register_resolver(resolve_farm_device)
