"""Child processes that never outlive tinyfarm, however tinyfarm ends (SIGKILL included).

Every process tinyfarm starts — QEMU, Renode, a device twin, a twin's TFLM child — goes through
:func:`spawn`. On Linux the child asks the kernel for a *parent-death signal*
(``prctl(PR_SET_PDEATHSIG, SIGKILL)``, set between fork and exec): when the process that started it
dies, by ``kill -9`` or otherwise, the kernel kills the child too. (A child that is itself a
launcher forwards nothing, but what it ``exec``\\ s keeps the signal: it survives ``execve``.)

The signal is tied to the *thread* that forked, not the process: a child forked from a farm worker
thread would be killed when that thread finishes, long before tinyfarm does. So a fork requested
from any thread but the main one is done by one long-lived daemon thread (:class:`_Spawner`), which
only ends with the process.

:func:`install_termination_handlers` (the ``tinyfarm`` entry point calls it) turns SIGTERM and
SIGHUP into a :class:`Terminated` exception in the main thread, so ``with`` blocks and ``finally``
clauses stop emulators and twins cleanly; a watchdog ends the process if that clean-up hangs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import queue
import signal
import subprocess
import sys
import threading
from typing import Any, Callable, Sequence

PR_SET_PDEATHSIG = 1
_SIGKILL = int(signal.SIGKILL)
#: seconds a clean shutdown after SIGTERM may take before the process is ended regardless
TERMINATION_GRACE_S = 15.0


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    prctl.restype = ctypes.c_int
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return prctl


_PRCTL = _load_prctl()


def parent_death_supported() -> bool:
    """True when children get a parent-death signal (Linux)."""
    return _PRCTL is not None


def _die_with(parent_pid: int, sig: int = _SIGKILL) -> Callable[[], None]:
    """The ``preexec_fn``: runs in the child between fork and exec (async-signal-safe calls only)."""
    prctl = _PRCTL

    def setup() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before the signal was armed
            os._exit(1)

    return setup


class _Spawner:
    """One daemon thread that forks on behalf of other threads (see the module docstring)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="tinyfarm-spawner", daemon=True).start()

    def _serve(self) -> None:
        while True:
            fn, box, done = self._jobs.get()
            try:
                box["value"] = fn()
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                box["error"] = exc
            finally:
                done.set()

    def call(self, fn: Callable[[], Any]) -> Any:
        box: dict[str, Any] = {}
        done = threading.Event()
        self._jobs.put((fn, box, done))
        done.wait()
        if "error" in box:
            raise box["error"]
        return box["value"]


_spawner: _Spawner | None = None
_spawner_lock = threading.Lock()


def _get_spawner() -> _Spawner:
    global _spawner
    with _spawner_lock:
        if _spawner is None or _spawner.pid != os.getpid():  # none yet, or we are a forked child
            _spawner = _Spawner()
        return _spawner


#: the group guard: kills a process group when the process that started it goes away
_GUARD = """
import os, signal, sys
group = int(sys.argv[1])
def end(*_):
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass
    os._exit(0)
signal.signal(signal.SIGTERM, end)
while sys.stdin.buffer.read(4096):
    pass
end()
"""


def spawn(cmd: Sequence[str], *, new_session: bool = False, guard_group: bool = False,
          **popen_kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen(cmd, **popen_kwargs)`` for a child that ends when this process ends.

    ``new_session``: the child gets its own session (Ctrl-C in the terminal does not reach it; the
    caller stops it), and still dies with this process. ``guard_group`` (with ``new_session``): the
    child is a launcher that may fork rather than ``exec`` (e.g. a shell script starting Renode on
    mono); what it forked does not get the parent-death signal, so a small guard process kills the
    child's whole process group when this process dies (SIGTERM from the kernel, or EOF on its stdin)
    and when :func:`stop` stops the child.
    """
    if "preexec_fn" in popen_kwargs or "start_new_session" in popen_kwargs:
        raise TypeError("spawn() sets preexec_fn and start_new_session itself")
    if guard_group and not new_session:
        raise ValueError("guard_group needs new_session (the child's own process group)")
    parent = os.getpid()

    def start() -> subprocess.Popen:
        proc = subprocess.Popen(list(cmd), preexec_fn=_die_with(parent), start_new_session=new_session,
                                **popen_kwargs)
        if guard_group:
            proc.tinyfarm_guard = subprocess.Popen(  # type: ignore[attr-defined]
                [sys.executable, "-c", _GUARD, str(proc.pid)], stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                preexec_fn=_die_with(parent, signal.SIGTERM))
        return proc

    if threading.current_thread() is threading.main_thread():
        return start()
    return _get_spawner().call(start)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL; always reaps the process (and, for a
    ``guard_group`` child, ends what is left of its process group and the guard)."""
    guard = getattr(proc, "tinyfarm_guard", None)
    if guard is not None:
        proc.tinyfarm_guard = None
        try:
            stop(proc, timeout)
        finally:
            guard.stdin.close()  # EOF: the guard kills the rest of the group and exits
            try:
                guard.wait(timeout=5)
            except subprocess.TimeoutExpired:
                guard.kill()
                guard.wait()
        return
    if proc.poll() is not None:
        return
    try:
        proc.terminate()
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    except BaseException:  # interrupted while waiting: do not leave it running
        proc.kill()
        proc.wait()
        raise


# ---- this process being asked to stop ----------------------------------------------------------
class Terminated(BaseException):
    """SIGTERM/SIGHUP arrived: unwind (``with``/``finally`` stop children), then exit 128+signal."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"terminated by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _on_terminate(signum: int, _frame: Any) -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):  # one clean-up at a time; the watchdog bounds it
        signal.signal(sig, signal.SIG_IGN)
    watchdog = threading.Timer(TERMINATION_GRACE_S, os._exit, (128 + signum,))
    watchdog.daemon = True
    watchdog.start()
    raise Terminated(signum)


def install_termination_handlers() -> None:
    """SIGTERM and SIGHUP raise :class:`Terminated` in the main thread (call from the main thread)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:  # nohup'ed: keep ignoring SIGHUP
            signal.signal(sig, _on_terminate)
