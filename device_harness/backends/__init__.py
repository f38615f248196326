"""Backends: things that start a device and hand back its pyserial URL (see :mod:`.base`)."""
