"""Suite-wide settings. TF-MOT needs Keras 2, which must be chosen before TensorFlow is imported."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# Third-party models (TFLM's examples) placed beside the checkout; tests that need them skip if absent.
SHARED_MODELS = REPO.parent / "shared" / "models"


@pytest.fixture(scope="session")
def shared_models() -> Path:
    if not SHARED_MODELS.is_dir():
        pytest.skip(f"third-party models not found at {SHARED_MODELS}")
    return SHARED_MODELS
