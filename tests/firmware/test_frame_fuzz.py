"""The firmware's frame parser and dispatcher, built for the host with ASan/UBSan, fed random and
mutated frames: no crash, no sanitizer report, and the same frames the host codec sees.

Differential check: on any byte stream, the C++ parser must report exactly the frames and CRC
errors the Python decoder (device_harness.protocol.frame) reports — two implementations of one spec.
"""

from __future__ import annotations

import random
import struct
import subprocess

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_harness.protocol import CrcError, Frame, FrameDecoder, MsgType, encode_frame
from device_harness.protocol.spec import Flag

MAX_PAYLOAD = 1024  # the host-fuzz build's TF_MAX_PAYLOAD (firmware/cmake/host.cmake)


def run_cases(binary, cases: list[bytes]) -> list[dict]:
    stdin = b"".join(struct.pack("<I", len(c)) + c for c in cases)
    proc = subprocess.run([str(binary)], input=stdin, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    assert b"runtime error" not in proc.stderr, proc.stderr.decode(errors="replace")[-3000:]
    results, cur = [], {"events": [], "replies": []}
    for line in proc.stdout.decode().splitlines():
        tag, *rest = line.split()
        if tag == "E":
            cur["events"].append(tuple(int(x) for x in rest))
        elif tag == "R":
            cur["replies"].append(bytes.fromhex(rest[0]))
        elif tag == "END":
            cur["stats"] = tuple(int(x) for x in rest)
            results.append(cur)
            cur = {"events": [], "replies": []}
    assert len(results) == len(cases)
    return results


def python_events(data: bytes) -> list[tuple]:
    out = []
    for ev in FrameDecoder(MAX_PAYLOAD).feed(data):
        if isinstance(ev, Frame):
            out.append((1, ev.type, ev.flags, ev.seq, len(ev.payload)))
        else:
            assert isinstance(ev, CrcError)
            out.append((2, ev.type, ev.flags, ev.seq, ev.length))
    return out


def cpp_events(result: dict) -> list[tuple]:
    return [e for e in result["events"] if e[0] in (1, 2)]  # 3 = too large: the host drops those


def random_frame(rng: random.Random) -> bytes:
    types = [int(t) for t in MsgType] + [0x00, 0x7F, 0xFF]
    n = rng.choice([0, 1, 2, 4, 5, 7, 8, 36, rng.randrange(0, MAX_PAYLOAD + 1)])
    return encode_frame(rng.choice(types), rng.randrange(0x10000), rng.randbytes(n),
                        flags=rng.choice([0, 0, 0, Flag.RESPONSE, 0xFF]))


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        if op == 0 and b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            del b[rng.randrange(len(b)):]
        elif op == 2:
            i = rng.randrange(len(b) + 1)
            b[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op == 3 and b:
            i = rng.randrange(len(b))
            b[i:i] = b[i:i + rng.randint(1, 32)]
        elif op == 4 and len(b) > 10:
            b[rng.randrange(2, 10)] = rng.randrange(256)  # header byte
        else:
            b[rng.randrange(len(b) + 1):0] = b"\xa5\x5a"
    return bytes(b)


def test_valid_frames_parse_and_get_one_wellformed_reply_each(fuzz_binary):
    rng = random.Random(1)
    cases = [b"".join(random_frame(rng) for _ in range(rng.randint(1, 6))) for _ in range(300)]
    for data, result in zip(cases, run_cases(fuzz_binary, cases)):
        assert cpp_events(result) == python_events(data)
        requests = [e for e in result["events"] if e[0] == 1 and not e[2] & Flag.RESPONSE]
        decoded = FrameDecoder().feed(b"".join(result["replies"]))
        assert all(isinstance(f, Frame) and f.is_response for f in decoded)
        assert len(decoded) == len(requests)  # exactly one answer per request, none to responses
        for req, rsp in zip(requests, decoded):
            assert (rsp.type, rsp.seq) == (req[1], req[3])


def test_random_bytes_do_not_crash(fuzz_binary):
    rng = random.Random(2)
    cases = [rng.randbytes(rng.randint(0, 3000)) for _ in range(400)]
    # sprinkle sync markers so the parser gets past the hunt for sync into header checks
    for _ in range(200):
        b = bytearray(rng.randbytes(500))
        for _ in range(rng.randint(1, 20)):
            i = rng.randrange(len(b) - 1)
            b[i:i + 2] = b"\xa5\x5a"
        cases.append(bytes(b))
    cases += [b"\xa5\x5a" * rng.randint(1, 700) + rng.randbytes(20) for _ in range(50)]
    for data, result in zip(cases, run_cases(fuzz_binary, cases)):
        assert cpp_events(result) == python_events(data)


def test_mutated_frames_do_not_crash_and_match_the_host_decoder(fuzz_binary):
    rng = random.Random(3)
    cases = []
    for _ in range(1500):
        frames = b"".join(random_frame(rng) for _ in range(rng.randint(1, 4)))
        cases.append(mutate(rng, frames))
    for data, result in zip(cases, run_cases(fuzz_binary, cases)):
        assert cpp_events(result) == python_events(data)
        for frame in FrameDecoder().feed(b"".join(result["replies"])):
            assert isinstance(frame, Frame) and frame.is_response


def test_oversized_length_is_refused_without_waiting(fuzz_binary):
    big = encode_frame(MsgType.ECHO, 9, bytes(MAX_PAYLOAD + 1))
    ok = encode_frame(MsgType.ECHO, 10, b"ok")
    (result,) = run_cases(fuzz_binary, [big + ok])
    kinds = [e[0] for e in result["events"]]
    assert kinds[0] == 3  # PAYLOAD_TOO_LARGE answered for seq 9 ...
    assert (1, MsgType.ECHO, 0, 10, 2) in result["events"]  # ... and the next frame still parses


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(
    st.binary(max_size=64),
    st.builds(lambda t, s, p: encode_frame(t, s, p), st.integers(0, 255), st.integers(0, 0xFFFF),
              st.binary(max_size=MAX_PAYLOAD + 8)),
), max_size=8))
def test_hypothesis_streams(fuzz_binary, parts):
    data = b"".join(parts)
    (result,) = run_cases(fuzz_binary, [data])
    assert cpp_events(result) == python_events(data)


