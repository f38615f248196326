"""A fault-injecting wrapper for any serial.Serial-like port (seeded, so failures reproduce).

Per byte, independently: ``corrupt`` (XOR with a random non-zero byte), ``drop``, ``dup``
(duplicate) at the given rates, on the host's writes (``direction="tx"``), reads (``"rx"``) or
both. ``reset_after=N`` calls ``on_reset()`` once when N bytes have been written — e.g. a backend's
``restart`` or a twin's reset — to test a device that reboots mid-transfer. Counters record what
was injected. As a URL: ``fault://<inner-url>#corrupt=0.01&seed=1``.
"""

from __future__ import annotations

import random
from typing import Any, Callable


class FaultyPort:
    def __init__(self, inner: Any, *, corrupt: float = 0.0, drop: float = 0.0, dup: float = 0.0,
                 seed: int = 0, direction: str = "both", reset_after: int | None = None,
                 on_reset: Callable[[], None] | None = None) -> None:
        if direction not in ("tx", "rx", "both"):
            raise ValueError("direction must be tx, rx or both")
        self.inner = inner
        self.corrupt, self.drop, self.dup = float(corrupt), float(drop), float(dup)
        self.direction = direction
        self.rng = random.Random(seed)
        self.reset_after = reset_after
        self.on_reset = on_reset
        self.written = 0
        self.counts = {"corrupted": 0, "dropped": 0, "duplicated": 0, "resets": 0, "bytes": 0}
        self.port = getattr(inner, "port", None)

    # serial.Serial surface -----------------------------------------------------------------------
    @property
    def timeout(self) -> float | None:
        return self.inner.timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self.inner.timeout = value

    @property
    def in_waiting(self) -> int:
        return self.inner.in_waiting

    @property
    def is_open(self) -> bool:
        return self.inner.is_open

    def fileno(self) -> int:
        return self.inner.fileno()

    def read(self, size: int = 1) -> bytes:
        data = self.inner.read(size)
        return self._mangle(data) if self.direction in ("rx", "both") else data

    def write(self, data: bytes) -> int:
        out = self._mangle(bytes(data)) if self.direction in ("tx", "both") else bytes(data)
        if self.reset_after is not None and self.written + len(data) >= self.reset_after > self.written:
            cut = self.reset_after - self.written
            self.inner.write(out[:cut])
            self.written += len(data)
            self.counts["resets"] += 1
            if self.on_reset is not None:
                self.on_reset()
            return len(data)
        self.written += len(data)
        self.inner.write(out)
        return len(data)

    def flush(self) -> None:
        self.inner.flush()

    def reset_input_buffer(self) -> None:
        self.inner.reset_input_buffer()

    def close(self) -> None:
        self.inner.close()

    # the faults ----------------------------------------------------------------------------------
    def _mangle(self, data: bytes) -> bytes:
        if not data or not (self.corrupt or self.drop or self.dup):
            return data
        self.counts["bytes"] += len(data)
        rnd = self.rng.random
        out = bytearray()
        p_c, p_d, p_u = self.corrupt, self.drop, self.dup
        for b in data:
            if p_d and rnd() < p_d:
                self.counts["dropped"] += 1
                continue
            if p_c and rnd() < p_c:
                b ^= self.rng.randrange(1, 256)
                self.counts["corrupted"] += 1
            out.append(b)
            if p_u and rnd() < p_u:
                out.append(b)
                self.counts["duplicated"] += 1
        return bytes(out)
