"""The one error vocabulary: what the CLI turns into a single clear line and a non-zero exit.

Library code raises :class:`TinyfarmError` (or a subclass) for anything the *user* can fix — a bad
config, a missing file, a model that does not fit the board. Bugs stay ordinary exceptions and keep
their tracebacks.

``retryable`` is the one attribute a retry decision reads (the farm, the pytest plugin): whether
restarting the device and asking again can succeed. The device's own answers take it from the error
list in ``device_harness/protocol/spec.yaml`` (see ``device_harness/protocol/device_errors.py``).
"""

from __future__ import annotations


class TinyfarmError(Exception):
    """A user-facing failure: ``str(err)`` is the one line the CLI prints."""

    exit_code: int = 2
    retryable: bool = False


class ConfigError(TinyfarmError):
    """A config file or option is malformed or invalid."""


class DataError(TinyfarmError):
    """A data set is unknown, unreadable or inconsistent."""


class ModelError(TinyfarmError):
    """A model file is unreadable, not a .tflite, or cannot run on the target."""


class BudgetError(TinyfarmError):
    """No candidate model meets the target's flash, RAM and accuracy budget (the report has them all)."""


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
