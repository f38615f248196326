"""The cost model's TFLM flash (``tinyfarm fit``) is what ``make firmware``'s builds take: the TFLM
build's flash minus the engine-less build's, per kernel library, re-measured on every CI run."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from device_harness.fit import tflm_flash

pytestmark = pytest.mark.slow


def flash_bytes(elf: Path) -> int:
    """text + data of ``elf`` (what the footprint line of the build prints as flash)."""
    if shutil.which("arm-none-eabi-size") is None:
        pytest.skip("arm-none-eabi-size not on PATH")
    out = subprocess.run(["arm-none-eabi-size", "--format=berkeley", str(elf)], capture_output=True,
                         text=True, check=True).stdout.splitlines()[1].split()
    return int(out[0]) + int(out[1])


@pytest.mark.parametrize("kernels, fixture", [("reference", "qemu_tflm_elf"), ("cmsis-nn", "qemu_cmsis_nn_elf")])
def test_the_cost_models_tflm_flash_is_what_the_builds_take(kernels, fixture, qemu_elf, request):
    measured = flash_bytes(request.getfixturevalue(fixture)) - flash_bytes(qemu_elf)
    stated, _ = tflm_flash(kernels)
    assert abs(stated - measured) <= 0.02 * measured, (
        f"cost_model.yaml tflm_flash_bytes.{kernels} is {stated:,} B, the builds take {measured:,} B: "
        "re-measure it (firmware/README.md, Build)")
