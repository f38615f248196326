"""Protocol conformance: every backend (twin, QEMU, Renode, board) answers the protocol the same way.

Frame-level on purpose: the tests send exact frames (including corrupted ones) and check each
answer, so a device cannot pass by leaning on the host client's retries.
"""

from __future__ import annotations

import hashlib
import struct
import zlib

import pytest

from device_harness.protocol import ErrorCode, MsgType, ModelStatus, encode_frame, pack_request
from device_harness.protocol.spec import MIN_PAYLOAD, VERSION, Capability

pytestmark = pytest.mark.emulator

MODEL_BYTES = 300 * 1024


def padded_model(base: bytes, size: int) -> bytes:
    """A real .tflite (the suite's sine model) padded to ``size``: engines can load it, and
    flatbuffers ignore bytes past the root's reach."""
    return base + bytes((i * 7 + 3) & 0xFF for i in range(size - len(base)))


def upload(link, model: bytes, info: dict) -> dict:
    sha = hashlib.sha256(model).digest()
    r = link.request(MsgType.MODEL_BEGIN, pack_request(MsgType.MODEL_BEGIN, size=len(model), sha256=list(sha)))
    assert not r.is_error, r.error
    step = min(info["max_payload"], 4096) - 4
    for off in range(0, len(model), step):
        r = link.request(MsgType.MODEL_CHUNK, pack_request(MsgType.MODEL_CHUNK, offset=off,
                                                           data=model[off:off + step]))
        assert r.fields()["received"] == min(off + step, len(model))
    return link.request(MsgType.MODEL_END, timeout=30).fields()


def test_hello_fields(link, backend):
    info = link.hello()
    assert info["protocol_version"] == VERSION
    assert info["max_payload"] >= MIN_PAYLOAD
    assert info["rx_window"] >= 1
    assert info["tick_hz"] > 0 and info["cpu_hz"] >= 0
    assert info["max_model_bytes"] >= 64 * 1024
    assert info["board"] and info["firmware_version"] and info["tick_source"]
    has_engine = bool(info["capabilities"] & Capability.ENGINE)
    assert (info["tflm_version"] == "none") == (not has_engine)
    assert (info["arena_bytes"] > 0) == has_engine
    if backend.name.startswith("qemu"):
        assert info["board"] == "qemu-mps2-an386"
        assert info["tick_source"] == "qemu-icount" and info["tick_hz"] == 25_000_000


def test_echo_and_retransmission(link):
    link.hello()
    data = bytes(range(256)) * 2
    first = link.request(MsgType.ECHO, data, seq=4242)
    assert first.frame.payload == data
    # Same seq again = a retransmission: the remembered answer, byte for byte.
    again = link.request(MsgType.ECHO, b"different", seq=4242)
    assert again.frame.payload == data


@pytest.mark.slow
def test_300k_upload_verified_on_device(link, sine_int8):
    """300 KB, or the whole model buffer of a device with less (the STM32F4's 96 KB)."""
    info = link.hello()
    end = upload(link, padded_model(sine_int8, min(MODEL_BYTES, info["max_model_bytes"])), info)
    assert end["status"] & ModelStatus.VERIFIED
    has_engine = bool(info["capabilities"] & Capability.ENGINE)
    assert bool(end["status"] & ModelStatus.LOADED) == has_engine
    if has_engine:
        assert end["inputs"] >= 1 and end["outputs"] >= 1 and end["arena_used"] > 0


def test_wrong_hash_is_refused(link):
    info = link.hello()
    model = bytes(range(256)) * 8
    bad = hashlib.sha256(model + b"x").digest()
    assert not link.request(MsgType.MODEL_BEGIN, pack_request(
        MsgType.MODEL_BEGIN, size=len(model), sha256=list(bad))).is_error
    step = min(info["max_payload"], 4096) - 4
    for off in range(0, len(model), step):
        link.request(MsgType.MODEL_CHUNK, pack_request(MsgType.MODEL_CHUNK, offset=off, data=model[off:off + step]))
    r = link.request(MsgType.MODEL_END, timeout=30)
    assert r.error["code"] == ErrorCode.HASH_MISMATCH


