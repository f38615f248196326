"""labgrid as tinyfarm's lab across hosts: places on a labgrid coordinator as tinyfarm devices.

One host's farm keeps its file locks and SQLite; a lab that has outgrown one host runs labgrid
(a coordinator, one exporter per lab host publishing serial ports through ser2net) and names
places in the farm file (``backend: labgrid``) or on the command line (``--device labgrid:PLACE``).

- :mod:`.coordinator` — the process's one session with a coordinator (labgrid allows one per
  process), every call bounded by a timeout so a lost coordinator is an error, never a hang;
- :mod:`.place_lock` — a place held through the coordinator (reserve by name or tags, wait,
  acquire, check its resources, release and cancel), with the same interface as a file lock;
- :mod:`.backend` — a held place as a harness backend: the serial URL of its ``NetworkSerialPort``,
  watched so a vanished exporter or coordinator aborts the job it was running;
- :mod:`.lab_setup` — places, matches and tags created from the farm file (a lab described once).

labgrid is an optional extra (``pip install 'tinyfarm[labgrid]'``): :func:`require` says so in one
line when it is missing.
"""

from __future__ import annotations

import os

from tinyfarm.errors import ConfigError, DeviceError

DEFAULT_COORDINATOR = "127.0.0.1:20408"


def require() -> None:
    """Import labgrid's client or stop with the one line that says how to install it. (gRPC's
    fork handlers are already off: importing ``tinyfarm``, as this module does, turns them off.)"""
    try:
        import labgrid.remote.client  # noqa: F401, PLC0415
    except ImportError:
        raise ConfigError("labgrid devices need labgrid: pip install 'tinyfarm[labgrid]'") from None


def coordinator_address(configured: str | None = None) -> str:
    """The coordinator: the farm file's ``labgrid.coordinator``, else ``$LG_COORDINATOR`` (labgrid's
    own variable), else 127.0.0.1:20408 (labgrid's default port, on loopback)."""
    return configured or os.environ.get("LG_COORDINATOR") or DEFAULT_COORDINATOR


def selector_filters(place: str | None, tags: dict[str, str] | None) -> dict[str, str]:
    """The reservation filter: labgrid matches ``name`` against the place name, the rest as tags."""
    filters = dict(tags or {})
    if place:
        filters["name"] = place
    if not filters:
        raise DeviceError("a labgrid device needs a place name or tags")
    return filters


def place_key(address: str, filters: dict[str, str]) -> str:
    """The identity of a labgrid selector: what the farm's locks and the store key it by."""
    return f"labgrid:{address}:" + ",".join(f"{k}={v}" for k, v in sorted(filters.items()))
