"""Processes as ``/proc`` shows them (Linux, no psutil): who is alive, below whom, marked by whom.

A case of ``hostile_inputs.py`` runs with ``TINYFARM_HOSTILE_CASE=<token>`` in its environment;
every process it starts inherits it (twins, TFLM children, QEMU), so what is left of a case after
it ended is found by that mark, whatever session or parent it ended up in.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

MARK = "TINYFARM_HOSTILE_CASE"


def pids() -> set[int]:
    return {int(e) for e in os.listdir("/proc") if e.isdigit()}


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """Running or sleeping; a zombie is dead (only not yet reaped by whoever inherited it)."""
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def marked(pid: int, token: str) -> bool:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{MARK}={token}".encode() in env.split(b"\0")


def descendants(root: int) -> dict[int, str]:
    """Live processes below ``root``: pid -> command line."""
    children: dict[int, list[int]] = {}
    for pid in pids():
        st = _stat(pid)
        if st is not None and st[0] not in ("Z", "X"):
            children.setdefault(st[1], []).append(pid)
    found, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = cmdline(child)
            todo.append(child)
    return found


def leftovers(tokens: list[str], before: set[int], folder: str) -> dict[int, str]:
    """Live processes marked with one of ``tokens``, or new since ``before`` and naming ``folder``."""
    me = os.getpid()
    found = {}
    for pid in pids():
        if pid == me or not alive(pid):
            continue
        if any(marked(pid, t) for t in tokens) or (pid not in before and folder in cmdline(pid)):
            found[pid] = cmdline(pid)
    return found


def wait_leftovers(tokens: list[str], before: set[int], folder: str, grace: float) -> dict[int, str]:
    """:func:`leftovers`, after giving them up to ``grace`` seconds to end."""
    deadline = time.monotonic() + grace
    while True:
        left = leftovers(tokens, before, folder)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


def kill(pids_: list[int]) -> None:
    for pid in pids_:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
