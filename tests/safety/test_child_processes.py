"""Every child process ends when tinyfarm ends, however it ends (#15, case 1).

QEMU, Renode, twins and TFLM children are started with ``tinyfarm.child_process.spawn``: the kernel
kills them when their parent dies (SIGKILL included), and SIGTERM makes tinyfarm stop them itself.
Each test kills a real process tree and checks, by pid, that nothing of it is left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from proc_helpers import MODEL, REPO, TINYFARM, alive, descendants, env, survivors, wait_for
from tinyfarm import child_process

pytestmark = pytest.mark.skipif(not child_process.parent_death_supported(),
                                reason="parent-death signals are Linux-only")

needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-arm") is None,
                                reason="qemu-system-arm not on PATH")


def _kill_and_collect(proc: subprocess.Popen, sig: int, tree: dict[int, str]) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"tinyfarm did not end after {signal.Signals(sig).name}")
    left = survivors(tree, timeout=5.0)
    assert not left, f"still running after {signal.Signals(sig).name}: " + \
        "; ".join(f"{p}: {tree[p][:100]}" for p in left)
    return proc.returncode, err.decode(errors="replace")


def _start(args: list[str], **extra_env: str) -> subprocess.Popen:
    return subprocess.Popen(TINYFARM + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
                            env=env(**extra_env), start_new_session=True)


def _tree_with(proc: subprocess.Popen, *needles: str, timeout: float = 60.0) -> dict[int, str]:
    """Wait until ``proc``'s descendants include a process for every needle (in its command line)."""
    def ready():
        tree = descendants(proc.pid)
        return tree if all(any(n in cmd for cmd in tree.values()) for n in needles) else None

    tree = wait_for(ready, timeout)
    if tree is None:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{needles} never started under tinyfarm: {err.decode(errors='replace')[-2000:]}")
    return tree


@pytest.fixture()
def paused_qemu(tmp_path):
    """A ``qemu-system-arm`` on PATH that is the real one started paused (``-S``): the firmware
    never answers, so tinyfarm sits waiting for HELLO while a real QEMU listens."""
    real = shutil.which("qemu-system-arm")
    wrapper = tmp_path / "bin" / "qemu-system-arm"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec {real} "$@" -S\n')
    wrapper.chmod(0o755)
    return str(wrapper.parent) + os.pathsep + os.environ.get("PATH", "")


@needs_qemu
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_qemu_ends_with_tinyfarm_deploy(sig, qemu_elf, paused_qemu):
    proc = _start(["deploy", str(MODEL), "--device", f"qemu:{qemu_elf}"], PATH=paused_qemu)
    tree = _tree_with(proc, "qemu-system-arm")
    code, err = _kill_and_collect(proc, sig, tree)
    if sig == signal.SIGTERM:  # a clean stop: QEMU stopped by tinyfarm, one line, 128 + 15
        assert code == 143, err
        assert err.strip() == "error: terminated by SIGTERM", err
    assert "Traceback" not in err


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_twin_and_its_tflm_child_end_with_tinyfarm_deploy(sig):
    # paced at 300 baud, the 4 KB upload takes minutes: tinyfarm is mid-upload when signalled
    proc = _start(["deploy", str(MODEL), "--device", "twin", "--baud", "300"])
    tree = _tree_with(proc, "device_harness.twin ", "device_harness.twin.tflm_child")
    code, err = _kill_and_collect(proc, sig, tree)
    if sig == signal.SIGTERM:
        assert code == 143, err
        assert err.strip() == "error: terminated by SIGTERM", err
    assert "Traceback" not in err


BACKENDS_SCRIPT = textwrap.dedent("""
    import json, sys, threading, time
    from device_harness.backends.qemu import QemuBackend
    from device_harness.backends.twin import TwinBackend

    qemu = QemuBackend(sys.argv[1]) if sys.argv[1] != "-" else None
    if qemu is not None:
        qemu.start()
    box = {}
    def start_twin():            # a twin started from a worker thread that then ends, as the
        box["twin"] = TwinBackend()   # farm's workers do: it must live on until we do
        box["twin"].start()
    worker = threading.Thread(target=start_twin)
    worker.start(); worker.join()
    time.sleep(1.0)
    print(json.dumps({"qemu": qemu.pid if qemu else None, "twin": box["twin"].pid,
                      "twin_alive": box["twin"]._proc.poll() is None}), flush=True)
    time.sleep(600)
""")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_backends_end_with_the_python_process_that_started_them(sig, request):
    elf = "-"
    if shutil.which("qemu-system-arm"):
        elf = str(request.getfixturevalue("qemu_elf"))
    proc = subprocess.Popen([sys.executable, "-c", BACKENDS_SCRIPT, elf], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=REPO, env=env(), start_new_session=True)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        pytest.fail(proc.stderr.read().decode(errors="replace")[-2000:])
    pids = json.loads(line)
    assert pids["twin_alive"], "a twin started from a thread died when the thread ended"
    tree = descendants(proc.pid)
    assert pids["twin"] in tree and (pids["qemu"] is None or pids["qemu"] in tree)
    assert any("tflm_child" in cmd for cmd in tree.values())
    _kill_and_collect(proc, sig, tree)  # no handler in this script: SIGTERM kills it outright too


