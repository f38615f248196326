"""DeviceSession: the one way from a ``--device`` value to a device ready for work.

What labgrid calls a strategy: bring the backend up (start a twin or an emulator, or attach to a
port), open the link on the URL it hands back, say HELLO; upload (verified); invoke, bench,
evaluate; restart after a fault; release everything on the way out, however the caller leaves.

    with DeviceSession.for_device("twin", board="nano33-ble-sense") as session:
        session.upload(model)
        stats = session.bench(warmup=5, runs=100)

Every caller goes through it: the device commands, the pipeline's deploy stage, the farm (one
session per farm device), ``regress`` and the pytest ``dut``.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from typing import Any, Callable, Sequence

import numpy as np

from device_harness.backends.base import Backend
from device_harness.client import DeviceClient, DeviceInfo, UploadResult
from device_harness.measure import EvaluationResult, LatencyStats, evaluate_on_device, latency_stats, seeded_inputs
from tinyfarm.errors import DeviceError

log = logging.getLogger(__name__)


class NotBenchable(DeviceError):
    """The device verified the model but cannot run it (e.g. an engine-less firmware)."""

    retryable = False


class DeviceSession:
    """A device brought up for use. ``open()`` (or ``with``) starts it; ``close()`` stops it.

    ``exclusive``: a serial device path is opened with an exclusive lock (another program holding
    it is reported, not shared).
    """

    def __init__(self, backend: Backend, *, name: str | None = None, exclusive: bool = False) -> None:
        self.backend = backend
        self.name = name or backend.name
        self.exclusive = exclusive
        self.client: DeviceClient | None = None
        self._client_lock = threading.Lock()

    @classmethod
    def for_device(cls, device: str, **options: Any) -> "DeviceSession":
        """The session for a ``--device`` value (see :mod:`device_harness.device_registry`);
        ``options``: ``board``, ``arena_bytes``, ``pace``, ``baud``, ``farm``, ``tcp``."""
        from device_harness.device_registry import resolve_device  # noqa: PLC0415 - plugins

        return cls(resolve_device(device, **options), name=device)

    # ---- lifetime --------------------------------------------------------------------------------
    @property
    def info(self) -> DeviceInfo:
        if self.client is None or self.client.info is None:
            raise DeviceError(f"{self.name} is not connected")
        return self.client.info

    def open(self) -> "DeviceSession":
        """Start the backend, open the link, HELLO; on any failure the backend is stopped again."""
        self.backend.lost_callback = self._backend_lost
        url = self.backend.start()
        try:
            self._connect(url)
        except BaseException:
            self.backend.stop()
            raise
        return self

    def _backend_lost(self, reason: str) -> None:
        log.warning("%s: %s", self.name, reason)
        self.abort()

    def _connect(self, url: str) -> None:
        log.info("%s: connecting to %s", self.name, url)
        client = DeviceClient.open(url, baud=self.backend.baud, exclusive=self.exclusive,
                                   name=f"{self.name} ({url})" if url != self.name else url)
        try:
            info = client.hello()
        except BaseException:
            client.close()
            raise
        log.info("%s: %s, firmware %s, TFLM %s", self.name, info.board, info.firmware_version,
                 info.tflm_version)
        with self._client_lock:
            self.client = client

    def _drop_client(self) -> None:
        with self._client_lock:
            client, self.client = self.client, None
        if client is not None:
            client.close()

    def close(self) -> None:
        """Close the link and stop the backend (idempotent)."""
        try:
            self._drop_client()
        finally:
            self.backend.stop()

    def restart(self) -> None:
        """Reset the device (a launched one is restarted, an attached one reconnected)."""
        log.info("%s: restarting", self.name)
        self._drop_client()
        self._connect(self.backend.restart())

    def abort(self) -> None:
        """From another thread: make a call blocked on this device return with an error.

        Closing a file descriptor does not wake a thread blocked writing to it (a hung device
        stops draining its line), so a launched device's process is killed (its end of the pty
        goes away: the write fails) and a TCP link is shut down, before the port is closed. The
        owner then restarts the device as after any fault.
        """
        with self._client_lock:
            client = self.client
        pid = self.backend.pid
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if client is not None:
            sock = getattr(client.link.port, "_socket", None)  # pyserial's socket:// port
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            client.close()

    def __enter__(self) -> "DeviceSession":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _need_client(self) -> DeviceClient:
        if self.client is None:
            raise DeviceError(f"{self.name} is not connected")
        return self.client

    # ---- work ------------------------------------------------------------------------------------
    def upload(self, model: bytes, progress: Callable[[int, int], None] | None = None) -> UploadResult:
        """Upload ``model`` (verified on the device by SHA-256) and fetch its tensor layout; a model
        with TFLM weight compression for a device without the DECODE capability is refused before
        any byte is sent (:class:`CompressionUnsupportedError`)."""
        result = self._need_client().upload(model, progress=progress)
        log.info("%s: uploaded %d B in %.3f s (loaded: %s)", self.name, result.size, result.seconds,
                 result.loaded)
        if result.compressed and result.loaded:
            log.info("%s: compressed model, DECODE outputs use %d of %d B of decompression memory",
                     self.name, result.decompression_used, result.decompression_capacity)
        return result

    def require_engine(self, result: UploadResult) -> None:
        """NotBenchable when the device verified the model but has no engine to run it."""
        if not result.loaded:
            raise NotBenchable(f"{self.info.board} verified the model but has no engine to run it")

    def arena(self) -> tuple[int, int]:
        return self._need_client().arena()

    def decompression(self) -> tuple[int, int]:
        """(used, capacity) of the alternate decompression memory (compressed models; see
        :meth:`DeviceClient.decompression`), apart from the arena."""
        return self._need_client().decompression()

    def invoke(self, inputs: Sequence[np.ndarray]) -> tuple[list[np.ndarray], int]:
        return self._need_client().invoke(inputs)

    def read_tensors(self, indices: Sequence[int]) -> list[np.ndarray]:
        """Tensors ``indices`` of the loaded model after an invoke, flat (the model must have been
        uploaded after ``client.preserve_tensors()``; see :meth:`DeviceClient.read_tensor`)."""
        client = self._need_client()
        return [client.read_tensor(i) for i in indices]

    def seeded_inputs(self, seed: int = 0) -> list[np.ndarray]:
        """Deterministic inputs for the loaded model (see :func:`device_harness.measure.seeded_inputs`)."""
        return seeded_inputs(self._need_client().inputs, seed)

    def bench_ticks(self, warmup: int, runs: int, inputs: Sequence[np.ndarray] | None = None) -> list[int]:
        """Per-run ticks; on ``inputs`` when given, else on the inputs already set on the device."""
        return self._need_client().bench(warmup=warmup, runs=runs, inputs=inputs)

    def bench(self, warmup: int, runs: int, inputs: Sequence[np.ndarray] | None = None) -> LatencyStats:
        """Latency statistics of ``runs`` timed invokes after ``warmup`` untimed ones."""
        return latency_stats(self.bench_ticks(warmup, runs, inputs), self.info.tick_hz)

    def evaluate(self, model: bytes, x: np.ndarray, y: np.ndarray, *, dataset: str = "",
                 reference: bool = True, progress: Callable[[int, int], None] | None = None
                 ) -> EvaluationResult:
        """Accuracy of the loaded ``model`` on ``(x, y)`` measured on the device."""
        return evaluate_on_device(self._need_client(), model, x, y, dataset=dataset,
                                  reference=reference, progress=progress)
