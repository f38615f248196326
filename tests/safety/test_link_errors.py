"""A device that hangs up is one error line, never a traceback (#15, case 2).

A proxy between ``tinyfarm`` and a twin cuts the connection (a close, or a reset) when it sees a
chosen request go by: HELLO (connect), MODEL_CHUNK (upload), SET_INPUT (invoke), BENCH. A paced
twin (pty or TCP) is killed once the first upload chunk has reached it. Bad ``twin --port`` values
are refused in one line.
"""

from __future__ import annotations

import select
import socket
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import serial

from device_harness.boards import get_board
from device_harness.client import DeviceClient
from device_harness.link import Link
from device_harness.protocol import FrameDecoder, MsgType
from device_harness.protocol.spec import MAX_PAYLOAD_LIMIT
from device_harness.twin.server import TwinServer
from proc_helpers import MODEL, REPO, TINYFARM, assert_one_error_line, env, run_tinyfarm
from tinyfarm.errors import LinkLost


class CuttingProxy:
    """Forwards a TCP client to ``target``; hangs up on both when the client sends ``cut_at``."""

    def __init__(self, target: str, cut_at: MsgType, reset: bool) -> None:
        host, port = target.removeprefix("socket://").split(":")
        self.target = (host, int(port))
        self.cut_at, self.reset = cut_at, reset
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self.listener.getsockname()[1]}"
        self.cut = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        client, _ = self.listener.accept()
        device = socket.create_connection(self.target)
        decoder = FrameDecoder(MAX_PAYLOAD_LIMIT)
        try:
            while True:
                ready, _, _ = select.select([client, device], [], [], 30)
                if not ready:
                    return
                if client in ready:
                    data = client.recv(1 << 16)
                    if not data:
                        return
                    if any(getattr(ev, "type", None) == self.cut_at for ev in decoder.feed(data)):
                        self.cut.set()
                        return
                    device.sendall(data)
                if device in ready:
                    data = device.recv(1 << 16)
                    if not data:
                        return
                    client.sendall(data)
        finally:
            for s in (client, device):
                if self.reset:  # RST instead of FIN: "connection reset by peer"
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()


@pytest.fixture(scope="module")
def twin_url():
    with TwinServer(get_board(), tcp=True) as server:
        yield server.url


@pytest.fixture(scope="module")
def input_npy(tmp_path_factory):
    path = tmp_path_factory.mktemp("inputs") / "x.npy"
    np.save(path, np.zeros((1, 8, 4), np.int8))
    return path


COMMANDS = {
    MsgType.HELLO: lambda npy, out: ["info"],
    MsgType.MODEL_CHUNK: lambda npy, out: ["deploy", MODEL],
    MsgType.SET_INPUT: lambda npy, out: ["invoke", MODEL, "-i", npy, "-o", out],
    MsgType.BENCH: lambda npy, out: ["bench", MODEL, "--runs", "5"],
}


@pytest.mark.parametrize("reset", [False, True], ids=["close", "reset"])
@pytest.mark.parametrize("cut_at", list(COMMANDS), ids=lambda t: t.name)
def test_device_hanging_up_is_one_line(cut_at, reset, twin_url, input_npy, tmp_path):
    proxy = CuttingProxy(twin_url, cut_at, reset)
    args = COMMANDS[cut_at](input_npy, tmp_path / "out") + ["--device", proxy.url]
    proc = run_tinyfarm(args, timeout=90)
    assert proxy.cut.is_set(), proc.stderr
    line = assert_one_error_line(proc)
    assert "lost the line" in line or "no answer" in line, line


#: ``tinyfarm twin`` that also prints ``MODEL_CHUNK`` on stdout (after its URL) when the first upload
#: chunk has reached it: the test kills it on that line, so mid-upload by construction, at any load
TWIN_TELLING_UPLOAD = """
from device_harness.protocol import MsgType
from device_harness.twin.device import TwinDevice
from tinyfarm.cli import main

handle = TwinDevice.handle
told = []

def telling(self, event):
    if getattr(event, "type", None) == MsgType.MODEL_CHUNK and not told:
        told.append(1)
        print("MODEL_CHUNK", flush=True)
    return handle(self, event)

TwinDevice.handle = telling
main()
"""


def _await_line(stream, expected: str, other: subprocess.Popen, limit_s: float = 300) -> None:
    """Read ``stream`` until the line ``expected``; fail if ``other`` ends first (it will not get
    there: a defect, with its stderr), or nothing comes in ``limit_s`` (a hang, not a slow machine)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if select.select([stream], [], [], 0.5)[0]:
            line = stream.readline().decode()
            assert line, "the twin ended before the upload reached it"
            if line.strip() == expected:
                return
        elif other.poll() is not None:
            pytest.fail(f"deploy ended before its upload reached the twin:\n{other.stderr.read()}")
    pytest.fail(f"no {expected} from the twin in {limit_s:g} s")


@pytest.mark.parametrize("tcp", [False, True], ids=["pty", "tcp"])
def test_twin_killed_mid_upload_is_one_line(tcp):
    twin = subprocess.Popen([sys.executable, "-c", TWIN_TELLING_UPLOAD, "twin", "--baud", "1200"]
                            + (["--tcp"] if tcp else []),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO, env=env())
    deploy = None
    try:
        url = twin.stdout.readline().decode().strip()
        assert url.startswith("socket://" if tcp else "/dev/"), url
        # --baud: the host must know the line is slow (its timeouts scale with it); without it the
        # 1 s timeouts of a line-rate probe and of MODEL_BEGIN expire and no upload ever starts
        deploy = subprocess.Popen(TINYFARM + ["-v", "deploy", str(MODEL), "--device", url,
                                              "--baud", "1200"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                                  env=env())
        _await_line(twin.stdout, "MODEL_CHUNK", deploy)  # 4.4 KB at 120 B/s: 37 s of upload to go
        twin.kill()
        try:
            _, stderr = deploy.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("deploy still running 60 s after its twin died")
    finally:
        for proc in (twin, deploy):
            if proc is not None:
                proc.kill()
                proc.communicate()
    assert deploy.returncode == 3 and "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert any("firmware twin-1" in ln for ln in lines), stderr  # HELLO answered: uploading
    assert lines[-1].startswith("error: lost the line"), stderr
    assert sum(ln.startswith("error:") for ln in lines) == 1


@pytest.mark.parametrize("port", ["70000", "-1", "65536"])
def test_twin_port_out_of_range_is_one_line(port):
    assert_one_error_line(run_tinyfarm(["twin", "--tcp", "--port", port], timeout=60), "--port")


def test_twin_server_refuses_a_port_out_of_range():
    with pytest.raises(ValueError, match="70000"):
        TwinServer(get_board(), tcp=True, port=70000)


class _HungUpPort:
    """A pyserial-like port whose peer hung up before the first byte (pyserial's socket:// raises
    SerialException from reset_input_buffer then)."""

    port = "socket://127.0.0.1:9"
    timeout = 0

    def fileno(self):
        raise serial.SerialException("no fd")

    def reset_input_buffer(self):
        raise serial.SerialException("read failed: [Errno 104] Connection reset by peer")

    def close(self):
        pass


def test_a_hang_up_while_connecting_is_link_lost():
    with pytest.raises(LinkLost, match="Connection reset"):
        Link(_HungUpPort())
    with pytest.raises(LinkLost):
        DeviceClient(_HungUpPort())