def test_spawn_from_a_thread_outlives_the_thread_but_not_the_process():
    box = {}
    worker = threading.Thread(target=lambda: box.update(p=child_process.spawn(["sleep", "60"])))
    worker.start()
    worker.join()
    time.sleep(0.5)
    proc = box["p"]
    try:
        assert proc.poll() is None, "killed when the thread that asked for it ended"
    finally:
        child_process.stop(proc)
    assert not alive(proc.pid)


def test_a_stopped_child_is_reaped_and_stop_is_idempotent():
    proc = child_process.spawn([sys.executable, "-c", "import time; time.sleep(60)"])
    child_process.stop(proc, timeout=2)
    assert proc.returncode is not None
    child_process.stop(proc)  # already gone: nothing to do


FAKE_RENODE = textwrap.dedent("""
    import os, re, sys, time
    uart = re.search(r'[$]uart="([^"]+)"', sys.argv[-1]).group(1)
    master, slave = os.openpty()
    os.symlink(os.ttyname(slave), uart)   # as Renode's CreateUartPtyTerminal does
    print("fake: Machine started.", flush=True)
    while True:
        time.sleep(1)
""")

RENODE_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from device_harness.backends.renode import RenodeBackend
    elf = sys.argv[1]
    backend = RenodeBackend(elf, start_timeout_s=30)
    backend.start()
    print(json.dumps({"launcher": backend.pid, "guard": backend._proc.tinyfarm_guard.pid}), flush=True)
    time.sleep(600)
""")


@pytest.fixture()
def forking_renode(tmp_path):
    """A ``renode`` on PATH that is a launcher script forking (not exec'ing) the emulator, as a
    shell script starting mono may: the emulator process does not get the parent-death signal."""
    (tmp_path / "fake_renode.py").write_text(FAKE_RENODE)
    launcher = tmp_path / "bin" / "renode"
    launcher.parent.mkdir()
    launcher.write_text(f'#!/bin/sh\n{sys.executable} {tmp_path / "fake_renode.py"} "$@" &\nwait\n')
    launcher.chmod(0o755)
    elf = tmp_path / "fw.elf"
    elf.write_bytes(b"\x7fELF")
    return str(launcher.parent) + os.pathsep + os.environ["PATH"], elf


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_renode_and_what_its_launcher_forked_end_with_the_process(sig, forking_renode):
    path, elf = forking_renode
    proc = subprocess.Popen([sys.executable, "-c", RENODE_SCRIPT, str(elf)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=REPO, env=env(PATH=path), start_new_session=True)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        pytest.fail(proc.stderr.read().decode(errors="replace")[-2000:])
    pids = json.loads(line)
    tree = descendants(proc.pid)
    assert any("fake_renode.py" in cmd for cmd in tree.values()), tree
    assert pids["guard"] in tree
    _kill_and_collect(proc, sig, tree)


@pytest.mark.emulator
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_the_real_renode_ends_with_tinyfarm(sig, renode, stm32f4_elf):
    """A process holding a RenodeBackend, as tinyfarm does, killed or terminated: Renode's launcher
    script and the mono process it started end with it."""
    proc = subprocess.Popen([sys.executable, "-c", RENODE_SCRIPT, str(stm32f4_elf)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=REPO, env=env(), start_new_session=True)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        pytest.fail(proc.stderr.read().decode(errors="replace")[-2000:])
    tree = descendants(proc.pid)
    assert any("Renode.exe" in cmd for cmd in tree.values()), tree
    _kill_and_collect(proc, sig, tree)


def test_stop_ends_a_guarded_childs_whole_group():
    proc = child_process.spawn(["sh", "-c", "sleep 300 & wait"], new_session=True, guard_group=True)
    guard = proc.tinyfarm_guard
    sleeper = wait_for(lambda: [p for p, cmd in descendants(proc.pid).items() if cmd.startswith("sleep")], 5)
    assert sleeper
    child_process.stop(proc, timeout=2)
    assert survivors(sleeper + [proc.pid, guard.pid], timeout=5) == []
