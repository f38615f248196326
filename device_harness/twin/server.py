"""Serve a :class:`TwinDevice` on a raw pty or a loopback TCP port, optionally paced at a baud rate.

One thread, one select loop: read what arrives, release it through the line pacer (when pacing),
decode frames, answer each, and send answers no earlier than the paced line would deliver them —
full duplex like a UART, so pipelined uploads see the board's real line rate. Over TCP, one client
at a time; the device state survives reconnects like a board's does.
"""

from __future__ import annotations

import errno
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
from device_harness.twin.device import TwinDevice

#: a frame begun and then silent this long lost its tail: drop it and resync (UART idle-line rule)
INTER_BYTE_GAP_S = 0.1


class TwinServer:
    """``TwinServer(profile, tcp=False, baud=None)``; ``url`` is what a client opens.

    ``baud``: pace the line at this rate (None: as fast as the pty/socket goes). ``serve_forever()``
    blocks until :meth:`stop`; ``start()`` runs it in a daemon thread.
    """

    def __init__(self, profile: BoardProfile, *, tcp: bool = False, port: int = 0, baud: int | None = None,
                 max_payload: int = MAX_PAYLOAD_LIMIT) -> None:
        self.profile = profile
        self.baud = baud
        self.device = TwinDevice(profile, paced=baud is not None, max_payload=max_payload)
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
            self._listener.listen(1)
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
        try:
            if self._listener is None:
                # drain what is there (the pty hands over ~4 KB a read) before decoding it once
                chunks = [os.read(self._master, 1 << 16)]
                while len(chunks) < 64:
                    try:
                        more = os.read(self._master, 1 << 16)
                    except BlockingIOError:
                        break
                    if not more:
                        break
                    chunks.append(more)
                return b"".join(chunks)
            data = self._conn.recv(1 << 16)
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
        except OSError:
            if self._listener is not None:
                self._drop_connection()

    def _read_blocking(self, wanted: int) -> bytes:
        """Read ``wanted`` bytes of a frame already begun in a tight blocking loop: a pty hands over
        ~4 KB per read, and a select + decode for each of those costs more than the copy itself.
        :meth:`stop` unblocks it by writing to the slave end."""
        buf = bytearray(wanted)
        view = memoryview(buf)
        got = 0
        try:
            while got < wanted and not self._stopping:
                try:
                    n = os.readv(self._master, [view[got:]])  # straight into place
                except BlockingIOError:
                    # the line went quiet mid-frame: give up after the inter-byte gap, as a UART
                    # receiver would, so a frame whose tail was lost cannot wedge the device
                    ready, _, _ = select.select([self._master], [], [], INTER_BYTE_GAP_S)
                    if not ready:
                        break
                    continue
                if not n:
                    break
                got += n
        except OSError:
            pass
        finally:
            view.release()
        del buf[got:]
        return bytes(buf)

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
        self._conn = None
        self.decoder.reset()

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
        pacer = LinePacer(self.baud) if self.baud else None
        tx: deque[tuple[float, bytes]] = deque()
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
            timeout = max(0.0, min(waits)) if waits else None
            fds = [self._stop_r]
            io = self._io_fd()
            if io is not None:
                fds.append(io)
            elif self._listener is not None:
                fds.append(self._listener.fileno())
            ready, _, _ = select.select(fds, [], [], timeout)
            if self._stop_r in ready:
                return
            if self._listener is not None and self._conn is None and self._listener.fileno() in ready:
                self._conn, _ = self._listener.accept()
                self._conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                continue
            data = self._recv() if io is not None and io in ready else b""
            if data:
                self._last_rx = time.monotonic()
            elif (self.decoder.pending and pacer is None
                  and time.monotonic() - self._last_rx >= INTER_BYTE_GAP_S):
                # a frame begun but not finished for a whole gap: its tail was lost; resync
                data = b""
                for event in self.decoder.abandon_partial():
                    reply = self.device.handle(event)
                    if reply is not None:
                        self._send(reply)
            if pacer is not None:
                pacer.arrive(data)
                data = pacer.take()
            while data:
                for event in self.decoder.feed(data):
                    reply = self.device.handle(event)
                    self.frames_handled += 1
                    if reply is None:
                        continue
                    if pacer is None:
                        self._send(reply)
                    else:
                        tx.append((pacer.schedule_tx(len(reply)), reply))
                data = b""
                if pacer is None and self._listener is None and self.decoder.wanted >= 8192:
                    data = self._read_blocking(self.decoder.wanted)
            now = time.monotonic()
            while tx and tx[0][0] <= now:
                self._send(tx.popleft()[1])
