"""Backends for the conformance suite: the same protocol tests run on each device that speaks it.

``twin`` always runs; ``qemu`` boots the firmware users flash on mps2-an386 (the TFLM reference-kernel
build when a TFLM tree is found, else the engine-less protocol-conformance build); ``renode`` the same
on Renode's STM32F4-Discovery (Renode found as ``device_harness.backends.renode.find_renode`` says);
``board`` needs a board on a serial port named by ``TINYFARM_BOARD_PORT``. Each skips with the reason
when it cannot run here.
"""

from __future__ import annotations

import os
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


def firmware(request: pytest.FixtureRequest, engine_fixture: str, engine_less_fixture: str):
    """The engine build's ELF when this machine can build it, else the engine-less one."""
    from device_harness.firmware_builds import tflm_missing

    return request.getfixturevalue(engine_less_fixture if tflm_missing() else engine_fixture)


def _make_backend(name: str, request: pytest.FixtureRequest):
    if name == "twin":
        from device_harness.backends.twin import TwinBackend

        return TwinBackend("mps2-an386")  # 1 MB model buffer: the 300 KB upload fits
    if name == "qemu":
        request.getfixturevalue("qemu")
        from device_harness.backends.qemu import QemuBackend

        return QemuBackend(firmware(request, "qemu_tflm_elf", "qemu_elf"))
    if name == "renode":
        request.getfixturevalue("renode")
        from device_harness.backends.renode import RenodeBackend

        return RenodeBackend(firmware(request, "renode_tflm_elf", "stm32f4_elf"))
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

    def hello(self, max_payload: int = 4096, timeout: float = 10.0) -> dict:
        return self.request(MsgType.HELLO, pack_request(
            MsgType.HELLO, protocol_version=VERSION, max_payload=max_payload), timeout=timeout).fields()

    def reset(self) -> dict:
        """RESET, then HELLO until the device is back: bytes that reach a UART while the device
        restarts are lost (a board, Renode), so the first HELLO may go unanswered."""
        r = self.request(MsgType.RESET)
        assert not r.is_error and r.frame.payload == b""
        for _ in range(50):
            try:
                return self.hello(timeout=1.0)
            except TimeoutError:
                continue
        raise TimeoutError("no HELLO answer within 50 s of RESET")


@pytest.fixture()
def link(backend):
    lk = RawLink(backend.url)
    yield lk
    lk.close()
