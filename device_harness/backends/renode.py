"""RenodeBackend: the tinyfarm firmware on Renode's STM32F4-Discovery, USART2 on a TCP server socket.

``--device renode:path/to/fw.elf`` (or ``renode`` = the ``renode-stm32f4-discovery`` preset's build).
Renode runs headless (``--disable-xwt --plain --hide-log``) on a script generated from the firmware's
``boards/renode-stm32f4-discovery/tinyfarm.resc`` recipe with absolute paths and a free port; the
UART is a server socket terminal (``emitConfig=false``: raw bytes, no telnet negotiation), reached
with pyserial's ``socket://``. ``stop()`` asks Renode to quit, then terminates it.

Renode is not installable in every environment (no Debian/PyPI package): without ``renode`` on
PATH, :meth:`start` raises a clear DeviceError and the tests skip with "renode not on PATH".
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from device_harness.backends.base import Backend, free_port, stop_process
from device_harness.backends.qemu import FIRMWARE_DIR, preset_elf
from device_harness.boards import get_board
from device_harness.device_registry import register_device
from tinyfarm import child_process
from tinyfarm.errors import DeviceError

PRESET = "renode-stm32f4-discovery"
BOARD_DIR = FIRMWARE_DIR / "boards" / PRESET
PLATFORM = "@platforms/boards/stm32f4_discovery-kit.repl"
UART = "sysbus.usart2"


def renode_script(elf: Path | str, port: int, *, repl: Path | str = BOARD_DIR / "tinyfarm.repl",
                  platform: str = PLATFORM, uart: str = UART) -> str:
    """The .resc the backend runs: platform + tinyfarm overlay, UART on a raw server socket, the ELF."""
    return "\n".join([
        "using sysbus",
        'mach create "tinyfarm"',
        f"machine LoadPlatformDescription {platform}",
        f"machine LoadPlatformDescription @{Path(repl).resolve()}",
        f'emulation CreateServerSocketTerminal {int(port)} "uart" false',
        f"connector Connect {uart} uart",
        f"sysbus LoadELF @{Path(elf).resolve()}",
        "start",
        "",
    ])


def renode_command(script: Path | str, *, renode: str = "renode") -> list[str]:
    """Headless Renode running ``script`` (no GUI, plain console, no log window)."""
    return [renode, "--disable-xwt", "--plain", "--hide-log", "--port", "-1",
            "-e", f"include @{Path(script).resolve()}"]


class RenodeBackend(Backend):
    """``RenodeBackend(elf=None, renode="renode", start_timeout_s=60)``; a context manager."""

    def __init__(self, elf: str | Path | None = None, *, renode: str = "renode",
                 start_timeout_s: float = 60.0) -> None:
        super().__init__()
        self.elf = Path(elf) if elf else None
        self.renode = renode
        self.start_timeout_s = start_timeout_s
        self.profile = get_board("stm32f4-discovery")
        self.baud = None  # Renode's UART model is not paced at the baud rate
        self.name = f"renode:{self.elf}" if self.elf else "renode"
        self._proc: subprocess.Popen | None = None
        self._dir: tempfile.TemporaryDirectory | None = None

    def resolve_elf(self) -> Path:
        elf = self.elf or preset_elf(PRESET)
        if elf is None:
            raise DeviceError(f"no firmware built for {PRESET}: run `cmake --preset {PRESET} && "
                              f"cmake --build --preset {PRESET}` in {FIRMWARE_DIR}, or use renode:PATH.elf")
        if not Path(elf).is_file():
            raise DeviceError(f"firmware ELF {elf} does not exist")
        return Path(elf)

    def prepare(self, port: int) -> list[str]:
        """Write the generated script into a private directory; return the command that runs it."""
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="tinyfarm-renode-")
        script = Path(self._dir.name) / "tinyfarm.resc"
        script.write_text(renode_script(self.resolve_elf(), port))
        return renode_command(script, renode=self.renode)

    def start(self) -> str:
        if self._proc is not None and self._proc.poll() is None and self.url:
            return self.url
        if shutil.which(self.renode) is None:
            raise DeviceError("renode not on PATH (install Renode from https://renode.io)")
        port = free_port()
        cmd = self.prepare(port)
        self._log = tempfile.TemporaryFile()
        # `renode` may be a launcher script running mono: guard its whole process group
        self._proc = child_process.spawn(cmd, stdin=subprocess.PIPE, stdout=self._log,
                                         stderr=subprocess.STDOUT, new_session=True, guard_group=True)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._log.seek(0)
                tail = self._log.read().decode(errors="replace").strip().splitlines()[-3:]
                self.stop()
                raise DeviceError(f"renode exited at start-up: {' | '.join(tail) or 'no output'}")
            try:
                # The terminal accepts one client at a time; probing and closing leaves it ready.
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    pass
                self.url = f"socket://127.0.0.1:{port}"
                return self.url
            except OSError:
                time.sleep(0.25)
        self.stop()
        raise DeviceError(f"renode did not open its UART socket within {self.start_timeout_s:.0f} s")

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
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(elf=str(self.elf or preset_elf(PRESET)), emulator="renode")
        return info


@register_device("renode")
def _renode_device(arg: str | None, **options: Any) -> Backend:
    """``renode`` = the renode-stm32f4-discovery preset's build; ``renode:PATH.elf`` = that ELF."""
    if arg and not Path(arg).expanduser().exists():
        raise DeviceError(f"renode:{arg}: no such firmware ELF")
    return RenodeBackend(Path(arg).expanduser() if arg else None)
