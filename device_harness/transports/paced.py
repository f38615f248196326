"""Pace a byte stream at a UART's rate (8N1: 10 bits a byte).

:class:`LinePacer` is the clock both directions share: bytes that arrive are released no earlier than
a UART at ``baud`` would have finished receiving them; bytes to send are scheduled for the moment the
last of them would have left the wire. The twin server uses it on its own line so transfer times are
the board's; :class:`PacedPort` is a pyserial port class that paces another port with it (``paced://`` URLs).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from device_harness.transports.wrapped import WrappedPort


class LinePacer:
    def __init__(self, baud: int) -> None:
        if not baud > 0:
            raise ValueError(f"baud={baud} must be positive")
        self.baud = baud
        self.byte_time = 10.0 / baud
        self._rx: deque[list] = deque()  # [start_time, bytes] segments on the wire
        self._rx_clock = 0.0
        self._tx_clock = 0.0

    # receive side
    def arrive(self, data: bytes, now: float | None = None) -> None:
        if not data:
            return
        now = time.monotonic() if now is None else now
        start = max(self._rx_clock, now)
        self._rx_clock = start + self.byte_time * len(data)
        self._rx.append([start, bytes(data)])

    def take(self, now: float | None = None) -> bytes:
        """Bytes whose reception has completed by ``now``."""
        now = time.monotonic() if now is None else now
        out = bytearray()
        while self._rx:
            start, data = self._rx[0]
            k = min(len(data), int((now - start) / self.byte_time + 1e-9))
            if k <= 0:
                break
            out += data[:k]
            if k == len(data):
                self._rx.popleft()
            else:
                self._rx[0] = [start + k * self.byte_time, data[k:]]
                break
        return bytes(out)

    def push_back(self, data: bytes) -> None:
        """Bytes taken but not consumed: first in line again, already received."""
        self._rx.appendleft([time.monotonic() - self.byte_time, bytes(data)])

    def clear_rx(self) -> None:
        self._rx.clear()

    def reset(self) -> None:
        """A new line: nothing in flight either way (the client at the other end went away)."""
        self._rx.clear()
        self._rx_clock = self._tx_clock = 0.0

    def next_rx_due(self) -> float | None:
        return self._rx[0][0] + self.byte_time if self._rx else None

    # transmit side
    def schedule_tx(self, nbytes: int, now: float | None = None) -> float:
        """When ``nbytes`` queued now would have fully left the wire."""
        now = time.monotonic() if now is None else now
        self._tx_clock = max(self._tx_clock, now) + self.byte_time * nbytes
        return self._tx_clock


class PacedPort(WrappedPort):
    """A port that reads and writes no faster than a UART at ``baud`` (``paced://…#baud=N``)."""

    scheme = "paced"

    def __init__(self, port: Any = None, baud: int = 115200, **serial_kwargs: Any) -> None:
        self.pacer = LinePacer(baud)
        super().__init__(port, **serial_kwargs)

    def configure(self, options: dict[str, str]) -> None:
        if set(options) - {"baud"}:
            raise ValueError(f"unknown option(s) {sorted(set(options) - {'baud'})}")
        self.pacer = LinePacer(int(options.get("baud", 115200)))

    @property
    def in_waiting(self) -> int:
        self._pull()
        due = self.pacer.next_rx_due()
        return 1 if due is not None and due <= time.monotonic() else 0

    def _pull(self) -> None:
        n = self.inner.in_waiting
        if n:
            self.pacer.arrive(self.inner.read(n))

    def read(self, size: int = 1) -> bytes:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        buf = bytearray()
        while len(buf) < size:
            self._pull()
            buf += self.pacer.take()
            if len(buf) >= size:
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            due = self.pacer.next_rx_due()
            wait = 0.001 if due is None else max(0.0, due - now)
            if deadline is not None:
                wait = min(wait, deadline - now)
            time.sleep(min(wait, 0.01))
        if len(buf) > size:  # the rest goes back to the head of the line
            self.pacer.push_back(bytes(buf[size:]))
        return bytes(buf[:size])

    def write(self, data: bytes) -> int:
        done = self.pacer.schedule_tx(len(data))
        delay = done - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return self.inner.write(data)

    def reset_input_buffer(self) -> None:
        self.inner.reset_input_buffer()
        self.pacer.clear_rx()
