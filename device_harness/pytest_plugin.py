"""pytest plugin for hardware-in-the-loop and emulator tests (registered via the pytest11 entry point).

Shaped like labgrid's plugin (a farm file given on the command line, like ``--lg-env``) and
pytest-embedded's (a ready ``dut`` fixture)::

    pytest tests/hil --farm farm.example.yaml --device ci     # a device name or a label
    pytest tests/hil --device twin                            # no farm: anything --device takes
    pytest tests/hil --device labgrid:bench-f4                # a labgrid place ($LG_COORDINATOR)
    pytest tests/hil --lg-env env.yaml                        # labgrid's plugin: its ``target``

    @pytest.mark.hil
    def test_runs(dut, shared_models):
        dut.load_model(shared_models / "hello_world_int8.tflite")
        outputs = dut.invoke([np.zeros((1, 1), np.int8)])
        stats = dut.bench(runs=20, warmup=3)          # recorded in the results store

Options: ``--farm FILE``, ``--device NAME|label|URL``, ``--farm-db PATH`` (results store, default
``$TINYFARM_DB`` or ``.tinyfarm/results.sqlite``), ``--device-wait SECONDS`` (how long to wait for
a device another process holds).

Markers: ``hil`` (needs a device from the farm) and ``emulator`` (needs a QEMU/Renode device);
both take optional ``labels=[...]`` and ``backends=[...]`` to narrow the choice further, like
labgrid's ``lg_feature``. With no ``--farm``/``--device``, or no matching device, the test is
skipped with the reason.

Every measurement the ``dut`` takes is also a JUnit property of the test (``item.user_properties``,
as ``record_property`` writes them), so ``pytest --junitxml=hil.xml`` shows it next to the test:
``tinyfarm.device``, ``.board``, ``.firmware_version``, ``.tflm_version``, ``.tick_source`` (once per
test, at its first measurement); ``.model``, ``.model_bytes``, ``.arena_used_bytes``,
``.arena_capacity_bytes`` (``load_model``); ``.latency_us_median``, ``.latency_us_p90``,
``.bench_runs`` (``bench``); ``.accuracy``, ``.accuracy_samples`` (``evaluate``).

Devices are brought up once per session and held under their farm lock until it ends, so
pytest-xdist workers (separate processes) never share one: with ``--device ci`` matching three
twins, three workers take one each; a fourth waits up to ``--device-wait``.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import pytest

from tinyfarm.errors import TinyfarmError

EMULATOR_BACKENDS = ("qemu", "renode")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tinyfarm", "tinyfarm devices (hardware-in-the-loop)")
    group.addoption("--farm", action="store", dest="tinyfarm_farm", metavar="FILE",
                    default=os.environ.get("TINYFARM_FARM"),
                    help="farm file (YAML) listing the devices; also $TINYFARM_FARM")
    group.addoption("--device", action="store", dest="tinyfarm_device", metavar="NAME|LABEL|URL",
                    default=None,
                    help="with --farm: a device name or label; without: anything `tinyfarm "
                         "--device` takes (twin, qemu:ELF, a serial URL)")
    group.addoption("--farm-db", action="store", dest="tinyfarm_db", metavar="PATH", default=None,
                    help="results store for measurements (default $TINYFARM_DB or "
                         ".tinyfarm/results.sqlite)")
    group.addoption("--device-wait", action="store", dest="tinyfarm_wait", type=float,
                    default=300.0, metavar="SECONDS",
                    help="how long to wait for a device another process holds (default 300)")


def pytest_configure(config: pytest.Config) -> None:
    # Registered here too, so the plugin works in projects that do not declare them.
    config.addinivalue_line("markers", "hil: needs a hardware device from the farm "
                            "(hil(labels=[...], backends=[...]) narrows the choice)")
    config.addinivalue_line("markers", "emulator: runs on an emulator backend (QEMU, Renode)")


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    farm = config.getoption("tinyfarm_farm")
    device = config.getoption("tinyfarm_device")
    if farm or device:
        return [f"tinyfarm: farm={farm or '-'} device={device or '(any in farm)'}"]
    return None


# -- device selection ------------------------------------------------------------------------------

class _Requirement:
    """What a test asks of its device, from its markers."""

    def __init__(self, node: pytest.Item):
        self.labels: list[str] = []
        self.backends: list[str] | None = None
        emulator = node.get_closest_marker("emulator")
        for marker in (node.get_closest_marker("hil"), emulator):
            if marker is None:
                continue
            self.labels += list(marker.kwargs.get("labels", []))
            if marker.kwargs.get("backends"):
                self.backends = list(marker.kwargs["backends"])
        if emulator is not None and self.backends is None:
            self.backends = list(EMULATOR_BACKENDS)

    def key(self) -> tuple:
        return tuple(sorted(self.labels)), tuple(self.backends or ())

    def describe(self) -> str:
        parts = []
        if self.labels:
            parts.append(f"labels {', '.join(self.labels)}")
        if self.backends:
            parts.append(f"backend {'/'.join(self.backends)}")
        return " and ".join(parts)


class _DevicePool:
    """Session-wide: devices brought up on first use, kept (and locked) until the session ends."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.farm_path = config.getoption("tinyfarm_farm")
        self.selector = config.getoption("tinyfarm_device")
        self.wait_s = config.getoption("tinyfarm_wait")
        self._farm = None
        self._open: dict[str, Any] = {}      # device name -> FarmDevice
        self._locks: dict[str, Any] = {}
        self._failed: dict[str, str] = {}
        self._store = None
        self._run_id: int | None = None
        self._mutex = threading.Lock()

    @property
    def farm(self):
        if self._farm is None and self.farm_path:
            from device_harness.farm.inventory import load_farm
            self._farm = load_farm(self.farm_path)
        return self._farm

    def candidates(self, need: _Requirement) -> tuple[list, str]:
        """Farm devices that satisfy ``need`` (and ``--device``), or [] and why not."""
        farm = self.farm
        devices = list(farm.devices)
        if self.selector:
            devices = farm.match(self.selector)
            if not devices:
                return [], f"--device {self.selector!r} is no device name or label in {farm.path}"
        if need.labels:
            devices = [d for d in devices if all(lbl in d.labels for lbl in need.labels)]
        if need.backends:
            devices = [d for d in devices if d.backend in need.backends]
        if not devices:
            what = need.describe() or "the selection"
            sel = f" among --device {self.selector!r}" if self.selector else ""
            return [], f"no device in {farm.path}{sel} has {what}"
        return devices, ""

    def acquire(self, need: _Requirement):
        """An opened device for ``need``: one this session already holds, else the first free one."""
        from device_harness.farm.connect import FarmDevice
        from device_harness.farm.locks import DeviceBusy, lock_first_free
        from device_harness.farm.scheduler import one_line

        devices, why = self.candidates(need)
        if not devices:
            pytest.skip(why)
        with self._mutex:
            for d in devices:
                if d.name in self._open:
                    return self._open[d.name]
            usable = [d for d in devices if d.name not in self._failed]
            if not usable:
                pytest.skip("; ".join(f"{n}: {self._failed[n]}" for n in
                                      (d.name for d in devices)))
            try:
                d, lock = lock_first_free(self.farm, usable, wait_s=self.wait_s,
                                          command=f"pytest (pid {os.getpid()})")
            except DeviceBusy:
                names = ", ".join(d.name for d in usable)
                pytest.skip(f"every matching device ({names}) is held by another process "
                            f"for longer than --device-wait {self.wait_s:g} s")
            device = FarmDevice(self.farm, d)
            try:
                device.open()
            except Exception as exc:  # noqa: BLE001 - becomes the skip reason
                lock.release()
                self._failed[d.name] = one_line(exc)
                pytest.skip(f"device {d.name} did not come up: {one_line(exc)}")
            self._open[d.name], self._locks[d.name] = device, lock
            return device

    def acquire_direct(self, selector: str | None = None, what: str | None = None):
        """Without a farm: ``--device`` resolved like every tinyfarm command does."""
        from device_harness.farm.connect import DirectDevice
        selector = selector or self.selector
        what = what or f"--device {selector}"
        with self._mutex:
            if "__direct__" not in self._open:
                if "__direct__" in self._failed:
                    pytest.skip(self._failed["__direct__"])
                device = DirectDevice(selector)
                try:
                    device.open()
                except Exception as exc:  # noqa: BLE001
                    from device_harness.farm.scheduler import one_line
                    self._failed["__direct__"] = f"{what} did not come up: {one_line(exc)}"
                    pytest.skip(self._failed["__direct__"])
                self._open["__direct__"] = device
            return self._open["__direct__"]

    def acquire_labgrid_target(self, request: pytest.FixtureRequest):
        """With labgrid's own plugin (``--lg-env``): its ``target``'s place — acquired the labgrid
        way (``labgrid-client acquire``), as its ``RemotePlace`` requires — reached through the
        place's ``NetworkSerialPort``."""
        from labgrid.resource import NetworkSerialPort

        from device_harness.labgrid.backend import serial_url
        target = request.getfixturevalue("target")
        port = target.get_resource(NetworkSerialPort)
        url = serial_url({"host": port.host, "port": port.port, "protocol": port.protocol},
                         target.name)
        return self.acquire_direct(url, f"labgrid target {target.name} ({url})")

    # -- results store ---------------------------------------------------------------------------

    def record(self, device, model_path: Path, row: dict[str, Any]) -> None:
        from device_harness.farm.store import DEFAULT_DB, ResultsStore
        with self._mutex:
            if self._store is None:
                db = self.config.getoption("tinyfarm_db") or os.environ.get("TINYFARM_DB") \
                    or str(DEFAULT_DB)
                self._store = ResultsStore(db)
                self._run_id = self._store.begin_run(
                    kind="pytest", farm=self.farm.name if self.farm else None,
                    farm_path=str(self.farm.path) if self.farm else None,
                    command="pytest " + " ".join(self.config.invocation_params.args),
                    config={"device": self.selector})
            spec = device.spec
            identity = self.farm.lock_key(spec) if self.farm else f"direct:{self.selector}"
        device_id = self._store.device_id(spec.name, spec.backend, spec.board, identity,
                                          spec.labels)
        model_id = self._store.model_id(model_path)
        self._store.record(self._run_id, device_id, model_id, row)

    def close(self) -> None:
        for name, device in list(self._open.items()):
            try:
                device.close()
            finally:
                lock = self._locks.pop(name, None)
                if lock is not None:
                    lock.release()
        self._open.clear()
        if self._store is not None:
            self._store.finish_run(self._run_id)
            self._store.close()


