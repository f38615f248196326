"""``python -m device_harness.twin [--board B] [--arena-bytes N] [--tcp] [--pace | --baud N] [--idle-timeout S] [--host-time]``.

Prints the pyserial URL on the first line of stdout, then serves until SIGTERM/SIGINT. This is
what :class:`device_harness.backends.twin.TwinBackend` starts as a subprocess.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from device_harness import limits
from device_harness.boards import get_board
from device_harness.twin.server import TwinServer
from tinyfarm.errors import TinyfarmError


def _exit_on_stdin_eof() -> None:
    """The launcher holds our stdin pipe; EOF means it is gone, so no orphan twin outlives it."""
    while sys.stdin.buffer.read(4096):
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def _in_range(lo: float, hi: float, kind: type = int):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is not in {lo}..{hi}")
        return value
    return parse


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m device_harness.twin")
    ap.add_argument("--board", default=None)
    ap.add_argument("--arena-bytes", type=_in_range(limits.MIN_ARENA_BYTES, limits.MAX_ARENA_BYTES),
                    default=None)
    ap.add_argument("--tcp", action="store_true")
    ap.add_argument("--port", type=_in_range(0, limits.MAX_PORT), default=0)
    ap.add_argument("--pace", action="store_true", help="pace the line at the board's baud rate")
    ap.add_argument("--baud", type=_in_range(limits.MIN_BAUD, limits.MAX_BAUD), default=None,
                    help="pace the line at this baud rate")
    ap.add_argument("--idle-timeout", type=_in_range(0, 1e9, float), default=0.0,
                    help="with --tcp: drop a client silent this many seconds (0: never; the "
                         "launching process is the only client of a private twin)")
    ap.add_argument("--host-time", action="store_true", default=None,
                    help="ticks are host ns around Invoke() (tick_source host-ns), not the board's "
                         "estimated cycles (tick_source estimate)")
    ap.add_argument("--exit-with-parent", action="store_true",
                    help="exit when stdin closes: the launching process died (even by kill -9)")
    args = ap.parse_args(argv)
    try:
        profile = get_board(args.board).with_overrides(arena_bytes=args.arena_bytes)
        baud = args.baud or (profile.baud if args.pace else None)
        server = TwinServer(profile, tcp=args.tcp, port=args.port, baud=baud,
                            idle_timeout_s=args.idle_timeout, host_time=args.host_time)
    except (TinyfarmError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if args.exit_with_parent:
        threading.Thread(target=_exit_on_stdin_eof, daemon=True).start()
    print(server.url, flush=True)
    server.serve_until_stopped()
    return 0


if __name__ == "__main__":
    sys.exit(main())
