"""A TCP twin serves one client at a time; the others are told who holds it.

A connection that arrives while another client holds the twin is accepted anyway, and every request
it sends is answered with the protocol's ``BUSY`` error naming the holder (its address, and its
pid and program when this host can see them), so the second client prints one clear line at its
HELLO instead of waiting for an answer that never comes. An answered connection is closed when its
client goes away or after :data:`GRACE_S`; one not answered yet becomes the holder once the twin
is free.

:func:`peer_process` finds the process behind a loopback peer address through ``/proc/net/tcp``
(the socket inode whose local end is that address) and ``/proc/*/fd`` (who holds that inode).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Callable

from device_harness.protocol import ErrorCode, Flag, FrameDecoder, encode_frame, pack_error
from device_harness.protocol.spec import MAX_PAYLOAD_LIMIT

#: how long a turned-away connection may stay open to read its answer
GRACE_S = 5.0
#: turned-away connections kept at once; beyond that new ones are closed at once
MAX_WAITING = 8


def _hex_addr(host: str, port: int) -> str:
    """``127.0.0.1:5555`` as /proc/net/tcp writes it (IPv4 only)."""
    packed = socket.inet_aton(host)
    return f"{int.from_bytes(packed, 'little'):08X}:{port:04X}"


def peer_process(peer: tuple[str, int]) -> tuple[int, str] | None:
    """``(pid, program)`` of the local process whose TCP socket has address ``peer``; None when
    it is not on this host, not ours to see, or not Linux."""
    try:
        wanted = _hex_addr(peer[0], peer[1])
        inode = None
        with open("/proc/net/tcp", encoding="ascii") as fh:
            next(fh, None)
            for line in fh:
                cols = line.split()
                if len(cols) > 9 and cols[1] == wanted:
                    inode = cols[9]
                    break
        if not inode or inode == "0":
            return None
        target = f"socket:[{inode}]"
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit():
                continue
            try:
                for fd in os.scandir(pid_dir / "fd"):
                    if os.readlink(fd.path) == target:
                        return int(pid_dir.name), _program(pid_dir)
            except OSError:
                continue
    except (OSError, ValueError):
        return None
    return None


def _program(pid_dir: Path) -> str:
    """A short name for a process: ``tinyfarm deploy``, ``python -m pytest``, not a whole command line."""
    try:
        argv = [a.decode(errors="replace") for a in (pid_dir / "cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return "?"
    if not argv:
        return "?"
    name = os.path.basename(argv[0])
    rest = argv[1:]
    if name.startswith("python") and rest:
        if rest[0] == "-m" and len(rest) > 1:
            name, rest = f"python -m {rest[1]}", rest[2:]
        elif rest[0] == "-c":
            return "python -c"
        else:
            name, rest = os.path.basename(rest[0]), rest[1:]
    if rest and rest[0].isidentifier():  # a subcommand: tinyfarm deploy
        name += f" {rest[0]}"
    return name[:40]


def describe_holder(peer: tuple[str, int] | None, since: float, idle_timeout_s: float | None) -> str:
    """``127.0.0.1:51234 (pid 4321, tinyfarm deploy) for 12 s`` plus when it will be released."""
    if peer is None:
        who = "another client"
    else:
        who = f"{peer[0]}:{peer[1]}"
        proc = peer_process(peer)
        if proc is not None:
            who += f" (pid {proc[0]}, {proc[1]})"
    held = f"held by {who} for {time.monotonic() - since:.0f} s"
    if idle_timeout_s:
        return f"{held}; released when it disconnects or after {idle_timeout_s:g} s idle"
    return f"{held}; released when it disconnects"


class _Waiting:
    def __init__(self, sock: socket.socket, peer: tuple[str, int], deadline: float) -> None:
        self.sock, self.peer, self.deadline = sock, peer, deadline
        self.decoder = FrameDecoder(MAX_PAYLOAD_LIMIT)
        self.raw = bytearray()  # what it sent, handed over if it becomes the holder
        self.answered = False


class BusyResponder:
    """Connections that arrived while the twin was held. Each request one sends is answered BUSY
    while the holder is still there; if the holder has gone, the connection is handed back to
    become the next holder (with what it sent so far), so nobody is turned away from a free twin."""

    def __init__(self, grace_s: float = GRACE_S, max_waiting: int = MAX_WAITING) -> None:
        self.grace_s = grace_s
        self.max_waiting = max_waiting
        self._waiting: dict[int, _Waiting] = {}
        self.turned_away = 0

    def add(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        if len(self._waiting) >= self.max_waiting:
            sock.close()
            return
        sock.setblocking(False)
        self._waiting[sock.fileno()] = _Waiting(sock, peer, time.monotonic() + self.grace_s)

    def fds(self) -> list[int]:
        return list(self._waiting)

    def next_deadline(self) -> float | None:
        return min((w.deadline for w in self._waiting.values() if w.answered), default=None)

    def next_holder(self) -> tuple[socket.socket, tuple[str, int], bytes] | None:
        """The longest-waiting connection not yet told BUSY (the twin is free now)."""
        for fd, w in self._waiting.items():
            if not w.answered:
                del self._waiting[fd]
                w.sock.setblocking(True)
                return w.sock, w.peer, bytes(w.raw)
        return None

    def service(self, ready: list[int], held: Callable[[], bool], message: Callable[[], str]
                ) -> tuple[socket.socket, tuple[str, int], bytes] | None:
        """Read what the waiting clients sent; answer each request BUSY ``message()`` while
        ``held()``; return a connection whose request came when the twin was free (the next holder)."""
        for fd in [fd for fd in ready if fd in self._waiting]:
            w = self._waiting[fd]
            try:
                data = w.sock.recv(1 << 16)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                self._close(fd)
                continue
            if not w.answered:
                w.raw += data
            requests = [ev for ev in w.decoder.feed(data) if not ev.flags & Flag.RESPONSE]
            if not requests:
                continue
            if not w.answered and not held():
                del self._waiting[fd]
                w.sock.setblocking(True)
                return w.sock, w.peer, bytes(w.raw)
            w.answered, w.raw = True, bytearray()
            self.turned_away += 1
            text = message()[:255]
            try:
                for ev in requests:
                    w.sock.sendall(encode_frame(ev.type, ev.seq, pack_error(ErrorCode.BUSY, text),
                                                Flag.RESPONSE | Flag.ERROR))
            except OSError:
                self._close(fd)
        return None

    def expire(self) -> None:
        now = time.monotonic()
        for fd in [fd for fd, w in self._waiting.items() if w.deadline <= now and w.answered]:
            self._close(fd)

    def _close(self, fd: int) -> None:
        try:
            self._waiting.pop(fd).sock.close()
        except OSError:
            pass

    def close_all(self) -> None:
        for fd in list(self._waiting):
            self._close(fd)
