"""Each stage alone, on small data: models, pruning, QAT, export, flatbuffer sparsity, evaluation, TFLM."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pipeline.evaluate import evaluate_tflite, run_reference
from pipeline.export import convert, representative_samples, write_c_array
from tinyfarm.tflite_file import inspect_tflite
from pipeline.keras_env import keras, set_seed
from pipeline.keras_models import build_cnn
from pipeline.prune import kernel_sparsity, prune_model, pruning_schedule


def test_cnn_families_have_the_requested_shape():
    m2 = build_cnn((8, 8, 1), 10, width=8, depth=2)
    assert m2.output_shape == (None, 10)
    assert [l.filters for l in m2.layers if isinstance(l, keras.layers.Conv2D)] == [8, 16]
    m1 = build_cnn((40, 1), 10, width=12, depth=3, growth=1.5, kernel_size=5, downsample="stride",
                   downsample_from=1, head="gap")
    convs = [l for l in m1.layers if isinstance(l, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [12, 18, 27] and convs[0].kernel_size == (5, 1)
    assert not any(isinstance(l, keras.layers.Conv1D) for l in m1.layers)  # QAT cannot take Conv1D
    assert m1.output_shape == (None, 10)


def test_pruning_schedule_reaches_the_target_on_short_runs():
    # digits-like: 38 steps per epoch, 3 epochs. TF-MOT's default frequency (100) would update the
    # mask at step 0 only, i.e. never reach the target; the derived frequency lands on it.
    schedule, spec = pruning_schedule("polynomial", initial_sparsity=0.0, target_sparsity=0.8,
                                      epochs=3, steps_per_epoch=38, ramp_fraction=0.7)
    assert spec.end_step <= spec.total_steps and spec.end_step % spec.frequency == 0
    should_prune, sparsity = schedule(np.int64(spec.end_step))
    assert bool(should_prune) and abs(float(sparsity) - 0.8) < 1e-6
    from pipeline.keras_env import tfmot

    default = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.8, 0, spec.end_step)  # frequency=100
    assert not any(bool(default(np.int64(s))[0]) for s in range(1, spec.total_steps))


@pytest.fixture(scope="module")
def pruned_tiny(small_digits, trained_tiny):
    set_seed(0)
    return prune_model(trained_tiny, small_digits, target_sparsity=0.75, epochs=2, batch_size=32,
                       learning_rate=1e-3)


@pytest.mark.slow
def test_prune_model_reaches_target_and_the_flatbuffer_shows_it(small_digits, trained_tiny, pruned_tiny):
    pruned, info = pruned_tiny
    assert all(abs(s - 0.75) < 0.02 for s in info["kernel_sparsity"].values()), info["kernel_sparsity"]
    assert not any("prune_low_magnitude" in l.name for l in pruned.layers)  # stripped
    assert kernel_sparsity(trained_tiny)["conv1"] < 0.05  # the input model was not modified
    rep = representative_samples(small_digits.x_train, 50)
    for kind in ("float32", "int8", "float16"):
        info_fb = inspect_tflite(convert(pruned, kind, rep))
        assert 0.73 <= info_fb.sparsity <= 0.77, (kind, info_fb.per_layer())


def test_two_four_structured_sparsity(small_digits, trained_tiny):
    set_seed(0)
    pruned, info = prune_model(trained_tiny, small_digits, m_by_n=(2, 4), target_sparsity=0.5,
                               epochs=1, exclude=["conv0"])
    kernel = pruned.get_layer("hidden").get_weights()[0]  # (in, out): blocks of 4 along the input
    blocks = kernel.T.reshape(kernel.shape[1], -1, 4)
    assert np.all(np.count_nonzero(blocks, axis=-1) <= 2)
    assert info["kernel_sparsity"]["conv0"] < 0.05  # excluded layer left dense


@pytest.mark.slow
def test_pruning_preserving_qat_keeps_sparsity_in_int8(small_digits, pruned_tiny):
    from pipeline.quantize import quantization_aware_training

    set_seed(0)
    pruned, _ = pruned_tiny
    qat, info = quantization_aware_training(pruned, small_digits, preserve_sparsity=True, epochs=1)
    assert info["preserve_sparsity"]
    model_bytes = convert(qat, "int8", representative_samples(small_digits.x_train, 50))
    fb = inspect_tflite(model_bytes)
    assert fb.input_types == ["int8"] and fb.output_types == ["int8"]
    assert fb.sparsity >= 0.74, fb.per_layer()
    metrics, _, _ = evaluate_tflite(model_bytes, small_digits.x_test, small_digits.y_test)
    from pipeline.train import keras_accuracy

    # The int8 flatbuffer computes what the QAT model computed (fake-quant ranges carried over).
    assert abs(metrics.accuracy - keras_accuracy(qat, small_digits.x_test, small_digits.y_test)) <= 0.05


@pytest.mark.slow
def test_every_export_kind_converts_and_evaluates(small_digits, tiny_tflite):
    sizes, types = {}, {}
    for kind in ("float32", "dynamic", "float16", "int8", "int16x8"):
        model_bytes = tiny_tflite(kind)  # convert(trained_tiny, kind, 50 train samples)
        metrics, xq, raw = evaluate_tflite(model_bytes, small_digits.x_test, small_digits.y_test)
        sizes[kind], types[kind] = metrics.size_bytes, (metrics.input_type, metrics.output_type)
        assert 0.0 <= metrics.accuracy <= 1.0 and metrics.gzip_bytes < metrics.size_bytes * 1.1
        assert metrics.parameter_count > 0 and raw.shape == (len(small_digits.x_test), 10)
    assert types["float32"] == ("float32", "float32") and types["int8"] == ("int8", "int8")
    assert types["int16x8"] == ("int16", "int16") and types["dynamic"] == ("float32", "float32")
    assert sizes["int8"] < sizes["float16"] < sizes["float32"]


def test_flatbuffer_sparsity_counts_exact_zeros():
    inp = keras.Input((16,))
    out = keras.layers.Dense(8, name="d")(inp)
    model = keras.Model(inp, out)
    w = np.arange(1, 16 * 8 + 1, dtype=np.float32).reshape(16, 8) / 100.0
    w[:, :2] = 0.0  # 32 of 128 weights are zero
    model.get_layer("d").set_weights([w, np.ones(8, np.float32)])
    rep = np.random.default_rng(0).normal(size=(20, 16)).astype(np.float32)
    for kind in ("float32", "float16", "dynamic", "int8"):
        info = inspect_tflite(convert(model, kind, rep))
        assert info.weight_elements == 128 and info.bias_elements == 8
        assert info.sparsity == pytest.approx(0.25), kind
        assert info.parameter_count == 136


def test_inspect_rejects_non_tflite():
    from tinyfarm.errors import ModelError

    with pytest.raises(ModelError, match="not a .tflite"):
        inspect_tflite(b"\x00" * 64)


def test_c_array_round_trips(tmp_path):
    payload = bytes(range(256)) * 3 + b"\x01\x02"
    cc, h = write_c_array(payload, tmp_path / "model_int8.cc", symbol="g_model")
    text = cc.read_text()
    data = bytes(int(x, 16) for x in re.findall(r"0x([0-9a-f]{2})", text))
    assert data == payload
    assert "alignas(16) const unsigned char g_model[]" in text
    assert f"g_model_len = {len(payload)};" in text
    assert "extern const unsigned char g_model[];" in h.read_text()


def test_tflm_check_compares_with_the_reference_and_detects_a_difference(small_digits, tiny_tflite):
    from pipeline.tflm_check import check_model

    x = small_digits.x_test[:40]
    float_bytes = tiny_tflite("float32")
    xq, raw = run_reference(float_bytes, x)
    check = check_model(float_bytes, xq, raw)
    assert check.passed and check.identical_share == 1.0 and check.compared == 40
    tampered = raw.copy()
    tampered[3, 0] += 1e-3
    assert check_model(float_bytes, xq, tampered).identical == 39

    int8_bytes = tiny_tflite("int8")
    xq8, raw8 = run_reference(int8_bytes, x)
    check8 = check_model(int8_bytes, xq8, raw8)
    assert check8.ops_supported and 0 < check8.arena_bytes < 64 * 1024 and "CONV_2D" in check8.ops
    # TFLM rounds int8 requantization twice, LiteRT once: at most one step apart (see tflm_check).
    assert check8.max_abs_diff <= 1 and check8.as_dict()["within_one_step_share"] == 1.0
    assert check8.same_top_class >= 38


def test_fully_connected_model_from_elsewhere_on_tflm(sine_int8):
    """A model the pipeline did not build (tests/data/sine_int8.tflite: three FULLY_CONNECTED, a
    (1, 1) input) checked on the host TFLM against LiteRT's reference kernels."""
    from pipeline.tflm_check import check_model

    x = np.linspace(0, 6, 30, dtype=np.float32).reshape(30, 1)
    xq, raw = run_reference(sine_int8, x)
    check = check_model(sine_int8, xq, raw)
    assert check.ops == ["FULLY_CONNECTED"]
    assert check.ops_supported and check.arena_bytes == 2192  # smallest_arena(), see test_tflm_process.py
    # measured: all 30 identical (TFLM's own hello_world_int8: 28 of these 30, within one step;
    # tests/harness/test_litert_parity.py keeps that third-party case)
    assert check.passed and check.within_one_step == check.identical == check.compared == 30


def test_without_softmax_cuts_the_softmax_even_on_shared_and_qat_layers():
    from pipeline.keras_env import tfmot
    from pipeline.keras_models import ends_in_softmax, without_softmax
    from pipeline.quantize import make_qat_model

    model = build_cnn((8, 8, 1), 10, width=4, depth=1)
    assert ends_in_softmax(model)
    copy = keras.models.clone_model(model)
    wrap = lambda l: tfmot.sparsity.keras.prune_low_magnitude(l) if isinstance(l, keras.layers.Dense) else l  # noqa: E731
    stripped = tfmot.sparsity.keras.strip_pruning(keras.models.clone_model(copy, clone_function=wrap))
    for m in (model, stripped, make_qat_model(stripped, preserve_sparsity=True)):
        logits = without_softmax(m)
        assert not ends_in_softmax(logits) and logits.output_shape == (None, 10)
    no_softmax = build_cnn((8, 8, 1), 10, width=4, depth=1, softmax=False)
    assert without_softmax(no_softmax) is no_softmax
