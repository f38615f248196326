"""Suite-wide settings. TF-MOT needs Keras 2, which must be chosen before TensorFlow is imported."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# Third-party models (TFLM's examples, MLPerf Tiny) placed beside the checkout, for the tests whose
# point is third-party models (conformance); they skip if the folder is absent.
SHARED_MODELS = REPO.parent / "shared" / "models"
# The suite's own models (tests/data/make_models.py, committed): for every test that needs "some model".
SUITE_MODELS = REPO / "tests" / "data"


@pytest.fixture(scope="session")
def shared_models() -> Path:
    if not SHARED_MODELS.is_dir():
        pytest.skip(f"third-party models not found at {SHARED_MODELS}")
    return SHARED_MODELS


@pytest.fixture(scope="session")
def suite_models() -> Path:
    """The folder of the suite's own models: ``sine_int8.tflite`` (sin(x), int8 (1, 1) in and out,
    three FULLY_CONNECTED), ``sine_float.tflite`` (the same model in float32), ``conv_int8.tflite``
    (int8 (1, 1960) -> 49x40x1, DEPTHWISE_CONV_2D + FULLY_CONNECTED + SOFTMAX, 4 classes, 19 KB),
    ``var_int8``/``var_float.tflite`` (a resource variable updated at every invoke) and
    ``signal_int16.tflite`` (TFLM's 14 signal-library operators); made by ``make_models.py``."""
    return SUITE_MODELS


@pytest.fixture(scope="session")
def sine_int8() -> bytes:
    return (SUITE_MODELS / "sine_int8.tflite").read_bytes()


@pytest.fixture(scope="session")
def conv_int8() -> bytes:
    return (SUITE_MODELS / "conv_int8.tflite").read_bytes()


@pytest.fixture()
def engine_figures(record_property):
    """``engine_figures(row)``: a row of the engine conformance tests (build, model, arena, ticks,
    agreement with the host TFLM), kept with the test's report and printed as one table at the end
    of the session (also under pytest-xdist, whose workers send their reports to the controller)."""
    return lambda row: record_property(ENGINE_FIGURES, row)


ENGINE_FIGURES = "tinyfarm_engine_figures"
_ENGINE_ROWS: list[dict] = []


def pytest_runtest_logreport(report) -> None:
    if report.when == "call":
        _ENGINE_ROWS.extend(value for name, value in report.user_properties if name == ENGINE_FIGURES)


def pytest_terminal_summary(terminalreporter) -> None:
    if not _ENGINE_ROWS:
        return
    terminalreporter.section("engine figures (firmware on emulators vs the host TFLM)")
    terminalreporter.write_line(f"{'build':14} {'kernels':9} {'model':26} {'bytes':>8} {'arena':>8} "
                                f"{'host arena':>10} {'ticks':>11} {'source':12} agreement")
    for r in sorted(_ENGINE_ROWS, key=lambda r: (r["build"], r["order"])):
        agree = "identical" if r["identical"] else f"top-1 {r['top1']:.3f}, cosine {r['cosine']:.6f}"
        terminalreporter.write_line(f"{r['build']:14} {r['kernels']:9} {r['model'][:26]:26} {r['bytes']:>8,} "
                                    f"{r['arena']:>8,} {r['host_arena']:>10,} {r['ticks']:>11,} "
                                    f"{r['tick_source']:12} {agree}")


#: session fixtures that run a whole pipeline: every test using one runs on the same xdist worker
SHARED_RUNS = ("digits_short_run", "tabular_run")


def pytest_itemcollected(item) -> None:
    """Groups for ``pytest -n 2 --dist loadgroup`` (what ``make test`` runs), set as each test is
    collected (xdist reads them in its own collection hook): a module's tests stay on one worker
    (its module-scoped fixtures are built once), the tests of a shared pipeline run stay together
    (the run is made once), and the engine tests split by firmware build (two emulators upload side
    by side: an upload waits on the emulated UART, not on the CPU)."""
    if item.get_closest_marker("xdist_group"):
        return
    group = next((name for name in SHARED_RUNS if name in item.fixturenames), None)
    callspec = getattr(item, "callspec", None)
    if group is None and callspec is not None and "engine" in callspec.params:
        group = f"engine-{callspec.params['engine']}"
    item.add_marker(pytest.mark.xdist_group(group or item.module.__name__))


def _built_firmware(preset: str) -> Path:
    """The ELF of a firmware preset (``make firmware`` built it; else it is built now, once)."""
    from device_harness.firmware_builds import build_missing, build_preset

    reason = build_missing(preset)
    if reason:
        pytest.skip(reason)
    return build_preset(preset)


@pytest.fixture(scope="session")
def qemu_elf() -> Path:
    """The engine-less firmware for QEMU's mps2-an386 (skips without the toolchain)."""
    return _built_firmware("qemu-mps2-an386")


@pytest.fixture(scope="session")
def stm32f4_elf() -> Path:
    """The engine-less STM32F4 Discovery firmware (Renode's board)."""
    return _built_firmware("renode-stm32f4-discovery")


@pytest.fixture(scope="session")
def qemu_tflm_elf() -> Path:
    """QEMU mps2-an386 firmware with TFLM's reference kernels and DECODE (skips without a TFLM tree)."""
    return _built_firmware("qemu-mps2-an386-tflm")


@pytest.fixture(scope="session")
def qemu_cmsis_nn_elf() -> Path:
    """QEMU mps2-an386 firmware with TFLM's CMSIS-NN kernels and DECODE."""
    return _built_firmware("qemu-mps2-an386-tflm-cmsis-nn")


@pytest.fixture(scope="session")
def renode_tflm_elf(renode: str) -> Path:
    """STM32F4 Discovery firmware with TFLM's reference kernels and DECODE, for Renode."""
    return _built_firmware("renode-stm32f4-discovery-tflm")


@pytest.fixture(scope="session")
def renode() -> str:
    """The Renode executable tinyfarm finds (skips, with the reason, when there is none)."""
    from device_harness.backends.renode import find_renode, renode_missing

    reason = renode_missing()
    if reason:
        pytest.skip(reason)
    return find_renode()


@pytest.fixture(scope="session")
def qemu() -> str:
    """qemu-system-arm (skips when it is not installed)."""
    import shutil

    path = shutil.which("qemu-system-arm")
    if path is None:
        pytest.skip("qemu-system-arm not on PATH (apt-get install qemu-system-arm; `make test` does as root)")
    return path
