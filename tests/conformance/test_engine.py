"""Engine conformance: the TFLM firmware users flash gives the host TFLM's outputs, on emulators.

Each engine build of ``make firmware`` (QEMU mps2-an386 with reference kernels, the same with
CMSIS-NN kernels, Renode's STM32F4-Discovery with reference kernels) runs every third-party model of
``../shared/models`` (TFLM's examples, MLPerf Tiny's reference models), the suite's own LSTM and its
resource-variable and signal-library models (``OWN_MODELS``) on seeded inputs, one after the other
in one upload (stateful models carry their state, the same on both sides), next to the host TFLM
(the twin: the tflite-micro wheel). Expected: identical outputs, except where this table says why
not — and an entry here is measured, not assumed: a model listed that becomes identical still
passes, one not listed that differs fails. The pipeline's deployable (LUT-compressed, DECODE) is
checked the same way in tests/pipeline/test_deployable_on_emulators.py.

Arena bytes and ticks are printed in the session summary (``engine figures``); QEMU's ticks are
emulated instruction time (25 MHz SysTick, 1 instruction = 1 ns: ticks x 40 = instructions),
Renode's are instructions (16 MIPS, SysTick at 16 MHz): neither is a cycle count of real silicon.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device_harness.backends.qemu import QemuBackend
from device_harness.backends.renode import RenodeBackend
from device_harness.backends.twin import TwinBackend
from device_harness.compare import compare, dequantize
from device_harness.session import DeviceSession
from device_harness.shared_folder import SHARED_MODELS
from tinyfarm.errors import DeviceError

pytestmark = [pytest.mark.emulator, pytest.mark.slow]

LSTM = Path(__file__).resolve().parents[1] / "harness" / "data" / "lstm_int8.tflite"
#: the suite's own models of operators no third-party model uses (tests/data/make_models.py):
#: VAR_HANDLE/READ_VARIABLE/ASSIGN_VARIABLE/CALL_ONCE, and TFLM's 14 signal-library custom operators
OWN_MODELS = [Path(__file__).resolve().parents[1] / "data" / f"{name}.tflite"
              for name in ("var_int8", "var_float", "signal_int16")]
SEEDS = range(3)
#: where outputs are not identical: the same top-1 on every seed and at least this cosine
MIN_COSINE = 0.99

#: engine build -> (fixture giving its ELF, backend class)
BUILDS = {
    "qemu": ("qemu_tflm_elf", QemuBackend),
    "qemu:cmsis-nn": ("qemu_cmsis_nn_elf", QemuBackend),
    "renode": ("renode_tflm_elf", RenodeBackend),
}

#: (build, model) pairs whose outputs are not bit-identical to the host TFLM, and why; "*" = every build
NOT_IDENTICAL = {
    ("*", "hello_world_float"): "float32 arithmetic: the same float FULLY_CONNECTED as var_float's "
                                "(fused multiply-adds on the Cortex-M4F, none in the x86-64 wheel); max "
                                "|diff| 5.1e-7; the int8 kernels use integer arithmetic only",
    ("qemu:cmsis-nn", "lstm_int8"): "CMSIS-NN's LSTM gates (arm_nn_lstm_step_s8) take sigmoid and tanh "
                                    "from an interpolated look-up table (arm_nn_activation_s16), TFLM's "
                                    "reference LSTM from gemmlowp's fixed-point functions",
    ("*", "var_float"): "float32 arithmetic: GCC contracts TFLM's float FULLY_CONNECTED dot product into "
                        "fused multiply-adds (vfma.f32) for the Cortex-M4F, the x86-64 wheel multiplies "
                        "and adds separately; max |diff| 2.4e-7 (up to 12 ULPs where the sum cancels), "
                        "each side reproduced bit-exactly by a numpy emulation with and without FMA",
}


def shared_model_paths() -> list[Path]:
    return sorted(SHARED_MODELS.glob("*.tflite")) + sorted(SHARED_MODELS.glob("mlperf_tiny/*.tflite"))


#: every model the tests run, in the order of the summary table
MODEL_ORDER = shared_model_paths() + [LSTM] + OWN_MODELS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "model_path" in metafunc.fixturenames:
        paths = MODEL_ORDER
        params = [pytest.param(p, id=p.stem) for p in paths]
        if not SHARED_MODELS.is_dir():
            params.insert(0, pytest.param(None, id="shared-models",
                                          marks=pytest.mark.skip(f"third-party models not found at {SHARED_MODELS}")))
        metafunc.parametrize("model_path", params)


@pytest.fixture(scope="module", params=list(BUILDS))
def engine(request: pytest.FixtureRequest):
    """``(build name, device session)`` on one engine build, booted once for the module."""
    fixture, backend_class = BUILDS[request.param]
    elf = request.getfixturevalue(fixture)
    if backend_class is QemuBackend:
        request.getfixturevalue("qemu")
    with DeviceSession(backend_class(elf), name=request.param) as session:
        yield request.param, session


@pytest.fixture(scope="module")
def host_tflm():
    """The host TFLM behind the same protocol: the twin (TFLM from the tflite-micro wheel)."""
    with DeviceSession(TwinBackend("mps2-an386")) as session:
        yield session


def run_seeded(session: DeviceSession, model: bytes) -> tuple[list[list[np.ndarray]], list[int], int]:
    """Upload ``model``; outputs and ticks for each seed, invoked in order; arena bytes used."""
    result = session.upload(model)
    session.require_engine(result)
    outputs, ticks = [], []
    for seed in SEEDS:
        outs, tk = session.invoke(session.seeded_inputs(seed))
        outputs.append([np.asarray(o) for o in outs])
        ticks.append(tk)
    return outputs, ticks, result.arena_used


def agreement(device: list[list[np.ndarray]], host: list[list[np.ndarray]], quant: list[tuple[float, int]]):
    """(identical, top-1 agreement, cosine) over every seed and output, dequantized."""
    identical = all(np.array_equal(a, b) for d, h in zip(device, host) for a, b in zip(d, h))
    top1, cosine = 1.0, 1.0
    for j, (scale, zp) in enumerate(quant):
        a = np.stack([dequantize(d[j], scale, zp).reshape(-1) for d in device])
        b = np.stack([dequantize(h[j], scale, zp).reshape(-1) for h in host])
        m = compare(a, b, step=scale or None, top1=a.shape[1] > 1)
        cosine = min(cosine, m.cosine)
        if m.top1_agreement is not None:
            top1 = min(top1, m.top1_agreement)
    return identical, top1, cosine


def assert_refused_before_upload(session: DeviceSession, model: bytes) -> None:
    """A model larger than the device's model buffer: one line naming both sizes, no frame sent."""
    capacity = session.info.max_model_bytes
    sent = session.client.link.stats.frames_sent
    with pytest.raises(DeviceError) as err:
        session.upload(model)
    message = str(err.value)
    assert "\n" not in message and f"{len(model):,} bytes" in message and f"{capacity:,}" in message
    assert session.client.link.stats.frames_sent == sent, "frames went out before the refusal"


