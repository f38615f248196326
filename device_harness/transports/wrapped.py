"""WrappedPort: a pyserial port class that adds behaviour to another port (any URL or path).

The ``fault://`` and ``paced://`` handlers are subclasses: pyserial's ``serial_for_url`` builds one
(``Cls(None, baudrate=…, timeout=…)``, then ``.port = url``, then ``.open()``), which opens the inner
URL after the ``#options``; or one wraps a port that is already open: ``FaultyPort(port, corrupt=…)``.
Everything is a real method of the class (no attribute proxying), so a caller can tell what a port
does by its class.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import serial


def parse_wrapper_url(url: str, scheme: str) -> tuple[str, dict[str, str]]:
    """``scheme://<inner-url>#k=v&k=v`` -> (inner url, options)."""
    if not url.lower().startswith(scheme + "://"):
        raise serial.SerialException(f"expected {scheme}://<url>#options, got {url!r}")
    rest = url[len(scheme) + 3:]
    inner, _, frag = rest.partition("#")
    opts = {k: v[-1] for k, v in parse_qs(frag, keep_blank_values=True).items()}
    if not inner:
        raise serial.SerialException(f"{scheme}:// needs an inner URL or device path")
    return inner, opts


class WrappedPort(serial.SerialBase):
    """A port whose bytes pass through another port (``self.inner``)."""

    scheme = ""

    def __init__(self, port: Any = None, **kwargs: Any) -> None:
        self.inner: Any = None
        if port is None or isinstance(port, str):
            super().__init__(port, **kwargs)  # pyserial's way: opened from a URL
            return
        super().__init__(None, timeout=port.timeout)  # an open port handed in
        self.inner = port
        self.is_open = True

    def configure(self, options: dict[str, str]) -> None:
        """Apply the URL's ``#options`` (subclasses; raise ValueError for unknown ones)."""
        if options:
            raise ValueError(f"unknown option(s) {sorted(options)}")

    def open(self) -> None:
        if self.is_open:
            raise serial.SerialException("port already open")
        inner_url, options = parse_wrapper_url(self.portstr or "", self.scheme)
        inner = serial.serial_for_url(inner_url, baudrate=self.baudrate, timeout=self.timeout)
        try:
            self.configure(options)
        except (TypeError, ValueError) as exc:
            inner.close()
            raise serial.SerialException(f"{self.scheme}:// options {options}: {exc}") from None
        self.inner = inner
        self.is_open = True

    def close(self) -> None:
        if self.inner is not None and self.is_open:
            self.inner.close()
        self.is_open = False

    def _reconfigure_port(self) -> None:
        if self.inner is not None:
            self.inner.timeout = self.timeout

    # the serial surface, passed through; subclasses change read/write/in_waiting
    @property
    def in_waiting(self) -> int:
        return self.inner.in_waiting

    def fileno(self) -> int:
        """The inner port's fd (for select): readable when the inner port has bytes."""
        return self.inner.fileno()

    def read(self, size: int = 1) -> bytes:
        return self.inner.read(size)

    def write(self, data: bytes) -> int:
        return self.inner.write(data)

    def flush(self) -> None:
        self.inner.flush()

    def reset_input_buffer(self) -> None:
        self.inner.reset_input_buffer()

    def reset_output_buffer(self) -> None:
        self.inner.reset_output_buffer()
