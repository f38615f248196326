"""Emulator and board backends: command construction (always), QEMU boot/stop/restart (when present)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from device_harness.backends.board import BoardBackend, pyocd_available
from device_harness.backends.qemu import QemuBackend, qemu_command
from device_harness.client import DeviceClient
from device_harness.backends.renode import RenodeBackend, renode_command, renode_script
from device_harness.device_registry import resolve_device
from tinyfarm.errors import DeviceError


def test_qemu_command_is_headless_deterministic_and_uses_the_inherited_socket():
    cmd = qemu_command("/fw.elf", 7)
    assert cmd[0] == "qemu-system-arm"
    assert cmd[cmd.index("-machine") + 1] == "mps2-an386"
    assert "-nographic" in cmd and cmd[cmd.index("-monitor") + 1] == "none"
    assert cmd[cmd.index("-icount") + 1] == "shift=0"
    assert "socket,id=uart0,fd=7,server=on,wait=off" in cmd
    assert cmd[cmd.index("-serial") + 1] == "chardev:uart0"
    assert "-icount" not in qemu_command("/fw.elf", 7, icount_shift=None)


def test_renode_script_and_command(tmp_path):
    elf = tmp_path / "fw.elf"
    elf.write_bytes(b"\x7fELF")
    script = renode_script(elf, 4567)
    assert "machine LoadPlatformDescription @platforms/boards/stm32f4_discovery-kit.repl" in script
    assert "tinyfarm.repl" in script
    assert 'emulation CreateServerSocketTerminal 4567 "uart" false' in script
    assert "connector Connect sysbus.usart2 uart" in script
    assert f"sysbus LoadELF @{elf.resolve()}" in script
    assert script.rstrip().endswith("start")
    cmd = renode_command(tmp_path / "x.resc")
    assert cmd[0] == "renode" and "--disable-xwt" in cmd and "--hide-log" in cmd
    assert cmd[-1] == f"include @{(tmp_path / 'x.resc').resolve()}"
    backend = RenodeBackend(elf)
    cmd = backend.prepare(4567)
    generated = Path(cmd[-1].split("@", 1)[1])
    assert generated.read_text() == script
    backend.stop()
    assert not generated.exists()  # the private script directory is cleaned up


def test_committed_resc_and_repl_exist():
    board = Path(__file__).resolve().parents[2] / "firmware" / "boards" / "renode-stm32f4-discovery"
    resc = (board / "tinyfarm.resc").read_text()
    assert "CreateServerSocketTerminal" in resc and "sysbus.usart2" in resc
    assert "ccm" in (board / "tinyfarm.repl").read_text()


def test_renode_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    elf = tmp_path / "fw.elf"
    elf.write_bytes(b"\x7fELF")
    with pytest.raises(DeviceError, match="renode not on PATH"):
        RenodeBackend(elf).start()


def test_device_strings_resolve_to_firmware_backends(tmp_path):
    elf = tmp_path / "fw.elf"
    elf.write_bytes(b"\x7fELF")
    q = resolve_device(f"qemu:{elf}")
    assert isinstance(q, QemuBackend) and q.elf == elf
    default = resolve_device("qemu")
    assert isinstance(default, QemuBackend) and default.elf is None and default.name == "qemu"
    r = resolve_device(f"renode:{elf}")
    assert isinstance(r, RenodeBackend) and r.elf == elf
    with pytest.raises(DeviceError, match="no such firmware ELF"):
        resolve_device("qemu:/nonexistent/fw.elf")
    with pytest.raises(DeviceError, match="no such firmware ELF"):
        resolve_device("renode:/nonexistent/fw.elf")


def test_qemu_rejects_a_file_that_is_not_an_elf(tmp_path):
    bogus = tmp_path / "fw.elf"
    bogus.write_text("not an elf")
    with pytest.raises(DeviceError, match="not an ELF"):
        QemuBackend(bogus).resolve_elf()


def test_board_backend(tmp_path):
    with pytest.raises(DeviceError, match="no such device"):
        BoardBackend(str(tmp_path / "ttyACM9")).start()
    port = tmp_path / "ttyFake"
    port.touch()
    b = BoardBackend(str(port), baud=921600)
    assert b.start() == str(port) and b.baud == 921600
    if not pyocd_available():
        with pytest.raises(DeviceError, match="pyOCD"):
            b.flash(port)
    assert isinstance(resolve_device(f"board:{port}"), BoardBackend)


@pytest.mark.emulator
def test_qemu_boots_stops_cleanly_and_restarts_after_qemu_dies(qemu_elf):
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm not on PATH")
    backend = QemuBackend(qemu_elf)
    with backend:
        with DeviceClient.open(backend.url, baud=backend.baud) as dev:
            assert dev.hello().board == "qemu-mps2-an386"
        pid = backend._proc.pid
        os.kill(pid, 9)  # QEMU itself dies (crash): the next start() boots a fresh one
        backend._proc.wait()
        assert not backend.alive
        backend.start()
        assert backend.boots == 2 and backend._proc.pid != pid
        with DeviceClient.open(backend.url, baud=backend.baud) as dev:
            assert dev.hello().tflm_version == "none"
        proc = backend._proc
    assert proc.poll() is not None and backend.url is None  # stopped on exit


@pytest.mark.emulator
def test_stm32f4_build_runs_on_qemu_netduinoplus2(stm32f4_elf):
    """Renode is not installable here; QEMU's netduinoplus2 (STM32F405) has the same USART2, SRAM
    and CCM, so the Renode board's firmware (RX-interrupt ring buffer, CCM arena, DWT-or-SysTick
    ticks) is exercised there: HELLO, a verified upload, NO_ENGINE, RESET."""
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm not on PATH")
    from device_harness.protocol import ErrorCode

    with QemuBackend(stm32f4_elf, machine="netduinoplus2", uart_index=1, icount_shift=None) as backend:
        with DeviceClient.open(backend.url, baud=backend.baud) as dev:
            info = dev.hello()
            assert info.board == "renode-stm32f4-discovery" and info.max_model_bytes == 98304
            assert info.tick_source == "systick"  # DWT reads 0 under QEMU: the firmware falls back
            result = dev.upload(bytes(range(256)) * 40)
            assert result.verified and not result.loaded
            with pytest.raises(DeviceError) as err:
                dev.run()
            assert err.value.code == ErrorCode.NO_ENGINE
            dev.reset()
            assert dev.hello().board == "renode-stm32f4-discovery"
