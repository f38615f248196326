"""One client cannot hold a TCP twin hostage (#15, case 3).

A second client is told BUSY and by whom; a silent holder is dropped after the idle timeout; a
paced twin throws away what a departed client left on the line instead of replaying it to the next.
"""

from __future__ import annotations

import os
import socket
import time

import pytest

from device_harness.boards import get_board
from device_harness.client import DeviceClient
from device_harness.protocol import MsgType, encode_frame
from device_harness.protocol.device_errors import BusyError
from device_harness.twin.busy import peer_process
from device_harness.twin.server import TwinServer
from proc_helpers import assert_one_error_line, run_tinyfarm
from tinyfarm.errors import LinkLost


@pytest.fixture()
def twin():
    with TwinServer(get_board(), tcp=True, idle_timeout_s=1.0) as server:
        yield server


def test_second_client_is_told_busy_and_by_whom(twin):
    with DeviceClient.open(twin.url) as holder:
        holder.hello()
        with DeviceClient.open(twin.url, retries=0) as second:
            t0 = time.monotonic()
            with pytest.raises(BusyError) as err:
                second.hello()
            assert time.monotonic() - t0 < 1.0  # answered at once, not after the retries
        port = holder.link.port._socket.getsockname()[1]
        assert f"127.0.0.1:{port}" in str(err.value)
        assert f"pid {os.getpid()}" in str(err.value)
        assert err.value.retryable
        holder.hello()  # the holder is undisturbed


def test_busy_is_one_line_from_the_cli():
    with TwinServer(get_board(), tcp=True, idle_timeout_s=60) as twin, \
            DeviceClient.open(twin.url) as holder:
        holder.hello()
        proc = run_tinyfarm(["info", "--device", twin.url], timeout=60)
    line = assert_one_error_line(proc, "BUSY", "held by 127.0.0.1:", f"pid {os.getpid()}")
    assert "after 60 s idle" in line


def test_a_client_waiting_for_a_holder_that_leaves_is_served(twin):
    holder = DeviceClient.open(twin.url)
    holder.hello()
    waiting = DeviceClient.open(twin.url)  # connected while held, asks nothing yet
    time.sleep(0.2)
    holder.close()
    time.sleep(0.2)
    with waiting:
        assert waiting.hello().board.startswith("twin:")


def test_a_silent_holder_is_dropped_after_the_idle_timeout(twin):
    holder = DeviceClient.open(twin.url, retries=0)
    holder.hello()
    time.sleep(1.6)
    with DeviceClient.open(twin.url) as next_client:
        assert next_client.hello().board.startswith("twin:")
    with pytest.raises(LinkLost):
        holder.hello()
    holder.close()
    assert twin.dropped_idle == 1


def test_a_busy_holder_is_not_dropped(twin):
    with DeviceClient.open(twin.url) as holder:
        for _ in range(8):  # 2 s of requests 0.25 s apart: never idle for the 1 s timeout
            holder.hello()
            time.sleep(0.25)
    assert twin.dropped_idle == 0


def test_no_idle_timeout_keeps_the_holder():
    with TwinServer(get_board(), tcp=True) as server, DeviceClient.open(server.url) as holder:
        holder.hello()
        time.sleep(1.2)
        holder.hello()
        assert server.dropped_idle == 0


def test_paced_twin_discards_a_closed_connections_bytes():
    with TwinServer(get_board(), tcp=True, baud=9600) as server:
        host, port = server.url.removeprefix("socket://").split(":")
        # 40 KB of ECHO requests: 42 s of line time at 9600 baud, then the client leaves
        frames = b"".join(encode_frame(MsgType.ECHO, seq, bytes(1000)) for seq in range(40))
        with socket.create_connection((host, int(port))) as first:
            first.sendall(frames)
            time.sleep(0.3)
        t0 = time.monotonic()
        with DeviceClient.open(server.url, baud=9600, retries=1) as second:
            assert second.hello().board.startswith("twin:")
        assert time.monotonic() - t0 < 3.0


def test_peer_process_finds_this_process():
    listener = socket.create_server(("127.0.0.1", 0))
    with socket.create_connection(listener.getsockname()) as client:
        conn, peer = listener.accept()
        found = peer_process(peer)
        conn.close()
    listener.close()
    assert found is not None and found[0] == os.getpid()
    assert peer_process(("127.0.0.1", 1)) is None


def test_idle_timeout_option_is_validated():
    assert_one_error_line(run_tinyfarm(["twin", "--tcp", "--idle-timeout", "-1"], timeout=60),
                          "--idle-timeout")
