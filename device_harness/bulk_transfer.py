"""Bulk transfers over a :class:`~device_harness.link.Link`: windowed and chunked.

Input writes and output reads are idempotent requests pipelined up to the device's advertised
``rx_window``; a model upload streams MODEL_CHUNKs with go-back-N on the device's cumulative
``received`` acknowledgement, a congestion-style window (halves on a loss, grows on clean acks)
and the link's adaptive chunk size, so an upload completes even with 1% of its bytes corrupted.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

from device_harness.link import Link, Timeout, error_code, message_name, raise_error
from device_harness.protocol import CrcError, ErrorCode, Flag, Frame, MsgType, pack_request, unpack_response
from device_harness.protocol.spec import FRAME_OVERHEAD
from tinyfarm.errors import DeviceTimeout


def pipelined(link: Link, requests: Sequence[tuple[int, bytes, int]]) -> list[Frame]:
    """Idempotent requests (type, payload, expected response bytes), up to ``window`` in flight.

    A request whose answer is lost or corrupt, or answered CRC_MISMATCH, is resent (same seq:
    the device re-executes it or answers from its cache — both are harmless for these).
    """
    results: list[Frame | None] = [None] * len(requests)
    outstanding: dict[int, tuple[int, float, int]] = {}  # seq -> (index, sent_at, attempts)
    nxt = 0
    done = 0
    while done < len(requests):
        while len(outstanding) < link.window and nxt < len(requests):
            seq = link.next_seq()
            t, p, _ = requests[nxt]
            outstanding[seq] = (nxt, link.send(t, seq, p), 0)
            nxt += 1
        # answers queue on the line too: allow for the expected response bytes in flight
        answer_bytes = sum(requests[i][2] + FRAME_OVERHEAD for i, _, _ in outstanding.values())
        deadline = (min(o[1] for o in outstanding.values()) + link.service_timeout()
                    + 1.05 * link.line_time(answer_bytes))
        resend: list[int] = []
        try:
            ev = link.next_event(deadline)
        except Timeout:
            link.stats.timeouts += 1
            link.chunk_failed()
            resend = list(outstanding)
            ev = None
        if isinstance(ev, CrcError):
            link.stats.corrupt_responses += 1
            if ev.seq in outstanding:
                resend = [ev.seq]
        elif isinstance(ev, Frame) and ev.seq in outstanding:
            idx = outstanding[ev.seq][0]
            if ev.is_error:
                if error_code(ev) != ErrorCode.CRC_MISMATCH:
                    raise_error(ev, message_name(requests[idx][0]))
                link.stats.crc_errors_reported += 1
                resend = [ev.seq]
            else:
                link.note_rtt(time.monotonic() - outstanding[ev.seq][1])
                results[idx] = ev
                del outstanding[ev.seq]
                done += 1
        for seq in resend:
            idx, _, attempts = outstanding[seq]
            if attempts >= 16 * link.retries:
                raise DeviceTimeout(f"{message_name(requests[idx][0])} to {link.name} failed after "
                                    f"{attempts} attempts")
            t, p, _ = requests[idx]
            link.stats.retries += 1
            outstanding[seq] = (idx, link.send(t, seq, p), attempts + 1)
    return results  # type: ignore[return-value]

def stream_model(link: Link, model: bytes, progress: Callable[[int, int], None] | None) -> None:
    """MODEL_CHUNKs of ``model`` with go-back-N on the device's cumulative ``received``."""
    size = len(model)
    acked = 0
    next_off = 0
    outstanding: dict[int, tuple[int, int, float]] = {}  # seq -> (offset, length, sent_at)
    stalls = 0
    cwnd = float(link.window)  # congestion-style window: halves on a loss, grows on clean acks
    view = memoryview(model)
    while acked < size:
        while len(outstanding) < int(cwnd) and next_off < size:
            n = min(link.chunk, size - next_off)
            seq = link.next_seq()
            # spec layout: the fields before the trailing `data`, then the data uncopied
            prefix = pack_request(MsgType.MODEL_CHUNK, offset=next_off, data=b"")
            arrival = link.send(MsgType.MODEL_CHUNK, seq, view[next_off:next_off + n], prefix)
            outstanding[seq] = (next_off, n, arrival)
            next_off += n
        deadline = min(o[2] for o in outstanding.values()) + link.service_timeout()
        go_back = False
        try:
            ev = link.next_event(deadline)
        except Timeout:
            link.stats.timeouts += 1
            if link.chunk <= link.min_chunk:
                stalls += 1  # only give up once the chunk cannot shrink any further
            if stalls > link.retries:
                raise DeviceTimeout(f"upload to {link.name} stalled at byte {acked:,} of {size:,}") from None
            link.chunk_failed()
            go_back = True
            ev = None
        if isinstance(ev, CrcError):
            # an answer arrived corrupted. If it was an error answer, the chunk failed: go back;
            # otherwise the chunk got through and a later cumulative ack will cover it.
            link.stats.corrupt_responses += 1
            if ev.flags & Flag.ERROR and ev.seq in outstanding:
                link.chunk_failed()
                go_back = True
        elif isinstance(ev, Frame):
            if ev.type != MsgType.MODEL_CHUNK:
                continue
            if ev.is_error:
                code = error_code(ev)
                if code == ErrorCode.CRC_MISMATCH:
                    link.stats.crc_errors_reported += 1
                    link.chunk_failed()
                    go_back = ev.seq in outstanding
                elif code == ErrorCode.OUT_OF_ORDER:
                    go_back = ev.seq in outstanding
                else:
                    raise_error(ev, "MODEL_CHUNK")
            else:
                try:
                    received = unpack_response(MsgType.MODEL_CHUNK, ev.payload)["received"]
                except ValueError:
                    received = acked
                if ev.seq in outstanding:
                    link.note_rtt(time.monotonic() - outstanding[ev.seq][2])
                    link.chunk_ok()
                    cwnd = min(float(link.window), cwnd + 1.0 / cwnd)
                if received > acked:
                    acked = min(received, size)
                    stalls = 0
                    if progress:
                        progress(acked, size)
                for s, (off, n, _) in list(outstanding.items()):
                    if off + n <= acked:
                        del outstanding[s]
                next_off = max(next_off, acked)
        if go_back:
            link.stats.retries += 1
            cwnd = max(min(4.0, float(link.window)), cwnd / 2)
            outstanding.clear()
            next_off = acked