def _upload_stream(model: bytes, sha: bytes, chunk: int = 1000) -> bytes:
    from device_harness.protocol import pack_request

    out = [encode_frame(MsgType.MODEL_BEGIN, 1, pack_request(MsgType.MODEL_BEGIN, size=len(model), sha256=list(sha)))]
    for i, off in enumerate(range(0, len(model), chunk)):
        out.append(encode_frame(MsgType.MODEL_CHUNK, 2 + i, pack_request(
            MsgType.MODEL_CHUNK, offset=off, data=model[off:off + chunk])))
    out.append(encode_frame(MsgType.MODEL_END, 60000, b""))
    return b"".join(out)


def test_device_sha256_verifies_uploads_of_every_padding_length(fuzz_binary):
    """The firmware's own SHA-256 (FIPS 180-4) against hashlib, across block-boundary sizes."""
    import hashlib

    from device_harness.protocol import unpack_error

    rng = random.Random(4)
    sizes = [1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, 4097, 65536]
    cases, expect = [], []
    for n in sizes:
        model = rng.randbytes(n)
        good = hashlib.sha256(model).digest()
        cases += [_upload_stream(model, good), _upload_stream(model, bytes(32))]
        expect += [True, False]
    for ok, result in zip(expect, run_cases(fuzz_binary, cases)):
        end = FrameDecoder().feed(result["replies"][-1])[0]
        assert end.type == MsgType.MODEL_END and end.seq == 60000
        if ok:
            assert not end.is_error and end.payload[0] == 1  # VERIFIED, not loaded (no engine)
        else:
            assert end.is_error and unpack_error(end.payload)["code"] == 8  # HASH_MISMATCH


def test_first_request_after_a_fault_reset_reports_device_fault(fuzz_binary):
    """After a HardFault the firmware resets; HELLO still answers, the next request gets DEVICE_FAULT
    (with the fault registers) once, and the one after that runs normally."""
    from device_harness.protocol import ErrorCode, pack_request, unpack_error

    stream = b"".join([
        encode_frame(MsgType.HELLO, 1, pack_request(MsgType.HELLO, protocol_version=1, max_payload=1024)),
        encode_frame(MsgType.ECHO, 2, b"x"),
        encode_frame(MsgType.ECHO, 3, b"y"),
    ])
    stdin = struct.pack("<I", len(stream)) + stream
    proc = subprocess.run([str(fuzz_binary), "--after-fault"], input=stdin, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    replies = [bytes.fromhex(line.split()[1]) for line in proc.stdout.decode().splitlines() if line.startswith("R ")]
    hello, first, second = (FrameDecoder().feed(r)[0] for r in replies)
    assert not hello.is_error
    assert first.is_error and unpack_error(first.payload)["code"] == ErrorCode.DEVICE_FAULT
    assert "HardFault" in unpack_error(first.payload)["message"]
    assert not second.is_error and second.payload == b"y"
