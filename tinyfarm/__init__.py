"""tinyfarm: take a TensorFlow model to a microcontroller and prove on the device that it works.

The code is laid out by concern:

- ``pipeline``        compression stages (baseline, prune, QAT, PTQ, distill, export, evaluate)
- ``tinyfarm_datasets`` (folder ``datasets/``) the built-in and user data sets
- ``device_harness``  wire protocol, pyserial transports, device backends, farm, pytest plugin
- ``firmware/``       the C++ TFLite Micro firmware that speaks the protocol
- ``tinyfarm``        the ``tinyfarm`` command and what every part shares (errors, provenance)
"""

import os as _os

__version__ = "0.1.0"

# labgrid talks gRPC, and tinyfarm starts children (twins, emulators, ser2net) while a labgrid
# session's threads run: gRPC's fork handlers then crash or hang a child between fork and exec
# (seen: ser2net killed by SIGSEGV, an exporter that never ran, one lab start in three). They must
# be off before grpc is imported, so here, where every tinyfarm entry point starts. (labgrid's
# pytest plugin imports grpc when pytest starts: next to it, run ``pytest -p tinyfarm`` so
# tinyfarm's plugin loads first, or set GRPC_ENABLE_FORK_SUPPORT=0 yourself.)
_os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
_os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
