"""click parameter types for the device commands' numbers (ranges from :mod:`device_harness.limits`).

A bad value is refused where it is read, as one ``error: Invalid value for '--baud': ...`` line.
click's own ``FloatRange`` lets ``nan`` through (every comparison with NaN is false), so the
float types here refuse NaN and infinity first.
"""

from __future__ import annotations

import math

import click

from device_harness import limits

ARENA_BYTES = click.IntRange(limits.MIN_ARENA_BYTES, limits.MAX_ARENA_BYTES)
BAUD = click.IntRange(limits.MIN_BAUD, limits.MAX_BAUD)
PORT = click.IntRange(0, limits.MAX_PORT)


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan`` and ``inf``."""

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv


#: a tolerance, a share: any finite value >= 0
NON_NEGATIVE = FiniteFloatRange(min=0)


def seconds(min_open: bool = True, allow_negative: bool = False) -> FiniteFloatRange:
    """A duration in seconds: > 0 (``min_open``) or >= 0; any finite value with ``allow_negative``."""
    if allow_negative:
        return FiniteFloatRange()
    return FiniteFloatRange(min=0, min_open=min_open)
