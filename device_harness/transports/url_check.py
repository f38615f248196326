"""Check a device URL's form without opening it: what a farm file is validated with at load time.

``url_problem(url)`` is None for a usable value, else why not: an unknown pyserial scheme, a
``socket://`` without a valid ``host:port``, bad ``fault://``/``paced://`` options. A device path
is accepted unopened (a board may be unplugged while the farm file is read).
"""

from __future__ import annotations

import importlib.util
import re

import serial

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)
_ONE_SLASH = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/[^/]")
_HOSTPORT = ("socket", "rfc2217")
_WRAPPERS = ("fault", "paced")


def _known_scheme(scheme: str) -> bool:
    import device_harness.transports  # noqa: F401,PLC0415 - registers fault:// and paced://

    for package in serial.protocol_handler_packages:
        try:
            if importlib.util.find_spec(f"{package}.protocol_{scheme}") is not None:
                return True
        except (ImportError, ValueError):
            continue
    return False


def url_problem(url: str) -> str | None:
    """Why ``url`` is not a usable ``--device``/``connection.url`` value (None: it is)."""
    if not url or not url.strip():
        return "empty URL"
    if "\0" in url or "\n" in url:
        return "control characters in the URL"
    match = _SCHEME.match(url)
    if match is None:
        if _ONE_SLASH.match(url):
            return f"malformed URL {url[:60]!r} (a pyserial URL is scheme://...)"
        return None  # a device path
    scheme, rest = match[1].lower(), match[2]
    if not _known_scheme(scheme):
        return f"unknown URL scheme {scheme!r} (e.g. socket://HOST:PORT, rfc2217://, loop://, a device path)"
    if scheme in _HOSTPORT:
        hostport = rest.split("/", 1)[0].split("?", 1)[0]
        host, sep, port = hostport.rpartition(":")
        if not sep or not host:
            return f"{scheme}:// needs HOST:PORT, got {rest[:60]!r}"
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            return f"{scheme}:// port {port[:20]!r} is not in 1..65535"
    if scheme in _WRAPPERS:
        from device_harness.transports.wrapped import parse_wrapper_url  # noqa: PLC0415

        try:
            inner, options = parse_wrapper_url(url, scheme)
            _port_class(scheme)(None).configure(options)
        except (serial.SerialException, TypeError, ValueError) as exc:
            return f"{scheme}://: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        return url_problem(inner)
    return None


def _port_class(scheme: str):
    if scheme == "fault":
        from device_harness.transports.faulty import FaultyPort  # noqa: PLC0415

        return FaultyPort
    from device_harness.transports.paced import PacedPort  # noqa: PLC0415

    return PacedPort
