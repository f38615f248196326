"""Resolve a ``--device`` string to a :class:`~device_harness.backends.base.Backend`.

Built in:
  ``twin``                  a fresh TFLM twin with the default board profile (subprocess, pty)
  ``twin:BOARD``            a fresh twin with that board profile (``boards.yaml``)
  ``twin:BOARD?ticks=host`` (or ``twin?ticks=host``) its ticks in host ns, not the board's estimated
                            cycles (also: ``TINYFARM_TWIN_TICKS=host``)
  a pyserial URL            ``socket://host:port``, ``rfc2217://…``, ``loop://``, ``fault://…``
  a device or pty path      ``/dev/ttyACM0``, ``/dev/pts/3``

Extension hook — other packages plug in without editing this file:

    from device_harness.device_registry import register_device

    @register_device("qemu")                       # matches "qemu" and "qemu:<arg>"
    def _qemu(arg: str | None, **options) -> Backend:
        return QemuBackend(elf=arg, **options)

A factory gets the text after the first ``:`` (or None) and the caller's options (``board``,
``arena_bytes``, ``pace``, ...; ignore what you do not use) and returns an unstarted Backend.
Factories may also be declared as entry points in the group ``tinyfarm.devices``
(``name = "module:factory"``), and the modules listed in ``PLUGIN_MODULES`` are imported on first
use so their ``register_device`` calls run — the firmware's emulator backends and the farm register
themselves this way. For names no prefix matches, *resolvers* registered with
:func:`register_resolver` are asked in turn (the farm uses it for its device names).
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Callable

from device_harness.backends.base import Backend, UrlBackend
from tinyfarm.errors import ConfigError, DeviceError, short

Factory = Callable[..., Backend]
Resolver = Callable[..., "Backend | None"]

_FACTORIES: dict[str, Factory] = {}
_RESOLVERS: list[Resolver] = []
_PLUGINS_LOADED = False

#: modules imported (if present) before resolving, so their register_device() calls run
PLUGIN_MODULES: list[str] = [
    "device_harness.backends.qemu",
    "device_harness.backends.renode",
    "device_harness.backends.board",
    "device_harness.farm.device_names",
    "device_harness.labgrid.backend",
]


def register_device(prefix: str, factory: Factory | None = None):
    """Register ``factory`` for ``--device PREFIX`` and ``--device PREFIX:ARG`` (usable as decorator)."""
    def deco(fn: Factory) -> Factory:
        _FACTORIES[prefix.lower()] = fn
        return fn
    return deco(factory) if factory is not None else deco


def register_resolver(resolver: Resolver) -> Resolver:
    """Register ``resolver(spec, **options) -> Backend | None`` for names no prefix matches."""
    _RESOLVERS.append(resolver)
    return resolver


def _load_plugins() -> None:
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    for mod in PLUGIN_MODULES:
        try:
            importlib.import_module(mod)
        except ImportError:
            pass
    try:
        from importlib.metadata import entry_points  # noqa: PLC0415

        for ep in entry_points(group="tinyfarm.devices"):
            if ep.name.lower() not in _FACTORIES:
                try:
                    _FACTORIES[ep.name.lower()] = ep.load()
                except Exception:
                    pass
    except Exception:
        pass


def _twin(arg: str | None, **options: Any) -> Backend:
    from device_harness.backends.twin import TwinBackend  # noqa: PLC0415

    board, _, query = (arg or "").partition("?")
    host_time = options.get("host_time")
    for item in filter(None, query.split("&")):
        key, _, value = item.partition("=")
        if key != "ticks" or value not in ("host", "estimate"):
            raise ConfigError(f"twin option {short(item)}: use ticks=host or ticks=estimate")
        host_time = value == "host"
    return TwinBackend(board or options.get("board"), arena_bytes=options.get("arena_bytes"),
                       pace=bool(options.get("pace")), baud=options.get("baud"), tcp=bool(options.get("tcp")),
                       host_time=host_time)


register_device("twin", _twin)


def known_devices() -> list[str]:
    _load_plugins()
    return sorted(_FACTORIES)


def resolve_device(spec: str, **options: Any) -> Backend:
    """The (unstarted) backend for a ``--device`` value; DeviceError with one clear line otherwise.

    Options are passed to factories: ``board``, ``arena_bytes``, ``pace``, ``baud``, ``tcp``.
    """
    spec = (spec or "twin").strip()
    if "://" in spec:
        from device_harness.transports.url_check import url_problem  # noqa: PLC0415

        problem = url_problem(spec)
        if problem:
            raise ConfigError(f"--device {short(spec, 120)}: {problem}")
        return UrlBackend(spec, baud=options.get("baud"))
    if spec.startswith("/") or spec.startswith("./") or os.path.exists(spec):
        if not os.path.exists(spec):
            raise DeviceError(f"cannot open {spec}: no such device")
        return UrlBackend(spec, baud=options.get("baud"))
    _load_plugins()
    if options.get("farm"):  # a farm file given explicitly: its names/labels win over prefixes
        for resolver in _RESOLVERS:
            backend = resolver(spec, **options)
            if backend is not None:
                return backend
    prefix, _, arg = spec.partition(":")
    prefix, query_mark, query = prefix.partition("?")  # "twin?ticks=host": options without an arg
    if query_mark:
        arg = f"{arg}?{query}"
    factory = _FACTORIES.get(prefix.lower())
    if factory is not None:
        return factory(arg or None, **options)
    for resolver in _RESOLVERS:
        backend = resolver(spec, **options)
        if backend is not None:
            return backend
    raise DeviceError(f"unknown device {short(spec)}: use twin, twin:BOARD, a pyserial URL, a device path, "
                      f"or one of: {', '.join(known_devices())}")
