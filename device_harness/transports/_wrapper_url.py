"""Shared plumbing of the ``fault://`` and ``paced://`` pyserial URL handlers."""

from __future__ import annotations

from typing import Any, Callable

import serial

from device_harness.transports.paced import parse_wrapper_url


def make_serial_class(scheme: str, wrap: Callable[[Any, dict[str, str]], Any]) -> type:
    """A class pyserial's ``serial_for_url`` can instantiate: ``Cls(None, **kw)``, ``.port = url``, ``.open()``."""

    class WrapperSerial:
        def __init__(self, port: Any = None, baudrate: int = 115200, timeout: float | None = None,
                     **kwargs: Any) -> None:
            self._url = port
            self._kw = dict(kwargs, baudrate=baudrate, timeout=timeout)
            self._port: Any = None

        @property
        def port(self) -> Any:
            return self._url

        @port.setter
        def port(self, value: Any) -> None:
            self._url = value

        def open(self) -> None:
            inner_url, opts = parse_wrapper_url(self._url, scheme)
            inner = serial.serial_for_url(inner_url, **self._kw)
            try:
                self._port = wrap(inner, opts)
            except (TypeError, ValueError) as exc:
                inner.close()
                raise serial.SerialException(f"{scheme}:// options {opts}: {exc}") from None

        def __getattr__(self, name: str) -> Any:
            if name.startswith("_"):
                raise AttributeError(name)
            return getattr(self._port, name)

        def __setattr__(self, name: str, value: Any) -> None:
            if name.startswith("_") or name == "port" or self.__dict__.get("_port") is None:
                object.__setattr__(self, name, value)
            else:
                setattr(self._port, name, value)

        @property
        def in_waiting(self) -> int:
            return self._port.in_waiting

    WrapperSerial.__name__ = f"{scheme.title()}Serial"
    return WrapperSerial
