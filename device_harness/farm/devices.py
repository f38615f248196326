"""Farm device names in every ``--device``: a resolver for :mod:`device_harness.devices`.

``tinyfarm bench model.tflite --farm farm.yaml --device twin-b`` (or ``TINYFARM_FARM=farm.yaml``)
resolves ``twin-b`` to that entry's backend; a label (``--device ci``) takes the first free
device carrying it. The returned backend holds the device's farm lock from ``start()`` to
``stop()``, so a single command never uses a device a farm run or a pytest worker is using: it
stops with one line naming the holder (``--device-wait``/``TINYFARM_LOCK_WAIT`` seconds to wait
instead; default 0).
"""

from __future__ import annotations

import os
import time
from typing import Any

from tinyfarm.errors import DeviceError

from device_harness.backends.base import Backend
from device_harness.devices import register_resolver

from .inventory import DeviceSpec, Farm, load_farm
from .locks import DeviceBusy, DeviceLock, lock_dir


class FarmBackend(Backend):
    """A farm entry's backend plus its cross-process lock (held while started)."""

    def __init__(self, farm: Farm, candidates: list[DeviceSpec], wait_s: float = 0.0):
        super().__init__()
        self.farm, self.candidates, self.wait_s = farm, candidates, wait_s
        self.spec: DeviceSpec = candidates[0]
        self.name = f"farm:{self.spec.name}"
        self.inner: Backend | None = None
        self.lock: DeviceLock | None = None

    def _take_lock(self) -> None:
        directory = lock_dir(self.farm.spec.lock_dir)
        deadline = time.monotonic() + self.wait_s
        while True:
            busy = []
            for spec in self.candidates:
                lock = DeviceLock(self.farm.lock_key(spec), spec.name, directory)
                try:
                    lock.acquire(timeout=0)
                except DeviceBusy as exc:
                    busy.append(str(exc))
                    continue
                self.lock, self.spec = lock, spec
                self.name = f"farm:{spec.name}"
                return
            if time.monotonic() >= deadline:
                raise DeviceBusy(busy[0] if len(busy) == 1 else
                                 f"every device matching is in use: {'; '.join(busy)}")
            time.sleep(0.1)

    def start(self) -> str:
        from .connect import backend_for
        if self.lock is None:
            self._take_lock()
        try:
            if self.inner is None:
                self.inner = backend_for(self.farm, self.spec)
            self.url = self.inner.start()
        except BaseException:
            self.stop()
            raise
        self.profile, self.baud = self.inner.profile, self.inner.baud
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

    def restart(self) -> str:
        if self.inner is None or self.lock is None:
            return self.start()
        self.url = self.inner.restart()
        return self.url

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
        from device_harness.devices import known_devices
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
