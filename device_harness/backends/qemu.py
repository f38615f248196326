"""QemuBackend: the tinyfarm firmware booted on QEMU's ``mps2-an386`` (Cortex-M4), UART on loopback TCP.

``--device qemu`` boots the default preset's build (``firmware/build/qemu-mps2-an386/*.elf``);
``--device qemu:path/to/fw.elf`` boots that ELF. The firmware's UART0 is a QEMU socket chardev on a
listening socket this process binds first and hands to QEMU (``fd=``), so there is no race for a
free port; the client connects with pyserial's ``socket://127.0.0.1:PORT``.

Timing: QEMU runs with ``-icount shift=0``: one emulated instruction = 1 ns of virtual time, and
the firmware's SysTick (25 MHz in that virtual time) counts *emulated instruction time*, not cycles
of real silicon. Ticks are deterministic for a given build and input; HELLO reports
``tick_source = "qemu-icount"``.

Faults: the firmware resets itself after a HardFault (and reports DEVICE_FAULT on the next
request); if QEMU itself exits, :meth:`ensure_running` (called by :meth:`start`) boots a fresh one.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from device_harness.backends.base import Backend, stop_process
from device_harness.boards import get_board
from device_harness.device_registry import register_device
from tinyfarm import child_process
from tinyfarm.errors import DeviceError

REPO_ROOT = Path(__file__).resolve().parents[2]
FIRMWARE_DIR = REPO_ROOT / "firmware"
DEFAULT_PRESET = "qemu-mps2-an386"
QEMU_MACHINE = "mps2-an386"


def preset_build_dir(preset: str = DEFAULT_PRESET) -> Path:
    return FIRMWARE_DIR / "build" / preset


def preset_elf(preset: str = DEFAULT_PRESET) -> Path | None:
    """The ELF a CMake preset's build produced, or None when it has not been built."""
    elfs = sorted(preset_build_dir(preset).glob("*.elf"))
    return elfs[0] if elfs else None


def toolchain_missing() -> str | None:
    """Why the firmware cannot be built here (None when cmake and arm-none-eabi-gcc are present)."""
    for tool in ("cmake", "arm-none-eabi-gcc", "arm-none-eabi-size"):
        if shutil.which(tool) is None:
            return f"{tool} not on PATH (install cmake and gcc-arm-none-eabi)"
    return None


