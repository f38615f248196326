"""The one error vocabulary: what the CLI turns into a single clear line and a non-zero exit.

Library code raises :class:`TinyfarmError` (or a subclass) for anything the *user* can fix — a bad
config, a missing file, a model that does not fit the board. Bugs stay ordinary exceptions and keep
their tracebacks.

``retryable`` is the one attribute a retry decision reads (the farm, the pytest plugin): whether
restarting the device and asking again can succeed. The device's own answers take it from the error
list in ``device_harness/protocol/spec.yaml`` (see ``device_harness/protocol/device_errors.py``).
"""

from __future__ import annotations

import errno
import os

MAX_MESSAGE = 600  # characters of one error line; longer ones are cut (a value echoed from input)


class TinyfarmError(Exception):
    """A user-facing failure: ``str(err)`` is the one line the CLI prints.

    It is one line whatever it holds: line breaks become spaces and it is cut at
    :data:`MAX_MESSAGE` characters, so a value echoed from the user's input cannot flood the
    terminal (values should be echoed through :func:`short` anyway)."""

    exit_code: int = 2
    retryable: bool = False

    def __str__(self) -> str:
        text = " ".join(super().__str__().split("\n"))
        return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."


def short(value: object, limit: int = 80) -> str:
    """``repr(value)`` for an error message, at most ``limit`` characters (``...`` marks a cut).

    Containers are cut while they are printed, so a huge (or alias-shared) value costs no more
    than the characters shown."""
    import reprlib

    r = reprlib.Repr()
    r.maxstring = r.maxother = limit
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = 8
    r.maxlevel = 3
    text = r.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


class ConfigError(TinyfarmError):
    """A config file or option is malformed or invalid."""


class DataError(TinyfarmError):
    """A data set is unknown, unreadable or inconsistent."""


class ModelError(TinyfarmError):
    """A model file is unreadable, not a .tflite, or cannot run on the target."""


class BudgetError(TinyfarmError):
    """No candidate model meets the target's flash, RAM and accuracy budget (the report has them all)."""


class StorageError(TinyfarmError):
    """A file could not be written or read: disk full, over quota, read-only, no permission."""


# errno -> how the one line says it; the first group can only happen while writing.
_WRITE_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                 errno.EROFS: "read-only file system", errno.EFBIG: "file too large"}
_ACCESS_ERRNOS = {errno.EIO: "I/O error", errno.EACCES: "permission denied",
                  errno.EPERM: "operation not permitted", errno.ENOTDIR: "not a folder",
                  errno.EISDIR: "is a folder", errno.ENAMETOOLONG: "file name too long",
                  errno.ELOOP: "too many levels of symbolic links"}


def storage_error(exc: BaseException, path: str | os.PathLike[str] | None = None,
                  writing: bool | None = None) -> StorageError | None:
    """The one-line :class:`StorageError` for an ``OSError`` of the file system (about ``path``,
    else the error's own file name), or ``None`` when ``exc`` is no such error (a bug keeps its
    traceback). ``writing``: the operation was a write (default: only when the error says so).

    ``no space left on device writing runs/x/report.json``, ``cannot write /x/y: permission denied``"""
    if not isinstance(exc, OSError) or exc.errno not in (_WRITE_ERRNOS.keys() | _ACCESS_ERRNOS.keys()):
        return None
    where = path if path is not None else (exc.filename or exc.filename2)
    where = os.fsdecode(where) if where is not None else None
    if exc.errno in _WRITE_ERRNOS:
        reason = _WRITE_ERRNOS[exc.errno]
        return StorageError(f"{reason} writing {where}" if where else reason)
    reason = _ACCESS_ERRNOS[exc.errno]
    if not where:
        return StorageError(reason)
    return StorageError(f"cannot {'write' if writing else 'use'} {where}: {reason}")


class DeviceError(TinyfarmError):
    """A device is unreachable, answered an error, or faulted (worth a restart unless told)."""

    exit_code = 3
    retryable = True


class DeviceTimeout(DeviceError):
    """No (valid) answer after the bounded retries: link down, wrong URL, or a hung device."""


class LinkLost(DeviceError):
    """The serial line failed under us: the device closed or reset the connection."""


class DeviceReplyError(DeviceError):
    """The device answered an error frame. Subclasses, one per error code, are generated from the
    protocol spec; ``code``/``name``/``retryable`` are theirs, ``device_message`` is the device's."""

    code: int = 17
    name: str = "INTERNAL"

    def __init__(self, message: str, request: str = "") -> None:
        self.device_message = message
        self.request = request
        where = f" ({request})" if request else ""
        super().__init__(f"device error {self.name}{where}: {message}")


def is_retryable(exc: BaseException) -> bool:
    """Worth a device restart and a retry: tinyfarm's errors say so themselves (``retryable``); an
    OS-level I/O error (a serial port or socket failing under us) is the link's, never the model's."""
    if isinstance(exc, TinyfarmError):
        return exc.retryable
    return isinstance(exc, (OSError, EOFError))
