"""The default pipeline's deployable (LUT-compressed weights, DECODE operators) on the firmware users
flash: the run's own deploy stage measures it on QEMU when ``make firmware`` built the engine, and
the CMSIS-NN and Renode builds give the host TFLM's outputs for the whole digits test split too."""

from __future__ import annotations

import json

import pytest

from device_harness.backends.qemu import QemuBackend
from device_harness.backends.renode import RenodeBackend
from device_harness.firmware_builds import engine_elf
from device_harness.session import DeviceSession

pytestmark = [pytest.mark.slow, pytest.mark.emulator]


@pytest.fixture(scope="module")
def digits_test():
    """The digits test split the pipeline evaluates (450 samples)."""
    from tinyfarm_datasets import load_dataset

    data = load_dataset("digits", val_fraction=0.1, seed=0)
    return data.x_test, data.y_test


def deployable(out) -> tuple[bytes, bytes, dict]:
    """(the deployable as stored, its uncompressed twin for LiteRT, report.json) of a run folder."""
    report = json.loads((out / "report.json").read_text())
    dep = report["deployable"]
    assert dep["tflm_only"] and dep["compression"]["methods"].get("lut"), dep  # DECODE operators
    variant = next(v for v in report["variants"] if v["name"] == dep["copy_of"])
    return (out / dep["path"]).read_bytes(), (out / variant["path"]).read_bytes(), report


def test_the_runs_deploy_stage_measures_on_the_emulated_cortex_m4(digits_short_run, qemu, qemu_tflm_elf):
    proc, out, _ = digits_short_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    if engine_elf("qemu").stat().st_mtime > (out / "report.json").stat().st_mtime - 60:
        pytest.skip("the QEMU engine was built while the run was under way (run `make firmware` first)")
    _, _, report = deployable(out)
    emu = report["emulator"]
    assert emu["board"] == "qemu-mps2-an386" and emu["kernels"] == "reference", emu
    assert emu["samples"] == 450 and emu["reference"] == "host-tflm"
    assert emu["identical_share"] == 1.0, emu   # the firmware's kernels are the host TFLM's
    assert emu["accuracy"] == report["deploy"]["accuracy"]  # the twin: the host TFLM
    assert emu["instructions"] == round(emu["latency"]["median_ticks"] * 40)  # -icount shift=0, 25 MHz
    assert emu["arena_used_bytes"] > 0 and emu["tick_source"] == "qemu-icount"
    text = (out / "report.md").read_text()
    assert "## On the emulated Cortex-M4" in text and "counts *instructions*, not cycles" in text
    assert "instructions per inference" in proc.stdout + proc.stderr


@pytest.mark.parametrize("build", ["qemu:cmsis-nn", "renode"])
def test_the_deployable_gives_the_host_tflms_outputs_on_every_engine_build(build, digits_short_run,
                                                                          request, digits_test):
    _, out, _ = digits_short_run
    if build == "renode":
        request.getfixturevalue("renode")
        backend = RenodeBackend(request.getfixturevalue("renode_tflm_elf"))
    else:
        request.getfixturevalue("qemu")
        backend = QemuBackend(request.getfixturevalue("qemu_cmsis_nn_elf"))
    model, uncompressed, _ = deployable(out)
    x, y = digits_test
    with DeviceSession(backend, name=build) as session:
        session.upload(model)
        result = session.evaluate(model, x, y, dataset="digits", reference=uncompressed)
        decompression = session.decompression()
    assert result.reference == "host-tflm" and result.samples == len(x)
    assert result.identical_share == 1.0, result.references
    if build == "renode":  # no alternate decompression memory on the F4: DECODE writes into the arena
        assert decompression == (0, 0)