def build_preset(preset: str = DEFAULT_PRESET, *, timeout_s: float = 600.0) -> Path:
    """Configure and build a firmware preset (``cmake --preset P && cmake --build --preset P``).

    Returns the ELF. DeviceError with the tail of the build log when the toolchain is missing or the
    build fails.
    """
    reason = toolchain_missing()
    if reason:
        raise DeviceError(f"cannot build firmware preset {preset}: {reason}")
    for cmd in (["cmake", "--preset", preset], ["cmake", "--build", "--preset", preset, "-j2"]):
        proc = subprocess.run(cmd, cwd=FIRMWARE_DIR, capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise DeviceError(f"`{' '.join(cmd)}` failed in {FIRMWARE_DIR}:\n{tail}")
    elf = preset_elf(preset)
    if elf is None:
        raise DeviceError(f"the {preset} build produced no .elf in {preset_build_dir(preset)}")
    return elf


def qemu_command(elf: Path | str, listen_fd: int, *, machine: str = QEMU_MACHINE,
                 icount_shift: int | None = 0, extra_args: tuple[str, ...] = (),
                 qemu: str = "qemu-system-arm", uart_index: int = 0) -> list[str]:
    """The qemu-system-arm command line: headless, no monitor, the machine's UART ``uart_index``
    (0 = UART0 on mps2; 1 = USART2 on the STM32 machines) on an inherited listening socket."""
    cmd = [qemu, "-machine", machine, "-nographic", "-monitor", "none", "-kernel", str(elf),
           "-chardev", f"socket,id=uart0,fd={listen_fd},server=on,wait=off"]
    cmd += ["-serial", "null"] * uart_index + ["-serial", "chardev:uart0"]
    if icount_shift is not None:
        cmd += ["-icount", f"shift={icount_shift}"]
    return cmd + list(extra_args)


class QemuBackend(Backend):
    """``QemuBackend(elf=None, machine="mps2-an386", icount_shift=0, extra_args=(), uart_index=0)``.

    ``elf=None`` means the default preset's build. Other machines work for firmware built for them,
    e.g. the STM32F4 build on ``netduinoplus2`` (STM32F405: same USART2 and memory map) with
    ``uart_index=1``. Use as a context manager or call
    :meth:`start`/:meth:`stop`; :meth:`restart` boots a fresh QEMU (a power cycle).
    """

    def __init__(self, elf: str | Path | None = None, *, machine: str = QEMU_MACHINE,
                 icount_shift: int | None = 0, extra_args: tuple[str, ...] = (),
                 qemu: str = "qemu-system-arm", uart_index: int = 0) -> None:
        super().__init__()
        self.uart_index = uart_index
        self.elf = Path(elf) if elf else None
        self.machine = machine
        self.icount_shift = icount_shift
        self.extra_args = tuple(extra_args)
        self.qemu = qemu
        self.profile = get_board("mps2-an386") if machine == QEMU_MACHINE else None
        self.baud = None  # QEMU's UART is not paced: the line is as fast as the emulator
        self.name = f"qemu:{self.elf}" if self.elf else "qemu"
        self._proc: subprocess.Popen | None = None
        self._log: Any = None
        self.boots = 0

    def resolve_elf(self) -> Path:
        elf = self.elf or preset_elf(DEFAULT_PRESET)
        if elf is None:
            raise DeviceError(
                f"no firmware built for {DEFAULT_PRESET}: run `cmake --preset {DEFAULT_PRESET} && "
                f"cmake --build --preset {DEFAULT_PRESET}` in {FIRMWARE_DIR}, or use qemu:PATH.elf")
        if not elf.is_file():
            raise DeviceError(f"firmware ELF {elf} does not exist")
        with open(elf, "rb") as fh:
            if fh.read(4) != b"\x7fELF":
                raise DeviceError(f"{elf} is not an ELF file")
        return elf

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 5) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return "\n".join(self._log.read().decode(errors="replace").strip().splitlines()[-lines:])

    def start(self) -> str:
        return self.ensure_running()

    def ensure_running(self) -> str:
        """Boot QEMU unless it is running; a QEMU that exited (crash, lockup exit) is booted again."""
        if self.alive and self.url:
            return self.url
        if self._proc is not None:
            self.stop()
        if shutil.which(self.qemu) is None:
            raise DeviceError(f"{self.qemu} not found on PATH (install the qemu-system-arm package)")
        elf = self.resolve_elf()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            port = listener.getsockname()[1]
            self._log = tempfile.TemporaryFile()
            cmd = qemu_command(elf, listener.fileno(), machine=self.machine,
                               icount_shift=self.icount_shift, extra_args=self.extra_args,
                               qemu=self.qemu, uart_index=self.uart_index)
            self._proc = child_process.spawn(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                             stderr=subprocess.STDOUT, pass_fds=(listener.fileno(),),
                                             new_session=True)
        finally:
            listener.close()  # QEMU holds its own copy of the listening socket
        try:
            self._proc.wait(timeout=0.2)  # a bad command line fails at once
        except subprocess.TimeoutExpired:
            pass
        if self._proc.poll() is not None:
            tail = self.log_tail()
            self.stop()
            raise DeviceError(f"QEMU exited at start-up: {tail or 'no output'}")
        self.boots += 1
        self.url = f"socket://127.0.0.1:{port}"
        return self.url

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        self.url = None
        if proc is not None:
            stop_process(proc)  # QEMU shuts down cleanly on SIGTERM
        if self._log is not None:
            self._log.close()
            self._log = None

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(elf=str(self.elf or preset_elf(DEFAULT_PRESET)), machine=self.machine,
                    icount_shift=self.icount_shift, tick_source="qemu-icount")
        return info


@register_device("qemu")
def _qemu_device(arg: str | None, **options: Any) -> Backend:
    """``qemu`` = the default preset's build; ``qemu:PATH.elf`` = that ELF."""
    if arg:
        path = Path(os.path.expanduser(arg))
        if not path.exists():
            raise DeviceError(f"qemu:{arg}: no such firmware ELF")
        return QemuBackend(path)
    return QemuBackend()