class Dut:
    """The device under test: a device session plus the helpers tests need.

    ``session`` is the :class:`~device_harness.session.DeviceSession`, ``client`` its
    :class:`~device_harness.client.DeviceClient`, for anything else.
    """

    def __init__(self, device, pool: _DevicePool, node: pytest.Item):
        self._device, self._pool, self._node = device, pool, node
        self.name: str = device.spec.name
        self.spec = device.spec
        self.model_path: Path | None = None
        self.upload_result = None
        self._identified = False

    @property
    def session(self):
        return self._device

    @property
    def client(self):
        return self._device.client

    @property
    def info(self):
        return self._device.info

    def load_model(self, path: str | os.PathLike[str]):
        """Upload ``path`` (verified on the device) and fetch its tensor layout; the upload result."""
        path = Path(path)
        self.upload_result = self._device.upload(path.read_bytes())
        self.model_path = path
        self._record(model=path.name, model_bytes=self.upload_result.size,
                     arena_used_bytes=self.upload_result.arena_used if self.upload_result.loaded else None,
                     arena_capacity_bytes=self.info.arena_bytes)
        return self.upload_result

    def _record(self, **values: Any) -> None:
        """Measurements as JUnit properties of this test (``--junitxml``); None values are left out."""
        props = self._node.user_properties
        if not self._identified:
            self._identified = True
            info = self.info
            props += [("tinyfarm.device", self.name), ("tinyfarm.board", info.board),
                      ("tinyfarm.firmware_version", info.firmware_version),
                      ("tinyfarm.tflm_version", info.tflm_version),
                      ("tinyfarm.tick_source", info.tick_source)]
        props += [(f"tinyfarm.{k}", v) for k, v in values.items() if v is not None]

    def evaluate(self, x: Any, y: Any, *, dataset: str = "", reference: bool = False):
        """Accuracy of the loaded model on ``(x, y)`` on the device (``EvaluationResult``); recorded
        in the store and as JUnit properties. ``reference``: compare outputs with the host too."""
        if self.model_path is None:
            raise RuntimeError("load_model() first")
        started = time.time()
        result = self._device.evaluate(self.model_path.read_bytes(), x, y, dataset=dataset,
                                       reference=reference)
        info = self.info
        self._pool.record(self._device, self.model_path, {
            "status": "ok", "started_at": started, "finished_at": time.time(),
            "accuracy": result.accuracy, "dataset": dataset or None, "samples": result.samples,
            "firmware_version": info.firmware_version, "tflm_version": info.tflm_version,
            "test_id": self.test_id})
        self._record(accuracy=round(result.accuracy, 6), accuracy_samples=result.samples)
        return result

    @property
    def test_id(self) -> str:
        """The test's node id, without the ``@group`` pytest-xdist's ``--dist loadgroup`` appends."""
        nodeid = self._node.nodeid
        return nodeid.rsplit("@", 1)[0] if self._node.get_closest_marker("xdist_group") else nodeid

    def invoke(self, inputs: Sequence[Any]) -> list[Any]:
        """One inference; the output tensors (``last_ticks`` holds its device ticks)."""
        outputs, self.last_ticks = self._device.invoke(list(inputs))
        return outputs

    def reset(self) -> None:
        self.client.reset()
        self.model_path = None

    def bench(self, runs: int = 20, warmup: int = 3, inputs: Sequence[Any] | None = None
              ) -> dict[str, Any]:
        """Latency of the loaded model over ``runs`` after ``warmup``; recorded in the store."""
        from device_harness.farm.measure_job import latency_columns
        from device_harness.measure import latency_stats
        if self.model_path is None:
            raise RuntimeError("load_model() first")
        started = time.time()
        session = self._device
        ticks = session.bench_ticks(warmup, runs, list(inputs) if inputs is not None
                                    else session.seeded_inputs())
        info = self.info
        stats = latency_columns(latency_stats(ticks, info.tick_hz))
        used, capacity = session.arena()
        row = {"status": "ok", "started_at": started, "finished_at": time.time(),
               "bench_runs": runs, "bench_warmup": warmup, "tick_hz": float(info.tick_hz),
               "arena_used": used, "arena_capacity": capacity,
               "firmware_version": info.firmware_version, "tflm_version": info.tflm_version,
               "test_id": self.test_id, **stats}
        if self.upload_result is not None:
            row["upload_s"] = self.upload_result.seconds
            row["upload_bytes_per_s"] = self.upload_result.bytes_per_second
        self._pool.record(self._device, self.model_path, row)
        self._record(latency_us_median=stats["latency_us_median"],
                     latency_us_p90=stats["latency_us_p90"], bench_runs=runs)
        return {**stats, "ticks": ticks, "arena_used": used}


