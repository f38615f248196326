"""Structured pruning: narrowed models compute the same function when only dead units go, shrink as
expected, train, and refuse what they cannot narrow with one line."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.keras_env import keras, set_seed
from pipeline.keras_models import build_cnn
from pipeline.structured_prune import (
    fine_tune,
    model_macs,
    narrow_model,
    prunable_layers,
)
from tinyfarm.errors import ConfigError, ModelError

L = keras.layers

CNNS = {
    "cnn2d_pool_flatten_hidden": {"input_shape": (8, 8, 1), "width": 8, "depth": 2, "dense_units": 16},
    "cnn2d_stride_gap": {"input_shape": (8, 8, 1), "width": 8, "depth": 3, "downsample": "stride", "head": "gap"},
    "cnn2d_from1_flatten_dropout": {"input_shape": (8, 8, 2), "width": 6, "depth": 2, "downsample_from": 1,
                                        "dense_units": 12, "dropout": 0.2, "growth": 1.5},
    "cnn1d_pool_flatten": {"input_shape": (20, 3), "width": 8, "depth": 2, "dense_units": 16},
    "cnn1d_stride_gap_logits": {"input_shape": (20, 3), "width": 8, "depth": 2, "downsample": "stride",
                                    "head": "gap", "softmax": False},
}


def _mlp(sequential: bool = False) -> keras.Model:
    layers = [L.Dense(16, activation="relu", name="d0"), L.Dense(12, activation="relu", name="d1"),
              L.Dense(12, name="d2"), L.ReLU(name="r2"), L.Dense(4, name="out"), L.Softmax(name="sm")]
    if sequential:
        return keras.Sequential([keras.Input((6,)), *layers], name="mlp_seq")
    h = inp = keras.Input((6,))
    for layer in layers:
        h = layer(h)
    return keras.Model(inp, h, name="mlp")


def _build(name: str) -> keras.Model:
    set_seed(0)
    if name.startswith("mlp"):
        model = _mlp(sequential=name.endswith("seq"))
    else:
        kwargs = dict(CNNS[name])
        model = build_cnn(kwargs.pop("input_shape"), 5, **kwargs)
    rng = np.random.default_rng(1)
    for layer in model.layers:  # BatchNorm with real statistics, dense layers with real biases
        if isinstance(layer, L.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 2, g.shape), rng.normal(0, 0.3, b.shape),
                               rng.normal(0, 0.5, m.shape), rng.uniform(0.5, 2, v.shape)])
        elif isinstance(layer, L.Dense):
            k, b = layer.get_weights()
            layer.set_weights([k, rng.normal(0, 0.1, b.shape)])
    return model


def _inputs(model: keras.Model, n: int = 32) -> np.ndarray:
    return np.random.default_rng(2).normal(size=(n, *model.input_shape[1:])).astype(np.float32)


ALL = [*CNNS, "mlp", "mlp_seq"]


@pytest.mark.parametrize("name", ALL)
def test_keeping_every_unit_gives_the_same_model(name):
    model = _build(name)
    narrow, info = narrow_model(model, 1.0)
    assert info["widths_after"] == info["widths_before"]
    assert info["parameters_after"] == info["parameters_before"]
    def kinds(m):
        return [type(a) for a in m.layers if not isinstance(a, L.InputLayer)]

    assert kinds(narrow) == kinds(model)
    x = _inputs(model)
    np.testing.assert_array_equal(narrow.predict(x, verbose=0), model.predict(x, verbose=0))


def _kill(model: keras.Model, layer_name: str, units: np.ndarray) -> None:
    """Make outputs ``units`` of a layer dead: zero weights (and zero BatchNorm scale/shift after a conv)."""
    layer = model.get_layer(layer_name)
    weights = layer.get_weights()
    weights[0][..., units] = 0
    for b in weights[1:]:
        b[units] = 0
    layer.set_weights(weights)
    follower = model.layers[model.layers.index(layer) + 1]
    if isinstance(follower, L.BatchNormalization):
        g, b, m, v = follower.get_weights()
        g[units], b[units] = 0, 0
        follower.set_weights([g, b, m, v])


@pytest.mark.parametrize("name", ALL)
def test_removing_dead_units_leaves_the_outputs_unchanged(name):
    model = _build(name)
    keep = 0.5
    rng = np.random.default_rng(3)
    dead = {}
    for layer_name in prunable_layers(model):
        n = model.get_layer(layer_name).get_weights()[0].shape[-1]
        n_dead = n - max(4, round(keep * n))
        dead[layer_name] = np.sort(rng.choice(n, n_dead, replace=False))
        _kill(model, layer_name, dead[layer_name])
    assert any(len(d) for d in dead.values())
    narrow, info = narrow_model(model, keep)
    for layer_name, units in dead.items():
        if len(units):
            assert not set(info["kept"][layer_name]) & set(units.tolist())
    assert info["parameters_after"] < info["parameters_before"]
    x = _inputs(model)
    np.testing.assert_allclose(narrow.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_parameters_and_macs_are_those_of_the_narrower_architecture():
    model = build_cnn((8, 8, 1), 10, width=8, depth=2, dense_units=16)
    narrow, info = narrow_model(model, 0.5)
    same = build_cnn((8, 8, 1), 10, width=4, depth=2, dense_units=8)
    assert info["widths_before"] == {"conv0": 8, "conv1": 16, "hidden": 16}
    assert info["widths_after"] == {"conv0": 4, "conv1": 8, "hidden": 8}
    assert info["parameters_after"] == same.count_params() == narrow.count_params()
    assert info["parameters_before"] == model.count_params()
    # conv0 8x8x4 outputs x 9 taps; conv1 (after 2x2 pool) 4x4x8 x 9x4; hidden 32x8; classifier 8x10
    assert model_macs(narrow) == model_macs(same) == 8 * 8 * 4 * 9 + 4 * 4 * 8 * 36 + 32 * 8 + 8 * 10


def test_keep_per_layer_and_min_units():
    model = build_cnn((8, 8, 1), 10, width=8, depth=2, dense_units=16)
    narrow, info = narrow_model(model, {"conv1": 0.25})
    assert info["widths_after"] == {"conv0": 8, "conv1": 4, "hidden": 16}
    assert narrow.get_layer("classifier").units == 10
    _, info = narrow_model(model, 0.01, min_units=3)
    assert info["widths_after"] == {"conv0": 3, "conv1": 3, "hidden": 3}


def test_macs_of_depthwise_and_strided_layers():
    inp = keras.Input((8, 8, 3))
    h = L.DepthwiseConv2D(3, padding="same")(inp)                     # 8*8*3 * 9
    h = L.Conv2D(5, 3, strides=2, padding="same")(h)                  # 4*4*5 * 27
    h = L.GlobalAveragePooling2D()(h)
    out = L.Dense(2)(h)                                               # 5*2
    assert model_macs(keras.Model(inp, out)) == 8 * 8 * 3 * 9 + 4 * 4 * 5 * 27 + 10


def test_narrowed_model_trains(small_digits, trained_tiny):
    narrow, _ = narrow_model(trained_tiny, 0.5)
    before = [w.copy() for w in narrow.get_weights()]
    out = fine_tune(narrow, small_digits, epochs=1, batch_size=64, learning_rate=1e-3, label="narrow")
    assert out["loss"] == "labels" and len(out["history"]["accuracy"]) == 1
    assert any(not np.array_equal(a, b) for a, b in zip(before, narrow.get_weights()))
    teacher_before = [w.copy() for w in trained_tiny.get_weights()]
    before = [w.copy() for w in narrow.get_weights()]
    out = fine_tune(narrow, small_digits, teacher=trained_tiny, epochs=1, batch_size=64,
                    learning_rate=1e-3, label="narrow kd")
    assert out["loss"] == "distillation" and "distillation_loss" in out["history"]
    assert any(not np.array_equal(a, b) for a, b in zip(before, narrow.get_weights()))
    for a, b in zip(teacher_before, trained_tiny.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert all(layer.trainable for layer in trained_tiny.layers)  # the Distiller froze it for a while
    assert narrow.layers[-1].name == "softmax"  # still the pipeline's form, probabilities out


def test_refuses_what_it_cannot_narrow():
    inp = keras.Input((8, 8, 1))
    a = L.Conv2D(8, 3, padding="same", name="a")(inp)
    b = L.Conv2D(8, 3, padding="same", name="b")(a)
    h = L.Add(name="merge")([L.ReLU(name="ra")(a), b])
    out = L.Dense(3)(L.Flatten()(h))
    with pytest.raises(ModelError, match="'merge' \\(Add\\)"):
        narrow_model(keras.Model(inp, out), 0.5)

    inp = keras.Input((8, 8, 1))
    h = L.Conv2D(8, 3, name="c")(inp)
    h = L.DepthwiseConv2D(3, name="dw")(h)
    out = L.Dense(3)(L.Flatten()(h))
    model = keras.Model(inp, out)
    with pytest.raises(ModelError, match="'dw' \\(DepthwiseConv2D\\)"):
        narrow_model(model, 0.5)
    assert narrow_model(model, 1.0)[1]["parameters_after"] == model.count_params()

    model = build_cnn((8, 8, 1), 10, width=8, depth=1)
    with pytest.raises(ModelError, match="'classifier'"):
        narrow_model(model, {"classifier": 0.5})
    with pytest.raises(ConfigError, match="no layer 'nope'"):
        narrow_model(model, {"nope": 0.5})
    with pytest.raises(ConfigError, match="must be in"):
        narrow_model(model, 1.5)


def test_batchnorm_scale_counts_in_the_ranking():
    """Filters whose BatchNorm scale and shift are zero are dead, whatever their kernel: they go first."""
    model = _build("cnn2d_pool_flatten_hidden")
    bn = model.get_layer("bn1")
    g, b, m, v = bn.get_weights()
    dead = np.arange(0, 16, 2)  # half of conv1's 16 filters; their kernels stay large
    g[dead], b[dead] = 0, 0
    bn.set_weights([g, b, m, v])
    narrow, info = narrow_model(model, {"conv1": 0.5})
    assert info["kept"]["conv1"] == list(range(1, 16, 2))
    x = _inputs(model)
    np.testing.assert_allclose(narrow.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_a_frozen_model_narrows_to_a_trainable_one():
    model = _build("mlp")
    model.trainable = False
    narrow, _ = narrow_model(model, 0.5)
    assert narrow.trainable_weights and all(layer.trainable for layer in narrow.layers)
