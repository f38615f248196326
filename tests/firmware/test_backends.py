"""Emulator and board backends: command construction (always), QEMU boot/stop/restart (when present)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from device_harness.backends.board import BoardBackend, pyocd_available
from device_harness.backends.qemu import QemuBackend, qemu_command
from device_harness.client import DeviceClient
from device_harness.backends import renode as renode_backend
from device_harness.backends.renode import (
    RECIPE, REPL, RenodeBackend, find_renode, renode_command, renode_missing,
)
from device_harness.device_registry import resolve_device
from tinyfarm.errors import DeviceError


def test_qemu_command_is_headless_deterministic_and_uses_the_inherited_socket():
    cmd = qemu_command("/fw.elf", 7)
    assert cmd[0] == "qemu-system-arm"
    assert cmd[cmd.index("-machine") + 1] == "mps2-an386"
    assert "-nographic" in cmd and cmd[cmd.index("-monitor") + 1] == "none"
    assert cmd[cmd.index("-icount") + 1] == "shift=0"
    # nodelay: each UART byte QEMU writes goes out at once (Nagle + delayed ACKs cost ~40 ms a reply)
    assert "socket,id=uart0,fd=7,server=on,wait=off,nodelay=on" in cmd
    assert cmd[cmd.index("-serial") + 1] == "chardev:uart0"
    assert "-icount" not in qemu_command("/fw.elf", 7, icount_shift=None)


def test_renode_runs_the_committed_recipe_headless_on_a_pty(tmp_path):
    elf = tmp_path / "fw.elf"
    elf.write_bytes(b"\x7fELF")
    cmd = renode_command(elf, tmp_path / "uart", renode="/opt/renode")
    assert cmd[0] == "/opt/renode" and "--disable-xwt" in cmd and "--console" in cmd
    assert cmd[cmd.index("--port") + 1] == "-1"  # no monitor socket
    settings = cmd[-1]
    assert f"$elf=@{elf.resolve()}" in settings and f'$uart="{(tmp_path / "uart").resolve()}"' in settings
    assert settings.endswith(f"include @{RECIPE.resolve()}")


def test_committed_recipe_and_overlay_open_no_socket_and_no_url():
    resc, repl = RECIPE.read_text(), REPL.read_text()
    assert "CreateUartPtyTerminal" in resc and "sysbus.usart2" in resc
    commands = "\n".join(ln for ln in resc.splitlines() if not ln.startswith("#"))
    assert "CreateServerSocketTerminal" not in commands  # Renode's socket terminal listens on 0.0.0.0
    assert "ccm" in repl and "Frequency: 16000000" in repl
    assert "systickFrequency:" not in repl  # a constructor attribute: Renode refuses it (E35)
    for text in (resc, repl):
        assert "http:" not in text and "https:" not in text


def test_renode_is_found_without_configuration(monkeypatch, tmp_path):
    monkeypatch.delenv("TINYFARM_RENODE", raising=False)
    fake = tmp_path / "bin" / "renode"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))
    assert find_renode() == str(fake)                        # on PATH
    monkeypatch.setenv("TINYFARM_RENODE", str(tmp_path / "other"))
    assert find_renode() is None and "not an executable" in renode_missing()
    monkeypatch.delenv("TINYFARM_RENODE")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(renode_backend, "SHARED_RENODE", fake)
    assert find_renode() == str(fake)                        # ../shared/renode/renode


def test_renode_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("TINYFARM_RENODE", raising=False)
    monkeypatch.setattr(renode_backend, "SHARED_RENODE", tmp_path / "none")
    elf = tmp_path / "fw.elf"
    elf.write_bytes(b"\x7fELF")
    with pytest.raises(DeviceError, match="renode not found"):
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


def process_group(pgid: int) -> list[int]:
    """The live processes of process group ``pgid`` (Renode's launcher starts a session of its own)."""
    pids = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
            pids.append(int(entry))
    return pids


def inet_sockets(pids: list[int]) -> list[str]:
    """The TCP/UDP sockets (IPv4 and IPv6) the processes ``pids`` hold, as /proc/net lines."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    held = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            if line.split()[9] in inodes:
                held.append(f"{table}: {line.strip()}")
    return held


@pytest.mark.emulator
def test_engine_less_stm32f4_firmware_on_renode(stm32f4_elf, renode):
    """The Renode board's firmware (RX-interrupt ring buffer, CCM arena, SysTick ticks) on the real
    Renode: HELLO, a verified upload, NO_ENGINE, RESET; Renode is gone after stop()."""
    from device_harness.protocol import ErrorCode

    with RenodeBackend(stm32f4_elf) as backend:
        with DeviceClient.open(backend.url, baud=backend.baud) as dev:
            info = dev.hello()
            assert info.board == "renode-stm32f4-discovery" and info.max_model_bytes == 98304
            assert info.tick_source == "systick" and info.tick_hz == 16_000_000  # no DWT in Renode 1.15
            result = dev.upload(bytes(range(256)) * 40)
            assert result.verified and not result.loaded
            with pytest.raises(DeviceError) as err:
                dev.run()
            assert err.value.code == ErrorCode.NO_ENGINE
            dev.reset()
            assert dev.hello().board == "renode-stm32f4-discovery"
        proc = backend._proc
        renode_pids = process_group(proc.pid)
        assert any("Renode.exe" in Path(f"/proc/{p}/cmdline").read_text() for p in renode_pids)
        assert inet_sockets(renode_pids) == []  # no network at all: the UART is a pty
    assert proc.poll() is not None and backend.url is None


@pytest.mark.emulator
def test_renode_refusing_the_recipe_is_its_own_error_line_at_once(stm32f4_elf, renode, tmp_path):
    bad = tmp_path / "bad.repl"
    bad.write_text("nvic:\n    systickFrequency: 16000000\n")  # a constructor attribute: E35
    t0 = time.monotonic()
    with pytest.raises(DeviceError) as err:
        RenodeBackend(stm32f4_elf, repl=bad, start_timeout_s=60).start()
    assert time.monotonic() - t0 < 30, "waited for the timeout instead of reading Renode's error"
    assert "Error E35" in str(err.value) and "\n" not in str(err.value)
