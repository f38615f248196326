"""TwinBackend: a TFLM device twin in a subprocess (``python -m device_harness.twin``).

A subprocess isolates the twin (and its own TFLM child) from the caller; ``restart()`` kills it and
starts a fresh one, like pressing a board's reset button. The URL comes from its first stdout line.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import tempfile

from device_harness.backends.base import Backend, stop_process
from device_harness.boards import get_board
from tinyfarm import child_process
from tinyfarm.errors import DeviceError


class TwinBackend(Backend):
    """``TwinBackend(board=None, arena_bytes=None, tcp=False, pace=False, baud=None, host_time=None)``.

    ``pace``: the twin paces its line at the board's baud rate (or ``baud``), and the client is told
    that rate so its timeouts scale with the line time. ``host_time``: the twin's ticks are host ns
    (``tick_source host-ns``) instead of the board's estimated cycles; None: ``TINYFARM_TWIN_TICKS=host``
    decides (read here, in the launching process).
    """

    def __init__(self, board: str | None = None, *, arena_bytes: int | None = None, tcp: bool = False,
                 pace: bool = False, baud: int | None = None, start_timeout_s: float = 60.0,
                 host_time: bool | None = None) -> None:
        super().__init__()
        from device_harness.twin.device import host_time_default  # noqa: PLC0415

        self.host_time = host_time_default() if host_time is None else bool(host_time)
        self.profile = get_board(board).with_overrides(arena_bytes=arena_bytes)
        self.tcp = tcp
        self.pace_baud = baud or (self.profile.baud if pace else None)
        self.baud = self.pace_baud
        self.start_timeout_s = start_timeout_s
        self.name = "twin" if board is None else f"twin:{self.profile.name}"
        self._proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "device_harness.twin", "--board", self.profile.name,
               "--arena-bytes", str(self.profile.arena_bytes), "--exit-with-parent"]
        if self.tcp:
            cmd.append("--tcp")
        if self.pace_baud:
            cmd += ["--baud", str(self.pace_baud)]
        if self.host_time:
            cmd.append("--host-time")
        return cmd

    def start(self) -> str:
        if self._proc is not None and self._proc.poll() is None and self.url:
            return self.url
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("TINYFARM_TWIN_TICKS", None)  # decided here (self.host_time), passed as --host-time
        self._stderr = tempfile.TemporaryFile()
        self._proc = child_process.spawn(self.command(), stdout=subprocess.PIPE, stderr=self._stderr,
                                         stdin=subprocess.PIPE, env=env)
        ready, _, _ = select.select([self._proc.stdout], [], [], self.start_timeout_s)
        line = self._proc.stdout.readline().decode().strip() if ready else ""
        if not line or line.startswith("error"):
            err = ""
            if self._proc.poll() is not None:
                self._stderr.seek(0)
                err = self._stderr.read().decode(errors="replace").strip().splitlines()[-1:]
                err = err[0] if err else ""
            self.stop()
            raise DeviceError(f"the device twin did not start{': ' + err if err else ''}")
        self.url = line
        return line

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        self.url = None
        if proc is None:
            return
        stop_process(proc)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
        self._stderr.close()
