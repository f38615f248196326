"""Serve a :class:`TwinDevice` on a raw pty or a loopback TCP port, optionally paced at a baud rate.

One thread, one select loop: read what arrives, release it through the line pacer (when pacing),
decode frames, answer each, and send answers no earlier than the paced line would deliver them —
full duplex like a UART, so pipelined uploads see the board's real line rate. Over TCP, one client
at a time; the device state survives reconnects like a board's does. A client that connects while
another holds the twin is answered ``BUSY`` naming the holder (:mod:`.busy`); a holder idle for
``idle_timeout_s`` is dropped; when a client goes away, whatever it sent that the (paced) line has
not delivered yet, and answers not yet sent, are discarded at once, so the next client is served now.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import signal
import socket
import threading
import time
from collections import deque

from device_harness.boards import BoardProfile
from device_harness.protocol import FrameDecoder
from device_harness.protocol.spec import MAX_PAYLOAD_LIMIT
from device_harness.transports.paced import LinePacer
from device_harness.transports.pty import open_raw_pty
from device_harness.twin.busy import BusyResponder, describe_holder
from device_harness.twin.device import TwinDevice

log = logging.getLogger(__name__)

#: a frame begun and then silent this long lost its tail: drop it and resync (UART idle-line rule)
INTER_BYTE_GAP_S = 0.1


class TwinServer:
    """``TwinServer(profile, tcp=False, baud=None, idle_timeout_s=None)``; ``url`` is what a client opens.

    ``baud``: pace the line at this rate (None: as fast as the pty/socket goes). ``decode=False``:
    a twin without the DECODE capability (a firmware built without TFLM compression).
    ``host_time``: ticks in host ns instead of the board's estimated cycles (see :class:`TwinDevice`).
    ``tensors=False``: a twin without the TENSORS capability (PRESERVE_TENSORS, READ_TENSOR).
    ``idle_timeout_s`` (TCP): drop a client that has sent nothing for this long, so a forgotten
    connection cannot hold the twin forever (None: never). ``serve_forever()`` blocks until
    :meth:`stop`; ``start()`` runs it in a daemon thread.
    """

    def __init__(self, profile: BoardProfile, *, tcp: bool = False, port: int = 0, baud: int | None = None,
                 max_payload: int = MAX_PAYLOAD_LIMIT, idle_timeout_s: float | None = None,
                 decode: bool = True, host_time: bool | None = None,
                 tensors: bool = True) -> None:
        if not 0 <= int(port) <= 65535:
            raise ValueError(f"TCP port {port} is not in 0..65535")
        if baud is not None and baud <= 0:
            raise ValueError(f"baud rate {baud} must be positive")
        self.profile = profile
        self.baud = baud
        self.idle_timeout_s = idle_timeout_s or None
        self.pacer: LinePacer | None = LinePacer(baud) if baud else None
        self._tx: deque[tuple[float, bytes]] = deque()
        self.busy = BusyResponder()
        self._peer: tuple[str, int] | None = None
        self._conn_since = self._last_activity = 0.0
        self.dropped_idle = 0
        self.device = TwinDevice(profile, paced=baud is not None, max_payload=max_payload, decode=decode,
                                 host_time=host_time, tensors=tensors)
        self.decoder = FrameDecoder(MAX_PAYLOAD_LIMIT)
        self._stop_r, self._stop_w = os.pipe()
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._master = self._slave = -1
        if tcp:
            self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(("127.0.0.1", port))
            self._listener.listen(8)  # the ones waiting are answered BUSY, not left unanswered
            self.url = f"socket://127.0.0.1:{self._listener.getsockname()[1]}"
        else:
            self._master, self._slave, path = open_raw_pty()
            os.set_blocking(self._master, False)
            self.url = path
        self.frames_handled = 0
        self._stopping = False
        self._last_rx = time.monotonic()

    # lifecycle ------------------------------------------------------------------------------------
    def start(self) -> "TwinServer":
        self._thread = threading.Thread(target=self.serve_forever, name="twin-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        try:
            os.write(self._stop_w, b"x")
            if self._slave >= 0:
                os.write(self._slave, b"\0")  # wakes a blocking read of a frame's payload
        except OSError:
            pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.close()

    def close(self) -> None:
        for s in (self._conn, self._listener):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        self._conn = self._listener = None
        self.busy.close_all()
        for fd in (self._master, self._slave, self._stop_r, self._stop_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = self._stop_r = self._stop_w = -1
        self.device.close()

    def __enter__(self) -> "TwinServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # I/O ------------------------------------------------------------------------------------------
    def _io_fd(self) -> int | None:
        if self._listener is None:
            return self._master
        return self._conn.fileno() if self._conn is not None else None

    def _recv(self) -> bytes:
        """One read as bytes (TCP, and the paced pty whose bytes go through the line pacer)."""
        try:
            if self._listener is None:
                return os.read(self._master, 1 << 16)
            data = self._conn.recv(1 << 16, socket.MSG_DONTWAIT)  # never blocks the loop
            if not data:  # client went away: wait for the next one
                self._drop_connection()
            return data
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:  # pty: no client has the slave open right now
                return b""
            if self._listener is not None:
                self._drop_connection()
                return b""
            raise

    def _read_master(self, view: memoryview) -> int:
        """Read from the pty master straight into the decoder's buffer (0: nothing there now)."""
        try:
            return os.readv(self._master, [view])
        except BlockingIOError:
            return 0
        except OSError as exc:
            if exc.errno == errno.EIO:  # no client has the slave open right now
                return 0
            raise

    def _send(self, data: bytes) -> None:
        try:
            if self._listener is None:
                view = memoryview(data)
                while view:
                    try:
                        view = view[os.write(self._master, view):]
                    except BlockingIOError:
                        select.select([], [self._master], [], 0.05)
            elif self._conn is not None:
                self._conn.sendall(data)
                self._last_activity = time.monotonic()
        except OSError:
            if self._listener is not None:
                self._drop_connection()

    def _drop_connection(self) -> None:
        """The client is gone: close, and discard its bytes still on the (paced) line and the
        answers not yet sent to it; the next client starts on a clear line."""
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
        self._conn = None
        self._peer = None
        self.decoder.reset()
        self._tx.clear()
        if self.pacer is not None:
            self.pacer.reset()

    def _accept(self) -> None:
        """A new connection: the holder when the twin is free, else it waits (see busy.py)."""
        try:
            conn, peer = self._listener.accept()
        except OSError:
            return
        if self._held():
            self.busy.add(conn, peer)
        else:
            self._take_holder(conn, peer, b"")

    def _take_holder(self, conn: socket.socket, peer: tuple[str, int], sent: bytes) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conn, self._peer = conn, peer
        self._conn_since = self._last_activity = time.monotonic()
        self._ingest(sent)

    def _held(self) -> bool:
        """Is a client connected? Reads what the holder has sent so far first, so one that has
        left (its EOF behind its last bytes) is noticed now, not after the next client is refused."""
        while self._conn is not None:
            try:
                data = self._conn.recv(1 << 16, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return True
            except OSError:
                data = b""
            if not data:
                self._drop_connection()
                break
            self._ingest(data)
        return False

    def _ingest(self, data: bytes) -> None:
        """Bytes from the client: through the line pacer (when pacing) to the decoder; answer."""
        if data:
            self._last_rx = self._last_activity = time.monotonic()
        if self.pacer is not None:
            self.pacer.arrive(data)
            data = self.pacer.take()
        if data:
            self._answer(self.decoder.feed(data), self.pacer, self._tx)

    def holder(self) -> str:
        """Who holds the twin, for a BUSY answer."""
        return describe_holder(self._peer, self._conn_since, self.idle_timeout_s)

    def _idle_deadline(self) -> float | None:
        """When the holder is dropped for silence (None: no holder, no timeout, or work pending)."""
        if self._conn is None or not self.idle_timeout_s or self._tx or self.decoder.pending:
            return None
        if self.pacer is not None and self.pacer.next_rx_due() is not None:
            return None
        return self._last_activity + self.idle_timeout_s

    def _answer(self, events: list, pacer: LinePacer | None, tx: deque) -> None:
        """Hand each event to the device; send its answer now, or when the paced line would."""
        for event in events:
            reply = self.device.handle(event)
            self.frames_handled += 1
            if reply is None:
                continue
            if pacer is None:
                self._send(reply)
            else:
                tx.append((pacer.schedule_tx(len(reply)), reply))

    def _serve_pty_burst(self) -> None:
        """Unpaced pty: read into the decoder's buffer and answer frames in place (payloads are
        views, no copies), and while a frame is incomplete keep reading without going back to
        select: a pty hands over a few KB per read, so per-read overhead is what limits goodput.
        A frame whose tail stays away for the inter-byte gap is dropped, as a UART receiver would.
        """
        decoder = self.decoder
        missing = 0  # bytes the frame in progress still lacks: parse only once they are here
        while not self._stopping:
            got = decoder.fill(self._read_master)
            if not got:
                if not missing:
                    return
                ready, _, _ = select.select([self._master, self._stop_r], [], [], INTER_BYTE_GAP_S)
                if not ready:
                    self._answer(decoder.abandon_partial(), None, None)
                    return
                if self._stop_r in ready:
                    return
                continue
            self._last_rx = time.monotonic()
            missing -= got
            if missing > 0:
                continue
            self._answer(decoder.parse(), None, None)
            missing = decoder.wanted
            if not missing:
                return

    def serve_until_stopped(self) -> None:
        """Serve until Ctrl-C or SIGTERM, then close: what both ``tinyfarm twin`` and
        ``python -m device_harness.twin`` run in their main thread."""
        def _stop(*_: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _stop)
        try:
            self.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.close()

    def serve_forever(self) -> None:
        pacer, tx = self.pacer, self._tx
        while True:
            now = time.monotonic()
            waits = []
            if pacer is not None:
                due = pacer.next_rx_due()
                if due is not None:
                    waits.append(due - now)
            if tx:
                waits.append(tx[0][0] - now)
            if pacer is None and self.decoder.pending:
                waits.append(self._last_rx + INTER_BYTE_GAP_S - now)
            for deadline in (self._idle_deadline(), self.busy.next_deadline()):
                if deadline is not None:
                    waits.append(deadline - now)
            timeout = max(0.0, min(waits)) if waits else None
            fds = [self._stop_r]
            io = self._io_fd()
            if io is not None:
                fds.append(io)
            if self._listener is not None:
                fds.append(self._listener.fileno())
                fds += self.busy.fds()
            ready, _, _ = select.select(fds, [], [], timeout)
            if self._stop_r in ready:
                return
            if self._listener is not None:
                if self._listener.fileno() in ready:
                    self._accept()
                nxt = self.busy.service(ready, self._held, self.holder)
                if nxt is None and self._conn is None:
                    nxt = self.busy.next_holder()
                if nxt is not None and self._conn is None:
                    self._take_holder(*nxt)
                self.busy.expire()
                idle = self._idle_deadline()
                if idle is not None and time.monotonic() >= idle:
                    log.info("twin: dropping %s after %g s idle", self._peer, self.idle_timeout_s)
                    self.dropped_idle += 1
                    self._drop_connection()
                    continue
            readable = io is not None and io in ready
            if (not readable and pacer is None and self.decoder.pending
                    and time.monotonic() - self._last_rx >= INTER_BYTE_GAP_S):
                # a frame begun but not finished for a whole gap: its tail was lost; resync
                self._answer(self.decoder.abandon_partial(), None, tx)
            if pacer is None and self._listener is None:
                if readable:
                    self._serve_pty_burst()
                continue
            # (a TCP holder replaced in this round may reuse the old fd number: _recv never blocks)
            readable = readable and (self._listener is None or self._conn is not None)
            self._ingest(self._recv() if readable else b"")  # b"": what the paced line delivers now
            now = time.monotonic()
            while tx and tx[0][0] <= now:
                self._send(tx.popleft()[1])
