"""The wire protocol codec: spec loading, payload layouts, frames, resync — and fuzzing."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_harness.protocol import (
    MESSAGES, CrcError, ErrorCode, Flag, Frame, FrameDecoder, MsgType, PayloadError, encode_frame,
    pack_error, pack_request, pack_response, unpack_error, unpack_request, unpack_response,
)
from device_harness.protocol import payload as payload_mod
from device_harness.protocol.spec import HEADER_BYTES, SPEC, SYNC

FUZZ = settings(max_examples=150, deadline=1000, suppress_health_check=[HealthCheck.too_slow])


def test_spec_enums_come_from_the_yaml():
    assert MsgType.HELLO == 0x01 and MsgType.ARENA == 0x25
    assert ErrorCode.DEVICE_FAULT == 16 and ErrorCode.CRC_MISMATCH == 3
    assert SYNC == b"\xa5\x5a" and HEADER_BYTES == 10
    assert {m.name for m in MESSAGES.values()} == set(SPEC["messages"])


def test_frame_layout_matches_the_spec_byte_for_byte():
    frame = encode_frame(MsgType.ECHO, 0x1234, b"abc", Flag.RESPONSE)
    assert frame[:2] == SYNC
    type_, flags, seq, length, hcrc = struct.unpack_from("<BBHHH", frame, 2)
    assert (type_, flags, seq, length) == (0x03, 0x01, 0x1234, 3)
    assert hcrc == zlib.crc32(frame[2:8]) & 0xFFFF
    assert struct.unpack_from("<I", frame, len(frame) - 4)[0] == zlib.crc32(frame[2:-4])
    assert frame[10:13] == b"abc" and len(frame) == 17


def test_hello_and_tensor_info_payloads_round_trip():
    hello = dict(protocol_version=1, max_payload=4096, rx_window=4, capabilities=3, cpu_hz=168_000_000,
                 tick_hz=1_000_000_000, arena_bytes=65536, max_model_bytes=98304, firmware_version="fw",
                 tflm_version="none", board="b", tick_source="host-ns")
    assert unpack_response(MsgType.HELLO, pack_response(MsgType.HELLO, **hello)) == hello
    ti = pack_response(MsgType.TENSOR_INFO, dtype=9, bytes=8, scale=0.5, zero_point=-3, dims=[1, 2, 4])
    out = unpack_response(MsgType.TENSOR_INFO, ti)
    assert out["ndims"] == 3 and out["dims"] == [1, 2, 4] and out["zero_point"] == -3
    begin = pack_request(MsgType.MODEL_BEGIN, size=10, sha256=list(range(32)))
    assert len(begin) == 36 and unpack_request(MsgType.MODEL_BEGIN, begin)["sha256"] == list(range(32))
    assert unpack_error(pack_error(ErrorCode.NO_MODEL, "no model")) == {"code": 9, "message": "no model"}


def test_malformed_payloads_raise_payload_error():
    with pytest.raises(PayloadError):
        unpack_request(MsgType.HELLO, b"\x01")  # too short
    with pytest.raises(PayloadError):
        unpack_request(MsgType.INVOKE, b"extra")  # trailing bytes
    with pytest.raises(PayloadError):
        unpack_response(MsgType.TENSOR_INFO, pack_response(MsgType.TENSOR_INFO, dtype=9, bytes=8, scale=1.0,
                                                           zero_point=0, dims=[1, 2])[:-1])
    with pytest.raises(PayloadError):
        pack_request(MsgType.MODEL_BEGIN, size=1, sha256=[0] * 31)


def test_decoder_resyncs_after_garbage_and_reports_crc_errors():
    good = encode_frame(MsgType.ECHO, 7, b"payload")
    bad = bytearray(encode_frame(MsgType.ECHO, 8, b"payload"))
    bad[12] ^= 0xFF  # payload corrupted: header intact -> CrcError with seq 8
    hdr_bad = bytearray(encode_frame(MsgType.ECHO, 9, b"zzz"))
    hdr_bad[6] ^= 0x40  # length corrupted: hcrc rejects it, nothing reported
    stream = b"\x00\xa5garbage\xa5" + bytes(bad) + bytes(hdr_bad) + good
    dec = FrameDecoder()
    events = []
    for i in range(0, len(stream), 3):  # byte-dribbled
        events += dec.feed(stream[i:i + 3])
    assert events == [CrcError(MsgType.ECHO, 0, 8, 7), Frame(MsgType.ECHO, 0, 7, b"payload")]
    assert dec.header_errors >= 1 and dec.crc_errors == 1 and dec.pending == 0


def test_length_above_negotiated_maximum_is_rejected_without_waiting():
    dec = FrameDecoder(max_payload=16)
    big = encode_frame(MsgType.ECHO, 1, b"x" * 17)
    small = encode_frame(MsgType.ECHO, 2, b"y")
    assert dec.feed(big[:HEADER_BYTES] + small) == [Frame(MsgType.ECHO, 0, 2, b"y")]


# ---- fuzzing -------------------------------------------------------------------------------------
message_types = st.sampled_from([m.id for m in MESSAGES.values()])


@FUZZ
@given(st.binary(max_size=600), st.integers(1, 64))
def test_fuzz_random_bytes_never_crash_the_decoder(data, step):
    dec = FrameDecoder(max_payload=256)
    for i in range(0, len(data), step):
        for ev in dec.feed(data[i:i + step]):
            assert isinstance(ev, (Frame, CrcError))
    assert dec.pending <= HEADER_BYTES + 256 + 4  # bounded buffer: never waits for more than one frame


@FUZZ
@given(message_types, st.integers(0, 0xFFFF), st.binary(max_size=300),
       st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=8),
       st.binary(max_size=40), st.integers(1, 50))
def test_fuzz_mutated_frames_then_a_good_frame_is_always_recovered(type_, seq, payload, flips, junk, step):
    """Whatever happens to one frame, a following intact frame is decoded (resync, no hang)."""
    victim = bytearray(junk + encode_frame(type_, seq, payload))
    for pos, val in flips:
        if victim:
            victim[pos % len(victim)] = val
    marker = encode_frame(MsgType.ECHO, 0xBEEF, b"marker")
    # a mutated header may announce up to max_payload bytes; pad so that wait ends too
    stream = bytes(victim) + b"\x00" * (300 + 14) + marker
    dec = FrameDecoder(max_payload=300)
    events = []
    for i in range(0, len(stream), step):
        events += dec.feed(stream[i:i + step])
    assert Frame(MsgType.ECHO, 0, 0xBEEF, b"marker") in events


@FUZZ
@given(message_types, st.binary(max_size=120))
def test_fuzz_payload_unpack_only_raises_payload_error(type_, data):
    for unpack in (unpack_request, unpack_response):
        try:
            unpack(type_, data)
        except PayloadError:
            pass


@FUZZ
@given(st.data())
def test_fuzz_every_message_layout_round_trips(data):
    """Values drawn from the spec's own field types survive pack -> unpack."""
    spec = data.draw(st.sampled_from(list(MESSAGES.values())))
    for fields in (spec.request, spec.response):
        values = {}
        counts = {}
        for f in fields:
            base, count = payload_mod._parse_type(f.type)
            scalar = {
                "u8": st.integers(0, 255), "u16": st.integers(0, 0xFFFF), "u32": st.integers(0, 2**32 - 1),
                "u64": st.integers(0, 2**64 - 1), "i32": st.integers(-(2**31), 2**31 - 1),
                "f32": st.sampled_from([0.0, 0.5, -2.25, 1e-3]),
            }
            if base == "bytes":
                values[f.name] = data.draw(st.binary(max_size=64))
            elif base == "str8":
                values[f.name] = data.draw(st.text(max_size=20))
            elif count is None:
                values[f.name] = data.draw(scalar[base])
            else:
                n = count if isinstance(count, int) else data.draw(st.integers(0, 8))
                if isinstance(count, str):
                    counts[count] = n
                values[f.name] = data.draw(st.lists(scalar[base], min_size=n, max_size=n))
        values.update(counts)
        out = payload_mod.unpack(fields, payload_mod.pack(fields, values))
        for k, v in values.items():
            if isinstance(v, float):
                assert out[k] == pytest.approx(v)
            elif isinstance(v, str):
                assert out[k] == v.encode()[:255].decode("utf-8", "replace") or len(v.encode()) > 255
            else:
                assert out[k] == v
