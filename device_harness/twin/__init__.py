"""The TFLM device twin: the real TFLite Micro kernels (``tflite-micro`` wheel) behind the wire protocol.

``tflm_process`` hosts the runtime in a child process so a crash in TFLM is a device fault, not the
end of the caller; ``server`` speaks the protocol on a pty or loopback TCP port. Run one with
``python -m device_harness.twin`` (or ``tinyfarm twin``).
"""