@pytest.fixture(scope="session")
def tinyfarm_pool(request: pytest.FixtureRequest):
    pool = _DevicePool(request.config)
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def farm(tinyfarm_pool: _DevicePool):
    """The farm file given with ``--farm`` (skips the test without one)."""
    if tinyfarm_pool.farm is None:
        pytest.skip("no farm file: pass --farm FILE (or set TINYFARM_FARM)")
    return tinyfarm_pool.farm


@pytest.fixture
def dut(request: pytest.FixtureRequest, tinyfarm_pool: _DevicePool) -> Dut:
    """A connected device for this test (model state is reset before it is handed over)."""
    need = _Requirement(request.node)
    if tinyfarm_pool.farm_path:
        device = tinyfarm_pool.acquire(need)
    elif tinyfarm_pool.selector:
        if need.labels or need.backends:
            pytest.skip(f"needs a farm device with {need.describe()}: pass --farm FILE")
        device = tinyfarm_pool.acquire_direct()
    elif request.config.getoption("lg_env", default=None):  # labgrid's plugin: its target
        device = tinyfarm_pool.acquire_labgrid_target(request)
    else:
        pytest.skip("no device: pass --farm FILE [--device NAME|label], --device twin|URL|"
                    "labgrid:PLACE, or labgrid's --lg-env")
    try:
        device.client.reset()
    except (OSError, TinyfarmError):  # a device that lost its way gets restarted once
        device.restart()
    return Dut(device, tinyfarm_pool, request.node)
