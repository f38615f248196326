"""``../shared`` beside the checkout: what no reachable registry carries, found without configuration.

TFLM's C++ sources (``tflm/``, compiled into the engine firmware), Renode (``renode/``) and
third-party ``.tflite`` models (``models/``: TFLM's examples, MLPerf Tiny's reference models).
Dependencies, used in place and never copied into the repository; a clone without them still
works, and what needs them says so (the tests skip with the reason).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
SHARED_TFLM = SHARED / "tflm"
SHARED_RENODE = SHARED / "renode" / "renode"
#: third-party models; ``$TINYFARM_SHARED_MODELS`` points elsewhere
SHARED_MODELS = Path(os.environ.get("TINYFARM_SHARED_MODELS", SHARED / "models"))
