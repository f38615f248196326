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


def _built_firmware(preset: str) -> Path:
    from device_harness.backends.qemu import build_preset, toolchain_missing

    reason = toolchain_missing()
    if reason:
        pytest.skip(reason)
    return build_preset(preset)


@pytest.fixture(scope="session")
def qemu_elf() -> Path:
    """The engine-less firmware for QEMU's mps2-an386, built once (skips without the toolchain)."""
    return _built_firmware("qemu-mps2-an386")


@pytest.fixture(scope="session")
def stm32f4_elf() -> Path:
    """The STM32F4 Discovery firmware (Renode's board; QEMU's netduinoplus2 runs it too)."""
    return _built_firmware("renode-stm32f4-discovery")
