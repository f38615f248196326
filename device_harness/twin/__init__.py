"""The TFLM device twin: the real TFLite Micro kernels (``tflite-micro`` wheel) behind the wire protocol.

``tflm_process`` hosts the runtime in a child process so a crash in TFLM is a device fault, not the
end of the caller; ``server`` speaks the protocol on a pty or loopback TCP port. Run one with
``python -m device_harness.twin`` (or ``tinyfarm twin``).

Public API for checking a model on the host TFLM without a protocol in between (``host_check``):
:func:`find_arena` (op check + smallest arena by search), :func:`host_outputs` (raw outputs for
inputs, in batches) and :class:`TflmError`, the base of what they raise. They are loaded on first
use, so the TFLM child process (``python -m device_harness.twin.tflm_child``) starts without them.
"""

from __future__ import annotations

__all__ = ["ArenaSearch", "TflmError", "find_arena", "host_outputs"]


def __getattr__(name: str):
    if name in __all__:
        from device_harness.twin import host_check  # noqa: PLC0415

        return getattr(host_check, name)
    raise AttributeError(f"module 'device_harness.twin' has no attribute {name!r}")
