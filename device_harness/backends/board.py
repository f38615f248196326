"""BoardBackend: a physical board running the tinyfarm firmware on a serial port.

``BoardBackend("/dev/ttyACM0", baud=115200, probe="stlink")``. Optional reset and flash go through
pyOCD when it is installed (``pip install pyocd``): :meth:`flash` programs an ELF/HEX, :meth:`restart`
resets the target through the debug probe (otherwise it only reopens the port, like a bare URL).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from device_harness.backends.base import Backend
from device_harness.boards import get_board
from device_harness.device_registry import register_device
from tinyfarm.errors import DeviceError


def pyocd_available() -> bool:
    return importlib.util.find_spec("pyocd") is not None


class BoardBackend(Backend):
    """A serial device path plus optional pyOCD reset/flash (``target``: pyOCD target name,
    ``probe``: probe unique id, ``board``: a profile from boards.yaml for reports)."""

    def __init__(self, port: str, *, baud: int = 115200, board: str | None = None,
                 target: str | None = None, probe: str | None = None) -> None:
        super().__init__()
        self.port = port
        self.baud = baud
        self.target = target
        self.probe = probe
        self.profile = get_board(board) if board else None
        self.name = f"board:{port}"

    def start(self) -> str:
        if not os.path.exists(self.port) and "://" not in self.port:
            raise DeviceError(f"cannot open {self.port}: no such device (is the board plugged in?)")
        self.url = self.port
        return self.url

    def stop(self) -> None:
        self.url = None

    def _session(self):
        if not pyocd_available():
            raise DeviceError("pyOCD is not installed: `pip install pyocd` to reset/flash through a probe")
        from pyocd.core.helpers import ConnectHelper  # noqa: PLC0415

        options = {"target_override": self.target} if self.target else {}
        session = ConnectHelper.session_with_chosen_probe(unique_id=self.probe, options=options,
                                                          blocking=False)
        if session is None:
            raise DeviceError("no debug probe found (pyOCD)")
        return session

    def reset(self) -> None:
        """Hardware reset through the debug probe (pyOCD)."""
        with self._session() as session:
            session.board.target.reset()

    def flash(self, image: str | Path) -> None:
        """Program ``image`` (.elf/.hex/.bin) with pyOCD, then reset."""
        image = Path(image)
        if not image.is_file():
            raise DeviceError(f"{image}: no such firmware image")
        session = self._session()
        from pyocd.flash.file_programmer import FileProgrammer  # noqa: PLC0415

        with session:
            FileProgrammer(session).program(str(image))
            session.board.target.reset()

    def restart(self) -> str:
        if pyocd_available() and self.target:
            self.reset()
        return self.start()

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(pyocd=pyocd_available(), target=self.target)
        return info


@register_device("board")
def _board_device(arg: str | None, **options: Any) -> Backend:
    """``board:/dev/ttyACM0`` (baud from ``--baud`` or 115200; board profile from ``--board``)."""
    if not arg:
        raise DeviceError("board needs a serial port: --device board:/dev/ttyACM0")
    return BoardBackend(arg, baud=options.get("baud") or 115200, board=options.get("board"))
