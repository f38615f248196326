"""The Distiller as a Keras model: fit/evaluate, callbacks, online == offline, logits handling, cache."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.distill import (LABELS, TEACHER_LOGITS, Distiller, as_logits_model, as_probability_model,
                              distillation_loss, fit_distiller)
from pipeline.distill_cache import teacher_logits
from pipeline.keras_env import keras, set_seed
from tinyfarm.errors import ModelError

N_CLASSES = 4


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = (np.argmax(x[:, :N_CLASSES], axis=1)).astype(np.int64)
    return x, y


def _mlp(units, softmax=False, name=None):
    inp = keras.Input((6,))
    h = keras.layers.Dense(units, activation="relu")(inp)
    out = keras.layers.Dense(N_CLASSES, activation="softmax" if softmax else None)(h)
    return keras.Model(inp, out, name=name)


@pytest.fixture(scope="module")
def teacher():
    set_seed(0)
    model = _mlp(32, softmax=True, name="teacher")
    x, y = _data(256)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=5, verbose=0)
    return model


def test_online_and_offline_give_the_same_losses(teacher):
    x, y = _data()
    logits_teacher = as_logits_model(teacher)
    set_seed(1)
    student = _mlp(4)
    online = Distiller(student, logits_teacher, temperature=3.0, alpha=0.3)
    online.compile(keras.optimizers.Adam(1e-3))
    offline = Distiller(student, None, temperature=3.0, alpha=0.3)
    offline.compile(keras.optimizers.Adam(1e-3))
    t = logits_teacher.predict(x, verbose=0)
    a = online.evaluate(x, y, verbose=0, return_dict=True)
    b = offline.evaluate(x, {LABELS: y, TEACHER_LOGITS: t}, verbose=0, return_dict=True)
    for key in ("loss", "student_loss", "distillation_loss", "accuracy"):
        assert a[key] == pytest.approx(b[key], rel=1e-5), key
    want = float(np.mean(distillation_loss(y, student.predict(x, verbose=0), t, 3.0, 0.3)[0]))
    assert a["loss"] == pytest.approx(want, rel=1e-5)


def test_fit_with_validation_and_early_stopping_trains_only_the_student(teacher, tmp_path):
    x, y = _data()
    xv, yv = _data(48, seed=1)
    logits_teacher = as_logits_model(teacher)
    before = [w.copy() for w in logits_teacher.get_weights()]
    set_seed(2)
    student = _mlp(8)
    # A stopping rule no epoch can satisfy: EarlyStopping on val_loss must end the run after 2 epochs.
    never_good_enough = keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=1e9, patience=1)
    distiller, history = fit_distiller(student, x, y, xv, yv, teacher=logits_teacher, temperature=2.0,
                                       alpha=0.5, epochs=30, batch_size=16, learning_rate=1e-2,
                                       callbacks=[never_good_enough])
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "student_loss", "distillation_loss"} <= set(history)
    assert len(history["loss"]) == 2
    assert history["loss"][1] < history["loss"][0]
    for w0, w1 in zip(before, logits_teacher.get_weights()):
        np.testing.assert_array_equal(w0, w1)
    # The plain student is saved and reloaded without the Distiller.
    path = tmp_path / "student.keras"
    distiller.student.save(path)
    again = keras.models.load_model(path, compile=False)
    np.testing.assert_allclose(again.predict(xv, verbose=0), student.predict(xv, verbose=0), rtol=1e-5)


def test_offline_fit_needs_teacher_logits():
    x, y = _data()
    student = _mlp(4)
    with pytest.raises(ValueError, match="teacher logits"):
        fit_distiller(student, x, y, x[:0], y[:0], temperature=2.0, alpha=0.5, epochs=1, batch_size=16,
                      learning_rate=1e-3)


@pytest.mark.parametrize("kind", ["dense_softmax", "softmax_layer", "activation_layer"])
def test_softmax_students_are_turned_into_logits_models(kind):
    set_seed(3)
    inp = keras.Input((6,))
    h = keras.layers.Dense(8, activation="relu")(inp)
    if kind == "dense_softmax":
        out = keras.layers.Dense(N_CLASSES, activation="softmax")(h)
    else:
        z = keras.layers.Dense(N_CLASSES)(h)
        out = keras.layers.Softmax()(z) if kind == "softmax_layer" else keras.layers.Activation("softmax")(z)
    model = keras.Model(inp, out)
    x, _ = _data(8)
    logits = as_logits_model(model, probe=x).predict(x, verbose=0)
    probs = model.predict(x, verbose=0)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(axis=1, keepdims=True), probs, rtol=1e-5, atol=1e-6)
    assert not np.allclose(logits.sum(axis=1), 1.0)
    # and back: the pipeline's softmax form with the same predictions
    back = as_probability_model(as_logits_model(model))
    np.testing.assert_allclose(back.predict(x, verbose=0), probs, rtol=1e-5, atol=1e-6)


def test_opaque_probability_outputs_are_refused():
    inp = keras.Input((6,))
    z = keras.layers.Dense(N_CLASSES)(inp)
    out = keras.layers.Lambda(lambda t: keras.activations.softmax(t))(z)
    model = keras.Model(inp, out)
    x, _ = _data(8)
    with pytest.raises(ModelError, match="outputs probabilities"):
        as_logits_model(model, probe=x)


def test_bad_temperature_alpha_and_output_sizes_are_refused(teacher):
    with pytest.raises(ValueError):
        Distiller(_mlp(4), None, temperature=0.0)
    with pytest.raises(ValueError):
        Distiller(_mlp(4), None, alpha=1.5)
    inp = keras.Input((6,))
    three = keras.Model(inp, keras.layers.Dense(3)(inp))
    with pytest.raises(ModelError, match="must match"):
        Distiller(three, as_logits_model(teacher))


def test_teacher_logits_are_cached_by_teacher_and_data(teacher, tmp_path):
    x, _ = _data(40)
    xt, _ = _data(10, seed=5)
    logits_teacher = as_logits_model(teacher)
    first, meta = teacher_logits(logits_teacher, {"train": x, "test": xt}, tmp_path, "toy")
    assert not meta["reused"] and meta["kind"] == "logits"
    np.testing.assert_allclose(first["train"], logits_teacher.predict(x, verbose=0), rtol=1e-6)
    again, meta2 = teacher_logits(logits_teacher, {"train": x, "test": xt}, tmp_path, "toy")
    assert meta2["reused"] and meta2["path"] == meta["path"]
    np.testing.assert_array_equal(again["train"], first["train"])
    # other data or another teacher -> another file, never stale logits
    _, meta3 = teacher_logits(logits_teacher, {"train": x[:-1], "test": xt}, tmp_path, "toy")
    other = keras.models.clone_model(logits_teacher)
    _, meta4 = teacher_logits(other, {"train": x, "test": xt}, tmp_path, "toy")
    assert len({meta["path"], meta3["path"], meta4["path"]}) == 3
    assert not meta3["reused"] and not meta4["reused"]


def test_mixup_mixes_inputs_and_labels_alike(teacher):
    """With x_i = one_hot(y_i), a mixed input must equal its mixed label exactly."""
    import tensorflow as tf

    inp = keras.Input((N_CLASSES,))
    student = keras.Model(inp, keras.layers.Dense(N_CLASSES)(inp))
    distiller = Distiller(student, None, alpha=1.0, mixup=1.0)
    x = np.eye(N_CLASSES, dtype=np.float32)
    y = np.arange(N_CLASSES)
    tf.random.set_seed(0)
    x_mixed, y_mixed = distiller._mix(tf.constant(x), tf.constant(y))
    np.testing.assert_allclose(np.asarray(x_mixed), np.asarray(y_mixed), atol=1e-6)
    np.testing.assert_allclose(np.asarray(y_mixed).sum(axis=1), 1.0, atol=1e-6)
    assert not np.allclose(np.asarray(x_mixed), x)  # Beta(1, 1) weights are almost surely not 0/1
    with pytest.raises(ValueError, match="online"):
        Distiller(student, None, alpha=0.5, mixup=0.4)


def test_fit_with_mixup_online_and_from_scratch(teacher):
    x, y = _data()
    logits_teacher = as_logits_model(teacher)
    for kwargs in ({"teacher": logits_teacher, "alpha": 0.3}, {"alpha": 1.0}):
        set_seed(4)
        _, history = fit_distiller(_mlp(8), x, y, x[:32], y[:32], temperature=4.0, epochs=2, batch_size=16,
                                   learning_rate=1e-2, mixup=0.4, **kwargs)
        assert len(history["loss"]) == 2 and np.isfinite(history["loss"]).all()
