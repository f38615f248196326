"""RenodeBackend: the tinyfarm firmware on Renode's STM32F4-Discovery, USART2 on a pseudo-terminal.

``--device renode`` boots the ``renode-stm32f4-discovery-tflm`` build (reference kernels; ``make
firmware``), else the engine-less one; ``renode:engine-less`` that one; ``renode:path/to/fw.elf`` that
ELF. Renode is found without configuration: ``$TINYFARM_RENODE``, else ``renode`` on PATH, else
``../shared/renode/renode`` beside the checkout.

It runs headless (``--disable-xwt --console --plain``, no monitor port) the committed recipe
``firmware/boards/renode-stm32f4-discovery/tinyfarm.resc`` with absolute paths set as its variables.
The UART is a pseudo-terminal (``CreateUartPtyTerminal``), not a socket: Renode's server socket
terminal listens on every interface, and tinyfarm's listeners bind 127.0.0.1 only; a pty is no
network at all. Every Renode gets a private ``TMPDIR`` (at start Renode deletes every
``$TMPDIR/renode-*`` that is not its own), removed when it stops.

Renode's own error lines (``There was an error executing command …``, ``Error E35: …``) end
:meth:`start` at once with that line, instead of a silent wait. ``stop()`` asks Renode to quit, then
ends its whole process group (the launcher is a shell script running mono); started with
:func:`tinyfarm.child_process.spawn`, it also dies with tinyfarm, however tinyfarm ends.

Ticks: Renode 1.15 has no DWT, so the firmware counts SysTick at its 16 MHz core clock, and the
recipe sets the CPU to 16 MIPS: one tick is one emulated instruction, not a cycle of the real part.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from device_harness.backends.base import Backend, stop_process
from device_harness.boards import get_board
from device_harness.device_registry import register_device
from device_harness.firmware_builds import FIRMWARE_DIR, VARIANTS, device_elf, firmware_elf
from device_harness.shared_folder import SHARED_RENODE
from tinyfarm import child_process
from tinyfarm.errors import DeviceError

BOARD_DIR = FIRMWARE_DIR / "boards" / "renode-stm32f4-discovery"
RECIPE = BOARD_DIR / "tinyfarm.resc"
REPL = BOARD_DIR / "tinyfarm.repl"
#: the recipe's `cpu PerformanceInMips 16`: instructions per second of virtual time
RENODE_MIPS = 16
#: Renode's lines that mean the recipe failed (the monitor then sits idle, saying nothing more)
_ERROR_LINE = re.compile(r"^(There was an error executing command.*|Error E\d+:.*|.*\[ERROR\].*)$", re.M)


def find_renode() -> str | None:
    """``$TINYFARM_RENODE``, else ``renode`` on PATH, else ``../shared/renode/renode``; None if none."""
    env = os.environ.get("TINYFARM_RENODE")
    if env:
        return shutil.which(env) or (env if os.access(env, os.X_OK) else None)
    return shutil.which("renode") or (str(SHARED_RENODE) if os.access(SHARED_RENODE, os.X_OK) else None)


def renode_missing() -> str | None:
    """Why Renode cannot run here (None when it can)."""
    renode = find_renode()
    if renode is None:
        env = os.environ.get("TINYFARM_RENODE")
        return (f"TINYFARM_RENODE={env} is not an executable" if env else
                f"renode not found: TINYFARM_RENODE unset, no renode on PATH, no {SHARED_RENODE}")
    if shutil.which("mono") is None and Path(renode).resolve() == SHARED_RENODE.resolve():
        return f"{SHARED_RENODE} runs on Mono: apt-get install mono-complete (`make test` does as root)"
    return None


def renode_command(elf: Path | str, uart: Path | str, *, renode: str = "renode",
                   repl: Path | str = REPL, recipe: Path | str = RECIPE) -> list[str]:
    """Headless Renode running the committed recipe on ``elf``, its UART a pty linked at ``uart``."""
    settings = (f'$elf=@{Path(elf).resolve()}; $repl=@{Path(repl).resolve()}; '
                f'$uart="{Path(uart).resolve()}"; include @{Path(recipe).resolve()}')
    return [renode, "--disable-xwt", "--console", "--plain", "--port", "-1", "-e", settings]


class RenodeBackend(Backend):
    """``RenodeBackend(elf=None, renode=None, start_timeout_s=60, variant=None, repl=REPL)``; a
    context manager. ``repl`` is the platform overlay (the committed one unless a test says)."""

    def __init__(self, elf: str | Path | None = None, *, renode: str | None = None,
                 start_timeout_s: float = 60.0, variant: str | None = None, repl: Path | str = REPL) -> None:
        super().__init__()
        self.repl = Path(repl)
        self.elf = Path(elf) if elf else None
        self.variant = variant
        self.renode = renode
        self.start_timeout_s = start_timeout_s
        self.profile = get_board("stm32f4-discovery")
        self.baud = None  # Renode's UART model is not paced at the baud rate
        self.instructions_per_second = RENODE_MIPS * 1e6
        self.name = f"renode:{self.elf or variant}" if (self.elf or variant) else "renode"
        self._proc: subprocess.Popen | None = None
        self._dir: tempfile.TemporaryDirectory | None = None
        self._log: Any = None

    def resolve_elf(self) -> Path:
        return firmware_elf("renode", self.elf, self.variant)

    def log(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def _failure(self, what: str) -> DeviceError:
        """Renode's own error lines (or the log's tail) in one DeviceError; Renode is stopped."""
        text = self.log()
        errors = [m.strip() for m in _ERROR_LINE.findall(text)]
        detail = " | ".join(errors[:3]) or " | ".join(text.strip().splitlines()[-3:]) or "no output"
        self.stop()
        return DeviceError(f"renode {what}: {detail}")

    def start(self) -> str:
        if self._proc is not None and self._proc.poll() is None and self.url:
            return self.url
        renode = self.renode or find_renode()
        if renode is None:
            raise DeviceError(renode_missing() or "renode not found")
        elf = self.resolve_elf()
        self._dir = tempfile.TemporaryDirectory(prefix="tinyfarm-renode-")
        uart = Path(self._dir.name) / "uart"
        self._log = tempfile.TemporaryFile()
        env = dict(os.environ, TMPDIR=self._dir.name)  # Renode cleans $TMPDIR/renode-* at start
        # stdin stays open: the console would quit at EOF. `renode` is a launcher script running
        # mono: guard its whole process group.
        cmd = renode_command(elf, uart, renode=renode, repl=self.repl)
        self._proc = child_process.spawn(cmd, stdin=subprocess.PIPE, stdout=self._log, stderr=subprocess.STDOUT,
                                         env=env, cwd=self._dir.name, new_session=True, guard_group=True)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise self._failure("exited at start-up")
            if _ERROR_LINE.search(self.log()):
                raise self._failure("refused the firmware's recipe")
            if uart.exists() and "Machine started" in self.log():
                self.url = str(uart.resolve())  # the pty's /dev/pts/N: a plain serial port
                return self.url
            time.sleep(0.1)
        raise self._failure(f"did not start the machine within {self.start_timeout_s:.0f} s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        self.url = None
        if proc is not None:
            if proc.poll() is None:
                try:
                    proc.stdin.write(b"quit\n")
                    proc.stdin.flush()
                    proc.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            stop_process(proc)  # SIGTERM/SIGKILL if still running; ends its group guard either way
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(elf=str(self.elf or device_elf("renode", self.variant)), emulator="renode",
                    tick_source="renode-instructions")
        return info


@register_device("renode")
def _renode_device(arg: str | None, **options: Any) -> Backend:
    """``renode`` = the reference-kernel TFLM build (else the engine-less one); ``renode:engine-less``;
    ``renode:PATH.elf`` = that ELF."""
    if arg and ("renode", arg) in VARIANTS:
        return RenodeBackend(variant=arg)
    if arg and not Path(arg).expanduser().exists():
        raise DeviceError(f"renode:{arg}: no such firmware ELF")
    return RenodeBackend(Path(arg).expanduser() if arg else None)