def test_engine_outputs_match_the_host_tflm(engine, host_tflm, model_path, engine_figures):
    """Identical outputs (or the NOT_IDENTICAL table's why); a model larger than the device's model
    buffer (the MLPerf Tiny models on the STM32F4's 96 KB) is refused before upload instead."""
    build, session = engine
    model = model_path.read_bytes()
    name = model_path.stem
    if len(model) > session.info.max_model_bytes:
        assert_refused_before_upload(session, model)
        return
    device, ticks, arena = run_seeded(session, model)
    host, _, host_arena = run_seeded(host_tflm, model)
    quant = [(t.scale, t.zero_point) for t in session.client.outputs]
    identical, top1, cosine = agreement(device, host, quant)
    engine_figures({"build": build, "order": MODEL_ORDER.index(model_path), "kernels": session.info.kernels,
                    "model": name, "bytes": len(model), "arena": arena, "host_arena": host_arena,
                    "ticks": int(np.median(ticks)), "tick_source": session.info.tick_source,
                    "identical": identical, "top1": top1, "cosine": cosine})
    why = NOT_IDENTICAL.get((build, name)) or NOT_IDENTICAL.get(("*", name))
    if why is None:
        assert identical, (f"{name} on {build}: outputs differ from the host TFLM "
                           f"(top-1 {top1:.3f}, cosine {cosine:.6f})")
    else:
        assert top1 == 1.0 and cosine >= MIN_COSINE, f"{name} on {build} ({why}): top-1 {top1}, cosine {cosine}"
    assert 0 < arena <= session.info.arena_bytes
    assert min(ticks) > 0


def test_a_model_too_large_is_refused_before_upload(engine):
    """On every build, whatever its buffer: one byte more than it takes."""
    build, session = engine
    assert_refused_before_upload(session, bytes(session.info.max_model_bytes + 1))
