"""Fixtures for the firmware tests: builds run once per session and skip when a tool is missing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"


@pytest.fixture(scope="session")
def fuzz_binary() -> Path:
    """The firmware's parser + dispatcher built for this machine with ASan/UBSan (host-fuzz preset)."""
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not on PATH: cannot build the host fuzz harness")
    for cmd in (["cmake", "--preset", "host-fuzz"], ["cmake", "--build", "--preset", "host-fuzz", "-j2"]):
        proc = subprocess.run(cmd, cwd=FIRMWARE, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return FIRMWARE / "build" / "host-fuzz" / "tf_fuzz_frames"