def test_corrupted_chunk_rejected_then_retried(link):
    link.hello()
    model = bytes((i * 31 + 5) & 0xFF for i in range(3000))
    sha = hashlib.sha256(model).digest()
    assert not link.request(MsgType.MODEL_BEGIN, pack_request(
        MsgType.MODEL_BEGIN, size=len(model), sha256=list(sha))).is_error
    first = pack_request(MsgType.MODEL_CHUNK, offset=0, data=model[:1000])
    assert link.request(MsgType.MODEL_CHUNK, first).fields()["received"] == 1000

    payload = pack_request(MsgType.MODEL_CHUNK, offset=1000, data=model[1000:2000])
    seq = link.next_seq()
    frame = bytearray(encode_frame(MsgType.MODEL_CHUNK, seq, payload))
    frame[10 + 500] ^= 0x40  # one flipped bit in the data: header sound, payload CRC wrong
    link.send_raw(bytes(frame))
    nak = link.receive()
    assert nak.is_response and nak.is_error and nak.seq == seq and nak.type == MsgType.MODEL_CHUNK
    from device_harness.protocol import unpack_error
    assert unpack_error(nak.payload)["code"] == ErrorCode.CRC_MISMATCH

    # The retransmission (same seq) is executed: the NAK was not remembered as the answer.
    r = link.request(MsgType.MODEL_CHUNK, payload, seq=seq)
    assert r.fields()["received"] == 2000
    r = link.request(MsgType.MODEL_CHUNK, pack_request(MsgType.MODEL_CHUNK, offset=2000, data=model[2000:]))
    assert r.fields()["received"] == 3000
    end = link.request(MsgType.MODEL_END, timeout=30)
    if end.is_error:  # an engine may refuse these bytes as a model, but only after verifying them
        assert end.error["code"] == ErrorCode.MODEL_INVALID
    else:
        assert end.fields()["status"] & ModelStatus.VERIFIED


def test_out_of_order_chunk_names_expected_offset(link):
    link.hello()
    model = bytes(600)
    link.request(MsgType.MODEL_BEGIN, pack_request(MsgType.MODEL_BEGIN, size=600,
                                                   sha256=list(hashlib.sha256(model).digest())))
    r = link.request(MsgType.MODEL_CHUNK, pack_request(MsgType.MODEL_CHUNK, offset=300, data=model[300:]))
    assert r.error["code"] == ErrorCode.OUT_OF_ORDER and "0" in r.error["message"]


def test_garbage_then_frame_resynchronises(link):
    link.hello()
    noise = bytes([0xA5, 0x5A, 0x01, 0x00, 0x05, 0x00]) + bytes(range(40)) + b"\xa5"
    seq = link.next_seq()
    link.send_raw(noise + encode_frame(MsgType.ECHO, seq, b"after noise"))
    ev = link.receive()
    assert ev.seq == seq and ev.payload == b"after noise"


def test_reset_drops_the_model(link):
    info = link.hello()
    model = bytes(512)
    link.request(MsgType.MODEL_BEGIN, pack_request(MsgType.MODEL_BEGIN, size=512,
                                                   sha256=list(hashlib.sha256(model).digest())))
    info = link.reset()
    # The device is back: HELLO answers, and the upload in progress is gone.
    assert info["protocol_version"] == VERSION
    r = link.request(MsgType.MODEL_CHUNK, pack_request(MsgType.MODEL_CHUNK, offset=0, data=model))
    assert r.error["code"] == ErrorCode.BAD_STATE


