"""The farm file: which devices exist, how to reach or launch each one, and what they are labelled.

A farm file is YAML validated by pydantic (unknown keys are errors, so a typo never silently
falls back to a default). Example::

    farm: bench-a                 # optional name, shown in reports
    defaults: {job_timeout_s: 120, retries: 2}
    devices:
      - name: twin-a
        backend: twin             # board | renode | qemu | twin
        board: generic-m4         # board profile (RAM/flash/clock/baud)
        labels: [twin, ci]
        launch: {arena_bytes: 65536, pace_baud: 115200}
      - name: nucleo
        backend: board
        board: nucleo-f446re
        connection: {url: /dev/serial/by-id/usb-STMicroelectronics_STLINK-V3_0042-if02,
                     target: stm32f446retx}      # pyOCD target: a fault resets the board
        labels: [hil, m4]

Any problem becomes one :class:`~tinyfarm.errors.ConfigError` line naming the file and the field.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from device_harness import limits
from device_harness.transports.url_check import url_problem
from tinyfarm import safe_yaml
from tinyfarm.errors import ConfigError, short

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"
Backend = Literal["board", "renode", "qemu", "twin", "labgrid"]
LAUNCHED_BACKENDS = ("renode", "qemu", "twin")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Connection(_Strict):
    """How to reach a device that is already running: a pyserial URL or a device path."""

    url: str = Field(min_length=1, description="device path, socket://, rfc2217://, loop://, pty")
    baud: int | None = Field(default=None, ge=limits.MIN_BAUD, le=limits.MAX_BAUD,
                             description="line rate; default: the board profile's")
    target: str | None = Field(default=None, description="board: pyOCD target name, so a fault "
                                                         "resets the board through its probe")
    probe: str | None = Field(default=None, description="board: the debug probe's unique id (pyOCD)")

    @field_validator("url")
    @classmethod
    def _url_has_a_usable_form(cls, url: str) -> str:  # checked now, not when the run reaches it
        problem = url_problem(url)
        if problem:
            raise ValueError(problem)
        return url


class Launch(_Strict):
    """How to start an emulator or a twin; every field optional (the backend's defaults apply)."""

    elf: str | None = Field(default=None, description="firmware ELF for qemu/renode")
    arena_bytes: int | None = Field(default=None, ge=limits.MIN_ARENA_BYTES, le=limits.MAX_ARENA_BYTES,
                                    description="twin: tensor arena capacity")
    pace_baud: int | None = Field(default=None, ge=limits.MIN_BAUD, le=limits.MAX_BAUD,
                                  description="twin: pace the line at this baud")
    transport: Literal["pty", "tcp"] | None = Field(default=None, description="twin: how it is served")


class PlaceSpec(_Strict):
    """A labgrid place: by name, or any place carrying ``tags``; ``match`` and ``tags`` are what
    ``tinyfarm farm labgrid-setup`` gives a named place on the coordinator."""

    name: str | None = Field(default=None, pattern=NAME_PATTERN, description="the place's name")
    tags: dict[str, str] = Field(default_factory=dict, description="place tags (select, or set)")
    match: tuple[str, ...] = Field(default=(), description="resource patterns "
                                   "exporter/group/class[/name] the place takes")

    @model_validator(mode="after")
    def _named_or_tagged(self) -> "PlaceSpec":
        if not self.name and not self.tags:
            raise ValueError("a place needs a name or tags that select places")
        if self.match and not self.name:
            raise ValueError("'match' needs the place's name (it is set on that place)")
        for pattern in self.match:
            if not 2 <= pattern.count("/") <= 3:
                raise ValueError(f"match {short(pattern)}: use exporter/group/class[/name]")
        for key, value in self.tags.items():
            if not re.match(r"^[a-z][a-z0-9_]*$", key) or not re.match(r"^[a-z0-9_]*$", value):
                raise ValueError(f"tag {short(key)}={short(value)}: labgrid takes lower-case "
                                 "[a-z0-9_] keys and values")
        return self


class LabgridSection(_Strict):
    coordinator: str | None = Field(default=None, description="HOST:PORT of the labgrid "
                                    "coordinator; default $LG_COORDINATOR, else 127.0.0.1:20408")


class DeviceSpec(_Strict):
    """One device of the farm."""

    name: str = Field(pattern=NAME_PATTERN)
    backend: Backend
    board: str | None = Field(default=None, description="board profile name")
    labels: tuple[str, ...] = ()
    connection: Connection | None = None
    launch: Launch | None = None
    place: PlaceSpec | None = Field(default=None, description="labgrid: the place")
    lock_key: str | None = Field(
        default=None,
        description="identity the cross-process lock is keyed by (default: the serial URL for "
                    "attached devices, the farm file and device name for launched ones)")

    @field_validator("labels")
    @classmethod
    def _labels_are_names(cls, labels: tuple[str, ...]) -> tuple[str, ...]:
        for label in labels:
            if not re.match(NAME_PATTERN, label):
                raise ValueError(f"label {short(label)} must match {NAME_PATTERN}")
        return labels

    @model_validator(mode="after")
    def _connection_matches_backend(self) -> "DeviceSpec":
        if (self.backend == "labgrid") != (self.place is not None):
            raise ValueError("a 'labgrid' device needs 'place' (a name or tags), and 'place' is "
                             "only for labgrid devices")
        if self.backend == "labgrid" and (self.connection is not None or self.launch is not None):
            raise ValueError("a 'labgrid' device is reached through its place: remove "
                             "'connection'/'launch'")
        if self.backend == "board":
            if self.connection is None:
                raise ValueError("a 'board' device needs connection.url (its serial port)")
            if self.launch is not None:
                raise ValueError("a 'board' device is attached, not launched: remove 'launch'")
        elif self.connection is not None and (self.connection.target or self.connection.probe):
            raise ValueError("connection.target/probe (pyOCD reset) are for 'board' devices")
        elif self.connection is not None and self.launch is not None:
            raise ValueError("give either 'connection' (attach to a running device) or 'launch', "
                             "not both")
        if self.launch is not None:
            if self.backend != "twin" and (self.launch.arena_bytes or self.launch.pace_baud
                                           or self.launch.transport):
                raise ValueError("arena_bytes/pace_baud/transport are twin launch settings")
            if self.backend == "twin" and self.launch.elf:
                raise ValueError("a twin has no firmware: 'elf' is for qemu/renode")
        return self

    @property
    def attached(self) -> bool:
        """True when the device is reached through a URL rather than started by the harness."""
        return self.connection is not None

    def matches(self, selector: str) -> bool:
        """``selector`` is this device's name or one of its labels."""
        return selector == self.name or selector in self.labels


class Defaults(_Strict):
    job_timeout_s: float = Field(default=300.0, gt=0, allow_inf_nan=False,
                                 description="wall-clock limit of one job")
    retries: int = Field(default=2, ge=0, description="retries of a job after a transient fault")
    bench_runs: int = Field(default=20, gt=0)
    bench_warmup: int = Field(default=3, ge=0)


class FarmFile(_Strict):
    farm: str | None = Field(default=None, pattern=NAME_PATTERN)
    lock_dir: str | None = Field(default=None, description="where device lock files live")
    labgrid: LabgridSection = LabgridSection()
    defaults: Defaults = Defaults()
    devices: tuple[DeviceSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> "FarmFile":
        seen: set[str] = set()
        for device in self.devices:
            if device.name in seen:
                raise ValueError(f"device name {short(device.name)} appears twice")
            seen.add(device.name)
        return self


class Farm:
    """A validated farm file plus where it came from (relative paths resolve against it)."""

    def __init__(self, spec: FarmFile, path: Path):
        self.spec = spec
        self.path = path.resolve()
        self.name = spec.farm or self.path.stem

    @property
    def devices(self) -> tuple[DeviceSpec, ...]:
        return self.spec.devices

    @property
    def defaults(self) -> Defaults:
        return self.spec.defaults

    def device(self, name: str) -> DeviceSpec:
        for device in self.devices:
            if device.name == name:
                return device
        known = ", ".join(d.name for d in self.devices)
        raise ConfigError(f"unknown device {short(name)} in farm file {self.path} (known: {known})")

    def select(self, names: list[str] | None = None, labels: list[str] | None = None
               ) -> list[DeviceSpec]:
        """Devices named in ``names`` (all when empty) that carry every label in ``labels``."""
        chosen = [self.device(n) for n in names] if names else list(self.devices)
        if labels:
            chosen = [d for d in chosen if all(lbl in d.labels for lbl in labels)]
            if not chosen:
                raise ConfigError(f"no device in {self.path} has all labels {', '.join(labels)}")
        return chosen

    def match(self, selector: str) -> list[DeviceSpec]:
        """Devices whose name or label is ``selector`` (a name wins over labels)."""
        for device in self.devices:
            if device.name == selector:
                return [device]
        return [d for d in self.devices if selector in d.labels]

    @property
    def labgrid_address(self) -> str:
        from device_harness.labgrid import coordinator_address
        return coordinator_address(self.spec.labgrid.coordinator)

    @staticmethod
    def place_filters(device: DeviceSpec) -> dict[str, str]:
        """A labgrid device's reservation filter (labgrid matches ``name`` against place names)."""
        from device_harness.labgrid import selector_filters
        assert device.place is not None
        return selector_filters(device.place.name, device.place.tags)

    def resolve_path(self, value: str) -> str:
        """A path from the farm file, relative to the file's folder; ``~`` expanded."""
        path = Path(os.path.expanduser(value))
        return str(path if path.is_absolute() else (self.path.parent / path).resolve())

    def lock_key(self, device: DeviceSpec) -> str:
        """The identity two processes must agree on to never share a device.

        Attached devices are keyed by the port itself (symlinks such as /dev/serial/by-id resolved),
        so two farm files naming one port differently still exclude each other. Launched devices
        are keyed by farm file and name: each launch is its own process, but two runs of the same
        farm must still take turns, as they would on boards.
        """
        if device.place is not None:  # the coordinator's place, whoever names it
            from device_harness.labgrid import place_key
            return place_key(self.labgrid_address, self.place_filters(device))
        if device.lock_key:
            return device.lock_key
        if device.connection is not None:
            url = device.connection.url
            if "://" not in url and not url.startswith("loop"):
                url = os.path.realpath(url)
            return f"port:{url}"
        return f"{device.backend}:{self.path}:{device.name}"


def parse_farm(text: str, path: Path) -> Farm:
    try:
        raw = safe_yaml.load(text, source=f"farm file {path}")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"farm file {path}{where} is not valid YAML: "
                          f"{getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"farm file {path} must be a mapping with a 'devices' list")
    try:
        spec = FarmFile.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = _location(raw, err["loc"])
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"farm file {path}: {loc}: {_message(err)}{more}") from None
    from device_harness.boards import board_names
    known = board_names()
    for i, device in enumerate(spec.devices):
        if device.backend == "twin" and device.board and device.board not in known:
            raise ConfigError(f"farm file {path}: devices[{i}] ({device.name}).board: unknown "
                              f"board profile {short(device.board)} (known: {', '.join(known)})")
        elf = device.launch.elf if device.launch is not None else None
        if elf and not Path(os.path.expanduser(elf)).is_absolute():
            elf = str(path.parent / os.path.expanduser(elf))
        if elf and not Path(os.path.expanduser(elf)).is_file():
            raise ConfigError(f"farm file {path}: devices[{i}] ({device.name}).launch.elf: no such "
                              f"firmware file {short(device.launch.elf)}")
    return Farm(spec, path)


def load_farm(path: str | os.PathLike[str]) -> Farm:
    """Read and validate a farm file; every problem is one ConfigError line."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"farm file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read farm file {path}: {exc.strerror}") from None
    return parse_farm(text, path)


def _location(raw: dict, loc: tuple) -> str:
    """``devices[1] (twin-b).launch.pace_baud`` rather than pydantic's tuple."""
    parts: list[str] = []
    node = raw
    for key in loc:
        if isinstance(key, int):
            name = ""
            if isinstance(node, list) and key < len(node) and isinstance(node[key], dict):
                label = node[key].get("name")
                name = f" ({label if isinstance(label, str) and len(label) <= 80 else short(label)})" \
                    if label else ""
            parts[-1:] = [f"{parts[-1] if parts else ''}[{key}]{name}"]
        else:
            parts.append(str(key) if len(str(key)) <= 80 else short(str(key)))
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            node = None
    return ".".join(parts) or "top level"


def _message(err: dict) -> str:
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return "unknown key (not allowed here)"
    if err["type"] == "literal_error" and "backend" in err["loc"]:
        return (f"unknown backend {short(err.get('input'))}; expected one of board, renode, qemu, "
                "twin, labgrid")
    return msg
