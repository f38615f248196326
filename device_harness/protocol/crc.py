"""CRC-32 (IEEE 802.3, zlib's), from ISA-L when it is installed.

``isal.isal_zlib.crc32`` is the same function as ``zlib.crc32`` (same polynomial, same chaining
argument) at about three times the speed; on an unpaced link the CRC on both ends is a visible
share of the time per byte. zlib is the fallback, so the protocol never depends on ISA-L.
"""

from __future__ import annotations

try:
    from isal.isal_zlib import crc32
except ImportError:  # pragma: no cover - isal is a declared dependency; keep working without it
    from zlib import crc32

__all__ = ["crc32"]
