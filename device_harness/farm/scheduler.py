"""The farm runner: a models x devices matrix, one worker per device, every result kept.

Scheduling: each device gets one worker thread; its jobs (one per model) run one after the other,
devices run side by side. The workers mostly wait on serial lines (real boards and paced twins are
link-bound; TFLM itself runs in the twin's own processes), so threads give the parallelism without
the start-up and pickling cost of processes.

For every device the worker:

1. takes the device's cross-process lock (:mod:`.locks`): a second run waits for it (``busy="wait"``,
   up to ``lock_timeout_s``) or skips the device (``busy="skip"``) — its jobs are recorded as failed
   with the holder named, so nothing silently disappears from the matrix;
2. brings the device up (launch a twin/emulator, or attach to the port) and says HELLO;
3. runs each job under a watchdog: past ``job_timeout_s`` the device is aborted (its line closed,
   its process stopped) so a hung call returns;
4. on a transient failure (serial error, protocol timeout, device fault, watchdog) restarts the
   device and retries the job, up to ``retries`` times; a model's own fault (does not fit, unsupported
   op) fails the job at once with the device's reason;
5. commits each job's result to the store as soon as it is known.

A tinyfarm bug inside one job (not a device, link or input problem) prints its traceback and fails
that job as an internal error; the other jobs and devices go on.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from tinyfarm.errors import ConfigError, DeviceError, StorageError, TinyfarmError, is_retryable

from .inventory import DeviceSpec, Farm
from .locks import DeviceBusy, device_lock, lock_dir, lock_first_free
from .store import ResultsStore


@dataclass(frozen=True)
class ModelRef:
    path: Path
    sha256: str
    name: str
    size_bytes: int


@dataclass
class RunOptions:
    runs: int = 20
    warmup: int = 3
    job_timeout_s: float = 300.0
    retries: int = 2
    busy: str = "wait"              # wait | skip
    lock_timeout_s: float | None = 600.0   # None: wait forever
    parallel: bool = True
    dataset: str | None = None
    samples: int | None = None


@dataclass
class JobResult:
    device: str
    model: str
    status: str                     # ok | failed
    reason: str | None = None
    attempts: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunSummary:
    run_id: int
    wall_s: float
    results: list[JobResult]

    @property
    def failed(self) -> list[JobResult]:
        return [r for r in self.results if r.status != "ok"]


class FarmDeviceLike(Protocol):
    """What the runner needs of a brought-up device (see :mod:`.connect` for the real one)."""

    spec: DeviceSpec
    info: Any  # HELLO's fields (``as_dict()``)

    def open(self) -> None: ...
    def close(self) -> None: ...
    def restart(self) -> None: ...
    def abort(self) -> None: ...
    def measure(self, model: ModelRef, options: RunOptions) -> dict[str, Any]: ...


class JobTimeout(DeviceError):
    """The watchdog took the job back from a device that stopped answering."""


EventCallback = Callable[[str, str, dict[str, Any]], None]  # (device, event, details)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if isinstance(exc, TinyfarmError) else f"{type(exc).__name__}: {text}"


def is_device_problem(exc: BaseException) -> bool:
    """A failure of the device, the link or the user's input — not a bug in tinyfarm."""
    return isinstance(exc, (TinyfarmError, OSError, EOFError, TimeoutError))  # SerialException is
    # an OSError


def describe_failure(exc: BaseException) -> str:
    """The job's reason; a bug additionally prints its traceback (the run goes on: one job's bug
    must not cost the other devices' results)."""
    if is_device_problem(exc):
        return one_line(exc)
    traceback.print_exception(exc)
    return f"internal error (a tinyfarm bug, traceback on stderr): {one_line(exc)}"


