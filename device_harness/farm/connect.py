"""Bring a farm device up: its backend (the harness's twin/QEMU/Renode/board drivers) in a
:class:`~device_harness.session.DeviceSession`, the same one every tinyfarm command uses.

The farm adds nothing to the drivers: a farm entry is translated into the same ``--device`` string
and options every tinyfarm command resolves (:func:`device_harness.device_registry.resolve_device`), so a
device behaves the same in ``farm run``, in pytest and in ``tinyfarm bench --device``.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from device_harness.backends.base import Backend
from device_harness.client import DeviceClient
from device_harness.device_registry import resolve_device
from device_harness.session import DeviceSession
from tinyfarm.errors import DeviceError

from .device_names import backend_for
from .inventory import DeviceSpec, Farm
from .measure_job import measure
from .scheduler import ModelRef, RunOptions


class FarmDevice(DeviceSession):
    """A farm entry as a device session (backend started, link open, HELLO done once opened).

    Device paths are opened exclusively, so a port another program holds is reported, not shared.
    """

    def __init__(self, farm: Farm | None, spec: Any, backend: Backend | None = None):
        self.farm, self.spec = farm, spec
        super().__init__(backend or backend_for(farm, spec), name=spec.name, exclusive=True)

    def measure(self, model: ModelRef, options: RunOptions) -> dict[str, Any]:
        """One farm job on this device: the results-store columns (see :mod:`.measure_job`)."""
        self.backend.check()  # e.g. a labgrid place whose exporter has gone since the last job
        metrics = measure(self, model, options)
        place = getattr(self.backend, "place", None)
        if place:  # a labgrid device selected by tags: which place did the work
            metrics["labgrid_place"] = place
        return metrics


class DirectDevice(FarmDevice):
    """A ``--device`` value without a farm file (``twin``, ``qemu:fw.elf``, a URL)."""

    def __init__(self, selector: str):
        backend = resolve_device(selector)
        spec = SimpleNamespace(name=selector, backend=selector.split(":")[0],
                               board=backend.profile.name if backend.profile else None, labels=())
        super().__init__(None, spec, backend)


def probe_device(farm: Farm, spec: DeviceSpec, timeout: float) -> dict[str, Any]:
    """Bring a device up, HELLO, shut it down; HELLO's fields. Bounded by ``timeout`` seconds."""
    device = FarmDevice(farm, spec)
    done = threading.Event()
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            device.open()
            result["info"] = device.info.as_dict()
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
        client = DeviceClient.open(url, baud=baud, exclusive=True, response_ms=int(timeout * 1000),
                                   retries=0)
        try:
            info = client.hello().as_dict()
            info["baud"] = baud
            return info
        except DeviceError as exc:
            last = exc
        finally:
            client.close()
    assert last is not None
    raise last
