"""A farm of devices: inventory (farm file), discovery, cross-process locks, the models x devices
runner, the SQLite results store and the HTML report.

The split follows labgrid's: the farm file says *what* a device is and how to reach it (its
resource: a serial URL, or launch settings for an emulator or twin); the harness backends are the
drivers that start it and hand back a pyserial URL; the protocol client talks to it.
"""
