"""tinyfarm: take a TensorFlow model to a microcontroller and prove on the device that it works.

The code is laid out by concern:

- ``pipeline``        compression stages (baseline, prune, QAT, PTQ, distill, export, evaluate)
- ``tinyfarm_datasets`` (folder ``datasets/``) the built-in and user data sets
- ``device_harness``  wire protocol, pyserial transports, device backends, farm, pytest plugin
- ``firmware/``       the C++ TFLite Micro firmware that speaks the protocol
- ``tinyfarm``        the ``tinyfarm`` command and what every part shares (errors, provenance)
"""

__version__ = "0.1.0"
