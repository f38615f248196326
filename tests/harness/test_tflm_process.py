"""The TFLM runtime in a child process: loads, invokes, classifies failures, survives segfaults."""

from __future__ import annotations

import numpy as np
import pytest

from device_harness.twin.tflm_errors import (
    ArenaTooSmall, BadArgument, DeviceFault, ModelInvalid, NoModel, OpUnsupported,
)
from device_harness.twin.tflm_process import TflmProcess, smallest_arena
from tinyfarm.errors import TinyfarmError


@pytest.fixture(scope="module")
def tflm():
    with TflmProcess(timeout_s=30) as proc:
        yield proc


def test_load_invoke_and_batch_agree(tflm, conv_int8):
    info = tflm.load(conv_int8, 20_000)
    assert info.arena_used == 9808  # TFLM's own allocation record for this model
    (inp,) = info.inputs
    assert inp.shape == (1, 1960) and inp.dtype == np.int8 and inp.nbytes == 1960
    rng = np.random.default_rng(0)
    xs = rng.integers(-128, 128, (5, 1, 1960), dtype=np.int8)
    batch_out, ticks = tflm.invoke_batch([xs])
    assert batch_out[0].shape == (5, 1, 4) and len(ticks) == 5 and (ticks > 0).all()
    for k in range(5):
        single, ns = tflm.invoke([xs[k]])
        np.testing.assert_array_equal(single[0], batch_out[0][k])
        assert ns > 0
    assert len(tflm.bench(1, 3)) == 3


def test_failures_are_classified(tflm, conv_int8, unsupported_op_model):
    with pytest.raises(ArenaTooSmall, match="arena too small"):
        tflm.load(conv_int8, 1000)
    with pytest.raises(ModelInvalid, match="not a valid TFLite flatbuffer"):
        tflm.load(conv_int8[:5000], 20_000)
    with pytest.raises(ModelInvalid, match="TFL3"):
        tflm.load(b"definitely not a flatbuffer", 20_000)
    with pytest.raises(OpUnsupported, match="RANDOM_UNIFORM"):
        tflm.load(unsupported_op_model, 20_000)
    with pytest.raises(NoModel):
        tflm.invoke([np.zeros((1, 1960), np.int8)])
    tflm.load(conv_int8, 20_000)
    with pytest.raises(BadArgument, match="expects"):
        tflm.invoke([np.zeros((1, 10), np.int8)])
    with pytest.raises(BadArgument, match="dtype"):
        tflm.invoke([np.zeros((1, 1960), np.float32)])
    assert all(issubclass(e, TinyfarmError) for e in (ArenaTooSmall, DeviceFault, BadArgument))


def test_a_kernel_rejecting_tensor_types_is_not_an_arena_error(tflm, sine_int8, conv_int8):
    """Float16 / hybrid models fail in a kernel's Prepare ("failed to prepare"), which TFLM's Python
    wrapper reports as "failed to allocate tensors": no arena size helps, so it must not say so."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(sine_int8, 0))
    sg = model.subgraphs[0]
    sg.tensors[sg.inputs[0]].type = schema.TensorType.FLOAT16
    builder = flatbuffers.Builder(4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    with pytest.raises(OpUnsupported, match="FULLY_CONNECTED .*failed to prepare"):
        tflm.load(bytes(builder.Output()), 1 << 16)
    with pytest.raises(ArenaTooSmall, match="arena too small"):  # a real shortage still reads as one
        tflm.load(conv_int8, 1000)


def test_segfault_is_a_device_fault_and_the_next_call_works(lstm_model, conv_int8):
    with TflmProcess(timeout_s=30) as tflm:
        first_pid = tflm.pid
        with pytest.raises(DeviceFault, match="SIGSEGV"):
            tflm.load(lstm_model, 64)  # the LSTM kernel segfaults on a tiny arena
        assert tflm.faults == 1 and not tflm.loaded
        info = tflm.load(conv_int8, 20_000)  # a fresh child
        assert tflm.pid != first_pid and info.arena_used == 9808
        out, _ = tflm.invoke([np.zeros((1, 1960), np.int8)])
        assert out[0].shape == (1, 4)


def test_reload_after_fault_restores_the_model(conv_int8):
    with TflmProcess(timeout_s=30, reload_after_fault=True) as tflm:
        tflm.load(conv_int8, 20_000)
        x = np.ones((1, 1960), np.int8)
        before, _ = tflm.invoke([x])
        with pytest.raises(DeviceFault):
            tflm.crash()
        after, _ = tflm.invoke([x])
        np.testing.assert_array_equal(before[0], after[0])


def test_smallest_arena_matches_tflm_allocation_record(sine_int8, conv_int8):
    assert smallest_arena(sine_int8) == 2192
    assert smallest_arena(conv_int8) == 9808