class FarmRunner:
    def __init__(self, farm: Farm, devices: Sequence[DeviceSpec], models: Sequence[ModelRef],
                 store: ResultsStore, options: RunOptions,
                 device_factory: Callable[[Farm, DeviceSpec], FarmDeviceLike],
                 on_event: EventCallback | None = None, command: str | None = None):
        if not devices:
            raise ConfigError("no device selected")
        if not models:
            raise ConfigError("no model selected")
        self.farm, self.devices, self.models = farm, list(devices), list(models)
        self.store, self.options = store, options
        self.device_factory = device_factory
        self.on_event = on_event or (lambda device, event, details: None)
        self.command = command
        self.run_id: int | None = None
        self._results: list[JobResult] = []
        self._results_lock = threading.Lock()
        self._locks_dir = lock_dir(farm.spec.lock_dir)

    # -- public --------------------------------------------------------------------------------

    def run(self) -> RunSummary:
        self.run_id = self.store.begin_run(
            kind="farm", farm=self.farm.name, farm_path=str(self.farm.path), command=self.command,
            config={"devices": [d.name for d in self.devices],
                    "models": [{"name": m.name, "sha256": m.sha256} for m in self.models],
                    "options": self.options.__dict__})
        start = time.perf_counter()
        try:
            if self.options.parallel:
                crashes: list[BaseException] = []

                def worker(spec: DeviceSpec) -> None:
                    try:
                        self._device_worker(spec)
                    except BaseException as exc:  # a bug: re-raised below, with its traceback
                        crashes.append(exc)

                threads = [threading.Thread(target=worker, args=(d,), name=f"farm-{d.name}",
                                            daemon=True) for d in self.devices]
                for t in threads:
                    t.start()
                for t in threads:
                    while t.is_alive():  # short joins keep Ctrl-C responsive
                        t.join(0.2)
                if crashes:
                    raise crashes[0]
            else:
                for device in self.devices:
                    self._device_worker(device)
        except BaseException as exc:
            # Failed or interrupted, never left "running" — unless the store itself cannot take
            # the write (a full disk): then the next opening of the store marks it interrupted.
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            try:
                self.store.finish_run(self.run_id, status)
            except StorageError:
                pass  # the error in flight says why
            raise
        self.store.finish_run(self.run_id, "finished")
        return RunSummary(self.run_id, time.perf_counter() - start, list(self._results))

    # -- one device ----------------------------------------------------------------------------

    def _record(self, spec: DeviceSpec, device_id: int, model: ModelRef, result: JobResult,
                started: float) -> None:
        row = {"status": result.status, "reason": result.reason, "attempts": result.attempts,
               "started_at": started, "finished_at": time.time(), **result.metrics}
        model_id = self.store.model_id(model.path, model.sha256)
        self.store.record(self.run_id, device_id, model_id, row)
        with self._results_lock:
            self._results.append(result)
        self.on_event(spec.name, "job_done", {"model": model.name, "status": result.status,
                                              "reason": result.reason, "metrics": result.metrics,
                                              "attempts": result.attempts})

    def _fail_all(self, spec: DeviceSpec, device_id: int, models: Sequence[ModelRef],
                  reason: str, attempts: int = 0) -> None:
        for model in models:
            self._record(spec, device_id, model,
                         JobResult(spec.name, model.name, "failed", reason, attempts), time.time())

    def _device_worker(self, spec: DeviceSpec) -> None:
        device_id = self.store.device_id(spec.name, spec.backend, spec.board,
                                         self.farm.lock_key(spec), spec.labels)
        try:
            holder = device_lock(self.farm, spec, self._locks_dir).probe()
            if holder is not None:
                self.on_event(spec.name, "waiting", {"holder": holder.describe()})
            wait = 0 if self.options.busy == "skip" else self.options.lock_timeout_s
            _, lock = lock_first_free(self.farm, [spec], wait_s=wait, command=self.command)
        except DeviceBusy as exc:
            self.on_event(spec.name, "skipped", {"reason": str(exc)})
            self._fail_all(spec, device_id, self.models, f"skipped: {exc}")
            return
        except DeviceError as exc:  # a lab's coordinator or place that cannot be had
            self.on_event(spec.name, "unavailable", {"reason": str(exc)})
            self._fail_all(spec, device_id, self.models, f"device unavailable: {exc}")
            return
        session = self.store.session_start(self.run_id, device_id, lock.acquired_at)
        try:
            self._run_jobs(spec, device_id)
        except BaseException as exc:  # a bug must not leave the lock or the session open
            self.on_event(spec.name, "error", {"reason": one_line(exc)})
            raise
        finally:
            lock.release()
            self.store.session_end(session, lock.released_at or time.time())

    def _run_jobs(self, spec: DeviceSpec, device_id: int) -> None:
        self.on_event(spec.name, "starting", {})
        device = None
        try:
            device = self.device_factory(self.farm, spec)
            self._bring_up(device)
        except Exception as exc:  # noqa: BLE001 - any failure to start is this device's reason
            reason = describe_failure(exc)
            self.on_event(spec.name, "unavailable", {"reason": reason})
            self._fail_all(spec, device_id, self.models, f"device unavailable: {reason}")
            if device is not None:
                device.close()
            return
        self.on_event(spec.name, "ready", {"info": device.info.as_dict()})
        try:
            for i, model in enumerate(self.models):
                result, lost = self._run_job(device, spec, device_id, model)
                if lost is not None:
                    self._fail_all(spec, device_id, self.models[i + 1:],
                                   f"device lost: {lost}")
                    return
        finally:
            device.close()

    def _bring_up(self, device: FarmDeviceLike) -> None:
        last: Exception | None = None
        for _ in range(self.options.retries + 1):
            try:
                device.open()
                return
            except Exception as exc:  # noqa: BLE001
                last = exc
                if not is_retryable(exc):
                    break
                device.close()
        assert last is not None
        raise last

    def _run_job(self, device: FarmDeviceLike, spec: DeviceSpec, device_id: int,
                 model: ModelRef) -> tuple[JobResult, str | None]:
        """Run one job with watchdog and retries; returns (result, reason the device is lost)."""
        started = time.time()
        attempts, reasons = 0, []
        self.on_event(spec.name, "job_start", {"model": model.name})
        while True:
            attempts += 1
            fired = threading.Event()

            def watchdog() -> None:
                fired.set()
                device.abort()

            timer = threading.Timer(self.options.job_timeout_s, watchdog)
            timer.daemon = True
            timer.start()
            try:
                metrics = device.measure(model, self.options)
                timer.cancel()
                if fired.is_set():  # finished while being aborted: do not trust the line
                    raise JobTimeout(f"timed out after {self.options.job_timeout_s:g} s")
                note = metrics.pop("note", None)
                result = JobResult(spec.name, model.name, "ok", note, attempts, metrics)
                self._record(spec, device_id, model, result, started)
                return result, None
            except Exception as exc:  # noqa: BLE001 - classified below
                timer.cancel()
                if fired.is_set():
                    exc = JobTimeout(f"timed out after {self.options.job_timeout_s:g} s")
                reason = describe_failure(exc)
                reasons.append(reason)
                transient = is_retryable(exc)
                if not transient or attempts > self.options.retries:
                    why = reason if len(set(reasons)) == 1 else "; ".join(reasons)
                    if transient:
                        why = f"failed after {attempts} attempts: {why}"
                    result = JobResult(spec.name, model.name, "failed", why, attempts)
                    self._record(spec, device_id, model, result, started)
                    if transient:  # the device is probably unusable: try one restart for the rest
                        try:
                            device.restart()
                        except Exception as rexc:  # noqa: BLE001
                            return result, one_line(rexc)
                    return result, None
                self.on_event(spec.name, "retry", {"model": model.name, "reason": reason,
                                                   "attempt": attempts})
                try:
                    device.restart()
                except Exception as rexc:  # noqa: BLE001 - counted as this attempt's failure
                    reasons.append(f"restart failed: {one_line(rexc)}")
