"""Backends for the conformance suite: the same protocol tests run on each device that speaks it.

``twin`` always runs; ``qemu`` builds the engine-less firmware (session-scoped, once) and boots it
on mps2-an386; ``renode`` needs ``renode`` on PATH; ``board`` needs a board on a serial port named
by ``TINYFARM_BOARD_PORT``. Each skips with the reason when it cannot run here.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass

import pytest
import serial

from device_harness.protocol import (
    CrcError, Frame, FrameDecoder, MsgType, encode_frame, pack_request, unpack_error,
    unpack_response,
)
from device_harness.protocol.spec import VERSION

BACKENDS = ["twin", "qemu", "renode", "board"]


@pytest.fixture(scope="session")
def qemu_firmware_elf(qemu_elf):
    return qemu_elf


@pytest.fixture(scope="session")
def renode_firmware_elf(request: pytest.FixtureRequest):
    if shutil.which("renode") is None:
        pytest.skip("renode not on PATH")
    return request.getfixturevalue("stm32f4_elf")


def _make_backend(name: str, request: pytest.FixtureRequest):
    if name == "twin":
        from device_harness.backends.twin import TwinBackend

        return TwinBackend("mps2-an386")  # 1 MB model buffer: the 300 KB upload fits
    if name == "qemu":
        if shutil.which("qemu-system-arm") is None:
            pytest.skip("qemu-system-arm not on PATH")
        from device_harness.backends.qemu import QemuBackend

        return QemuBackend(request.getfixturevalue("qemu_firmware_elf"))
    if name == "renode":
        from device_harness.backends.renode import RenodeBackend

        return RenodeBackend(request.getfixturevalue("renode_firmware_elf"))
    if name == "board":
        port = os.environ.get("TINYFARM_BOARD_PORT")
        if not port:
            pytest.skip("no board: set TINYFARM_BOARD_PORT=/dev/ttyACM0 (and flash the firmware)")
        from device_harness.backends.board import BoardBackend

        return BoardBackend(port, baud=int(os.environ.get("TINYFARM_BOARD_BAUD", "115200")))
    raise AssertionError(name)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    b = _make_backend(request.param, request)
    b.start()
    yield b
    b.stop()


@dataclass
class Reply:
    frame: Frame

    @property
    def is_error(self) -> bool:
        return self.frame.is_error

    @property
    def error(self) -> dict:
        assert self.frame.is_error, f"expected an error, got {self.frame}"
        return unpack_error(self.frame.payload)

    def fields(self) -> dict:
        assert not self.frame.is_error, unpack_error(self.frame.payload)
        return unpack_response(self.frame.type, self.frame.payload)


class RawLink:
    """Frame-level access to a device: exact bytes out, every frame in (no client heuristics)."""

    def __init__(self, url: str) -> None:
        self.port = serial.serial_for_url(url, baudrate=115200, timeout=0.05)
        self.port.reset_input_buffer()
        self.decoder = FrameDecoder()
        self.seq = 100
        self.events: list = []

    def close(self) -> None:
        self.port.close()

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFF
        return self.seq

    def send_raw(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()

    def receive(self, timeout: float = 10.0) -> Frame | CrcError:
        deadline = time.monotonic() + timeout
        while not self.events:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from the device")
            # what is waiting, else block for one byte: read(65536) would sit out the whole
            # 50 ms timeout after every short reply
            data = self.port.read(self.port.in_waiting or 1)
            if data:
                self.events += self.decoder.feed(data)
        return self.events.pop(0)

    def request(self, type_: int, payload: bytes = b"", seq: int | None = None,
                timeout: float = 10.0) -> Reply:
        seq = self.next_seq() if seq is None else seq
        self.send_raw(encode_frame(type_, seq, payload))
        ev = self.receive(timeout)
        assert isinstance(ev, Frame), f"corrupted answer {ev}"
        assert ev.is_response and ev.seq == seq and ev.type == type_, ev
        return Reply(ev)

    def hello(self, max_payload: int = 4096) -> dict:
        return self.request(MsgType.HELLO, pack_request(
            MsgType.HELLO, protocol_version=VERSION, max_payload=max_payload)).fields()


@pytest.fixture()
def link(backend):
    lk = RawLink(backend.url)
    yield lk
    lk.close()