def test_invoke_without_engine_or_model_is_a_clear_error(link):
    info = link.hello()
    info = link.reset()
    r = link.request(MsgType.INVOKE)
    if info["capabilities"] & Capability.ENGINE:
        assert r.error["code"] == ErrorCode.NO_MODEL
    else:
        assert r.error["code"] == ErrorCode.NO_ENGINE
        assert "TFLM_ROOT" in r.error["message"]
        for msg, payload in ((MsgType.TENSOR_INFO, bytes(2)), (MsgType.BENCH, bytes(8)),
                             (MsgType.SET_INPUT, bytes(6))):
            assert link.request(msg, payload).error["code"] == ErrorCode.NO_ENGINE


def test_decompression_follows_the_decode_capability(link, sine_int8):
    """DECODE implies an engine; DECOMPRESSION answers like ARENA (NO_ENGINE without an engine,
    NO_MODEL before a load), then (used, capacity): 0 used for a model without DECODE operators."""
    info = link.hello()
    caps = info["capabilities"]
    assert not caps & Capability.DECODE or caps & Capability.ENGINE
    info = link.reset()
    r = link.request(MsgType.DECOMPRESSION)
    if not caps & Capability.ENGINE:
        assert r.error["code"] == ErrorCode.NO_ENGINE
        return
    assert r.error["code"] == ErrorCode.NO_MODEL
    assert upload(link, sine_int8, info)["status"] & ModelStatus.LOADED
    used, capacity = link.request(MsgType.DECOMPRESSION).fields().values()
    assert used == 0 and capacity >= 0


def test_tensors_follow_the_tensors_capability(link, sine_int8):
    """TENSORS implies an engine; without it PRESERVE_TENSORS and READ_TENSOR are unknown (like older
    firmware). With it: READ_TENSOR is BAD_STATE until a model loaded after PRESERVE_TENSORS 1 has
    been invoked, then type + size + bytes, BAD_ARGUMENT past the model's tensors."""
    info = link.hello()
    caps = info["capabilities"]
    assert not caps & Capability.TENSORS or caps & Capability.ENGINE
    preserve = pack_request(MsgType.PRESERVE_TENSORS, enable=1)
    if not caps & Capability.TENSORS:
        assert link.request(MsgType.PRESERVE_TENSORS, preserve).error["code"] == ErrorCode.UNKNOWN_COMMAND
        r = link.request(MsgType.READ_TENSOR, pack_request(MsgType.READ_TENSOR, index=0, offset=0, length=0))
        assert r.error["code"] == ErrorCode.UNKNOWN_COMMAND
        return
    info = link.reset()
    assert not link.request(MsgType.PRESERVE_TENSORS, preserve).is_error
    assert upload(link, sine_int8, info)["status"] & ModelStatus.LOADED

    def read(index, length=16):
        return link.request(MsgType.READ_TENSOR, pack_request(MsgType.READ_TENSOR, index=index, offset=0,
                                                              length=length))

    assert read(0).error["code"] == ErrorCode.BAD_STATE  # not invoked yet
    assert not link.request(MsgType.SET_INPUT, pack_request(MsgType.SET_INPUT, index=0, offset=0,
                                                            data=b"\x05")).is_error
    assert not link.request(MsgType.INVOKE, timeout=30).is_error
    r = read(4, 300).fields()  # the 16x16 int8 weights of the second FULLY_CONNECTED
    assert r["dtype"] == 9 and r["bytes"] == 256 and len(r["data"]) == 256
    assert read(10).error["code"] == ErrorCode.BAD_ARGUMENT  # the sine model has 10 tensors
    link.request(MsgType.RESET)


def test_unknown_command(link):
    link.hello()
    r = link.request(0x7E, b"")
    assert r.error["code"] == ErrorCode.UNKNOWN_COMMAND


def test_frame_crc_covers_header_and_payload():
    """The codec and the spec agree on what the trailer CRC covers (bytes 2 .. 10+length)."""
    frame = encode_frame(MsgType.ECHO, 7, b"abc")
    assert struct.unpack("<I", frame[-4:])[0] == zlib.crc32(frame[2:-4])
