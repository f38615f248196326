"""Helpers of the safety tests that run ``tinyfarm`` as a real process and look at what it left."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TINYFARM = [sys.executable, "-m", "tinyfarm.cli"]
#: a small int8 model in the repository (input int8 (1, 8, 4), output int8 (1, 3))
MODEL = REPO / "tests" / "harness" / "data" / "lstm_int8.tflite"


def env(**extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1", TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
                **extra)


def run_tinyfarm(args: list[str], timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(TINYFARM + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env(), **kwargs)


def assert_one_error_line(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Non-zero exit, no traceback anywhere, stderr exactly one ``error: ...`` line."""
    assert proc.returncode != 0, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _stat(pid: int) -> tuple[int, str] | None:
    """(ppid, state) of a live process; None when it is gone (a zombie counts as gone: it is dead,
    only not yet reaped by whoever inherited it)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    state, ppid = fields[0], int(fields[1])
    return None if state in ("Z", "X") else (ppid, state)


def alive(pid: int) -> bool:
    return _stat(pid) is not None


def descendants(pid: int) -> dict[int, str]:
    """Every live process below ``pid``: pid -> command line."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                children.setdefault(st[0], []).append(int(entry))
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            try:
                found[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            todo.append(child)
    return found


def wait_for(predicate, timeout: float, interval: float = 0.1):
    """Poll ``predicate()`` until it returns something truthy (returned) or ``timeout`` passes (None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


def survivors(pids, timeout: float = 5.0) -> list[int]:
    """The ``pids`` still alive after waiting up to ``timeout`` for them to end."""
    wait_for(lambda: not any(alive(p) for p in pids), timeout)
    return [p for p in pids if alive(p)]
