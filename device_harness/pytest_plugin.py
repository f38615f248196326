"""pytest plugin for hardware-in-the-loop and emulator tests (registered via the pytest11 entry point).

Provides ``--farm``/``--device`` options, the ``dut`` fixture and the ``hil``/``emulator`` markers.
"""
