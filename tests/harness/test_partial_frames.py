"""A frame whose tail is lost on the line must not wedge the device: after an idle gap the receiver
drops it and resynchronises, as a UART receiver does on an idle line."""

from __future__ import annotations

import time

import serial

from device_harness.boards import get_board
from device_harness.client import DeviceClient
from device_harness.protocol import FrameDecoder, MsgType, encode_frame
from device_harness.twin.server import INTER_BYTE_GAP_S, TwinServer


def test_decoder_abandons_a_partial_frame_and_finds_the_next_one():
    big = encode_frame(MsgType.ECHO, 1, bytes(5000))
    ping = encode_frame(MsgType.ECHO, 2, b"ping")
    dec = FrameDecoder()
    assert dec.feed(big[:300]) == []  # header announces 5,000 bytes: waits for them
    assert dec.wanted > 0
    assert dec.feed(ping) == []  # swallowed into the unfinished payload
    events = dec.abandon_partial()
    assert [(e.seq, e.payload) for e in events] == [(2, b"ping")]
    assert dec.pending == 0


def test_twin_answers_after_a_large_frame_lost_its_tail():
    with TwinServer(get_board("stm32f4-discovery")) as server:
        raw = serial.serial_for_url(server.url, timeout=0)
        try:
            # a valid header announcing 60,000 bytes, then only 20,000 of them: the rest is lost
            raw.write(encode_frame(MsgType.ECHO, 7, bytes(60000))[:20000])
            raw.flush()
            time.sleep(3 * INTER_BYTE_GAP_S)
        finally:
            raw.close()
        with DeviceClient.open(server.url) as dev:
            info = dev.hello()
            assert info.board
            assert dev.echo(b"still here") == b"still here"
