"""QemuBackend: the tinyfarm firmware booted on QEMU's ``mps2-an386`` (Cortex-M4), UART on loopback TCP.

``--device qemu`` boots the reference-kernel TFLM build (``make firmware``; outputs identical to the
host TFLM), else the engine-less one; ``qemu:cmsis-nn`` the CMSIS-NN build, ``qemu:engine-less`` the
engine-less one (see :mod:`device_harness.firmware_builds`); ``qemu:path/to/fw.elf`` boots that ELF.
The firmware's UART0 is a QEMU socket chardev (``nodelay``: each byte goes out at once) on a
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

import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from device_harness.backends.base import Backend, stop_process
from device_harness.boards import get_board
from device_harness.device_registry import register_device
from device_harness.firmware_builds import VARIANTS, device_elf, firmware_elf
from tinyfarm import child_process
from tinyfarm.errors import DeviceError

QEMU_MACHINE = "mps2-an386"


def qemu_command(elf: Path | str, listen_fd: int, *, machine: str = QEMU_MACHINE,
                 icount_shift: int | None = 0, extra_args: tuple[str, ...] = (),
                 qemu: str = "qemu-system-arm", uart_index: int = 0) -> list[str]:
    """The qemu-system-arm command line: headless, no monitor, the machine's UART ``uart_index``
    (0 = UART0 on mps2; 1 = USART2 on the STM32 machines) on an inherited listening socket."""
    cmd = [qemu, "-machine", machine, "-nographic", "-monitor", "none", "-kernel", str(elf),
           "-chardev", f"socket,id=uart0,fd={listen_fd},server=on,wait=off,nodelay=on"]
    cmd += ["-serial", "null"] * uart_index + ["-serial", "chardev:uart0"]
    if icount_shift is not None:
        cmd += ["-icount", f"shift={icount_shift}"]
    return cmd + list(extra_args)


class QemuBackend(Backend):
    """``QemuBackend(elf=None, machine="mps2-an386", icount_shift=0, extra_args=(), uart_index=0, variant=None)``.

    ``elf=None`` means the build ``--device qemu[:variant]`` names (:func:`device_elf`). Other
    machines work for firmware built for them, e.g. the STM32F4 build on ``netduinoplus2`` (STM32F405: same USART2 and memory map) with
    ``uart_index=1``. Use as a context manager or call
    :meth:`start`/:meth:`stop`; :meth:`restart` boots a fresh QEMU (a power cycle).
    """

    def __init__(self, elf: str | Path | None = None, *, machine: str = QEMU_MACHINE,
                 icount_shift: int | None = 0, extra_args: tuple[str, ...] = (),
                 qemu: str = "qemu-system-arm", uart_index: int = 0, variant: str | None = None) -> None:
        super().__init__()
        self.variant = variant
        self.uart_index = uart_index
        self.elf = Path(elf) if elf else None
        self.machine = machine
        self.icount_shift = icount_shift
        # -icount shift=N: one instruction = 2^N ns of virtual time
        self.instructions_per_second = 1e9 / 2 ** icount_shift if icount_shift is not None else None
        self.extra_args = tuple(extra_args)
        self.qemu = qemu
        self.profile = get_board("mps2-an386") if machine == QEMU_MACHINE else None
        self.baud = None  # QEMU's UART is not paced: the line is as fast as the emulator
        self.name = f"qemu:{self.elf or variant}" if (self.elf or variant) else "qemu"
        self._proc: subprocess.Popen | None = None
        self._log: Any = None
        self.boots = 0

    def resolve_elf(self) -> Path:
        return firmware_elf("qemu", self.elf, self.variant)

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
        info.update(elf=str(self.elf or device_elf("qemu", self.variant)), machine=self.machine,
                    icount_shift=self.icount_shift, tick_source="qemu-icount")
        return info


@register_device("qemu")
def _qemu_device(arg: str | None, **options: Any) -> Backend:
    """``qemu`` = the reference-kernel TFLM build (else the engine-less one); ``qemu:cmsis-nn``,
    ``qemu:engine-less`` = those builds; ``qemu:PATH.elf`` = that ELF."""
    if arg and ("qemu", arg) in VARIANTS:
        return QemuBackend(variant=arg)
    if arg:
        path = Path(arg).expanduser()
        if not path.exists():
            raise DeviceError(f"qemu:{arg}: no such firmware ELF (named builds: "
                              f"{', '.join(sorted(v for e, v in VARIANTS if e == 'qemu'))})")
        return QemuBackend(path)
    return QemuBackend()
