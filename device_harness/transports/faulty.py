"""A fault-injecting port (seeded, so failures reproduce): ``fault://<inner-url>#corrupt=0.01&seed=1``.

Per byte, independently: ``corrupt`` (XOR with a random non-zero byte), ``drop``, ``dup``
(duplicate) at the given rates, on the host's writes (``direction="tx"``), reads (``"rx"``) or
both. ``reset_after=N`` calls ``on_reset()`` once when N bytes have been written — e.g. a backend's
``restart`` or a twin's reset — to test a device that reboots mid-transfer. Counters record what
was injected.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from device_harness.transports.wrapped import WrappedPort


class FaultyPort(WrappedPort):
    scheme = "fault"

    def __init__(self, port: Any = None, *, corrupt: float = 0.0, drop: float = 0.0, dup: float = 0.0,
                 seed: int = 0, direction: str = "both", reset_after: int | None = None,
                 on_reset: Callable[[], None] | None = None, **serial_kwargs: Any) -> None:
        self._set_faults(corrupt=corrupt, drop=drop, dup=dup, seed=seed, direction=direction)
        self.reset_after = reset_after
        self.on_reset = on_reset
        self.written = 0
        self.counts = {"corrupted": 0, "dropped": 0, "duplicated": 0, "resets": 0, "bytes": 0}
        super().__init__(port, **serial_kwargs)

    def _set_faults(self, *, corrupt: float = 0.0, drop: float = 0.0, dup: float = 0.0, seed: int = 0,
                    direction: str = "both") -> None:
        if direction not in ("tx", "rx", "both"):
            raise ValueError("direction must be tx, rx or both")
        for name, rate in (("corrupt", corrupt), ("drop", drop), ("dup", dup)):
            if not 0.0 <= float(rate) <= 1.0:  # also refuses NaN
                raise ValueError(f"{name}={rate} is not a rate in 0..1")
        self.corrupt, self.drop, self.dup = float(corrupt), float(drop), float(dup)
        self.direction = direction
        self.rng = random.Random(seed)

    def configure(self, options: dict[str, str]) -> None:
        known = {"corrupt": float, "drop": float, "dup": float, "seed": int, "direction": str}
        unknown = set(options) - set(known)
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)}")
        self._set_faults(**{k: known[k](v) for k, v in options.items()})

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
