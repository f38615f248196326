"""The one error type the CLI turns into a single clear line and a non-zero exit.

Library code raises :class:`TinyfarmError` (or a subclass) for anything the *user* can fix — a bad
config, a missing file, a model that does not fit the board. Bugs stay ordinary exceptions and keep
their tracebacks.
"""

from __future__ import annotations


class TinyfarmError(Exception):
    """A user-facing failure: ``str(err)`` is the one line the CLI prints."""

    exit_code: int = 2


class ConfigError(TinyfarmError):
    """A config file or option is malformed or invalid."""


class DataError(TinyfarmError):
    """A data set is unknown, unreadable or inconsistent."""


class ModelError(TinyfarmError):
    """A model file is unreadable, not a .tflite, or cannot run on the target."""


class DeviceError(TinyfarmError):
    """A device is unreachable, answered an error, or faulted."""

    exit_code = 3
