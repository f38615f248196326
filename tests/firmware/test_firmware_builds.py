"""Which firmware a device name boots and where TFLM comes from, found without configuration."""

from __future__ import annotations

import pytest

from device_harness import firmware_builds as fb
from device_harness.backends.qemu import QemuBackend
from device_harness.backends.renode import RenodeBackend
from device_harness.device_registry import resolve_device
from tinyfarm.errors import DeviceError


@pytest.fixture()
def builds(tmp_path, monkeypatch):
    """An empty build folder; ``make(preset)`` puts an ELF where that preset's build would."""
    monkeypatch.setattr(fb, "BUILD_DIR", tmp_path / "build")

    def make(preset: str):
        elf = tmp_path / "build" / preset / "fw.elf"
        elf.parent.mkdir(parents=True)
        elf.write_bytes(b"\x7fELF")
        return elf

    return make


def test_qemu_boots_the_reference_engine_build_when_it_exists_else_the_engine_less_one(builds):
    assert fb.device_elf("qemu") is None
    engine_less = builds("qemu-mps2-an386")
    assert fb.device_elf("qemu") == engine_less
    engine = builds("qemu-mps2-an386-tflm")
    assert fb.device_elf("qemu") == engine and fb.engine_elf("qemu") == engine
    assert fb.device_elf("qemu", "engine-less") == engine_less
    assert fb.device_elf("qemu", "cmsis-nn") is None
    cmsis = builds("qemu-mps2-an386-tflm-cmsis-nn")
    assert fb.device_elf("qemu", "cmsis-nn") == cmsis
    assert QemuBackend(variant="cmsis-nn").resolve_elf() == cmsis
    assert fb.device_elf("renode") is None
    renode = builds("renode-stm32f4-discovery-tflm")
    assert RenodeBackend().resolve_elf() == renode


def test_device_names_of_the_builds(builds):
    backend = resolve_device("qemu:cmsis-nn")
    assert isinstance(backend, QemuBackend) and backend.variant == "cmsis-nn" and backend.elf is None
    assert isinstance(resolve_device("renode:engine-less"), RenodeBackend)
    with pytest.raises(DeviceError, match="run `make firmware`"):
        QemuBackend(variant="cmsis-nn").resolve_elf()
    with pytest.raises(DeviceError, match="named builds: cmsis-nn, engine-less"):
        resolve_device("qemu:cmsis")


def test_tflm_is_found_in_tflm_root_else_beside_the_checkout(tmp_path, monkeypatch):
    tree = tmp_path / "tflm"
    (tree / "tensorflow/lite/micro").mkdir(parents=True)
    (tree / "tensorflow/lite/micro/micro_interpreter.h").write_text("")
    monkeypatch.setattr(fb, "SHARED_TFLM", tmp_path / "absent")
    monkeypatch.delenv("TFLM_ROOT", raising=False)
    assert fb.tflm_root() is None and "TFLM_ROOT unset" in fb.tflm_missing()
    assert "cannot be built here" in fb.build_hint("qemu", "cmsis-nn")
    monkeypatch.setattr(fb, "SHARED_TFLM", tree)
    assert fb.tflm_root() == tree.resolve() and fb.tflm_missing() is None
    monkeypatch.setenv("TFLM_ROOT", str(tmp_path / "elsewhere"))  # $TFLM_ROOT first, even when wrong
    assert fb.tflm_root() is None and "is not a TFLM tree" in fb.tflm_missing()
    assert fb.build_missing("qemu-mps2-an386") in (None, fb.toolchain_missing())  # no TFLM needed


def test_make_firmware_says_why_it_skips_a_preset(monkeypatch, capsys):
    monkeypatch.setattr(fb, "BUILDS", (fb.FirmwareBuild("qemu-mps2-an386-tflm", "qemu", "reference", None),))
    monkeypatch.setattr(fb, "build_missing", lambda preset: "no TFLM tree here")
    assert fb.main([]) == 0
    assert "skipping qemu-mps2-an386-tflm: no TFLM tree here" in capsys.readouterr().out
    assert fb.main(["qemu-mps2-an386-tflm"]) == 1  # asked for by name: a failure
