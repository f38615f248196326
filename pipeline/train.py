"""One way to fit a classifier in every stage: Adam + cosine decay, sparse cross-entropy, Keras callbacks.

Distillation trains through the same loop (:func:`pipeline.distill.fit_distiller`): it compiles its
own trainer with :func:`make_optimizer` and hands its ``fit`` to :func:`fit_classifier` as ``fit=``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from pipeline.keras_env import keras
from pipeline.keras_progress import EpochProgress


class TrainArrays(NamedTuple):
    """The arrays :func:`fit_classifier` reads; a :class:`tinyfarm_datasets.Splits` has them too."""

    x_train: np.ndarray
    y_train: Any
    x_val: np.ndarray
    y_val: Any


def steps_per_epoch(n_samples: int, batch_size: int) -> int:
    return max(1, math.ceil(n_samples / batch_size))


def make_optimizer(learning_rate: float, total_steps: int) -> keras.optimizers.Optimizer:
    """Adam with a learning rate cosine-decayed over ``total_steps`` (to 5 % of its start)."""
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, total_steps),
                                                      alpha=0.05)
    return keras.optimizers.Adam(schedule)


def compile_classifier(model: keras.Model, learning_rate: float, total_steps: int) -> None:
    """Adam with cosine-decayed learning rate; cross-entropy on probabilities or logits, whichever
    the model outputs (a user's model may end without softmax)."""
    from pipeline.keras_models import ends_in_softmax

    model.compile(optimizer=make_optimizer(learning_rate, total_steps),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not ends_in_softmax(model)),
                  metrics=["accuracy"])


def fit_classifier(model: keras.Model, splits: Any, *, epochs: int, batch_size: int,
                   learning_rate: float, label: str, early_stopping_patience: int | None = None,
                   callbacks: Sequence[keras.callbacks.Callback] = (),
                   compile: bool = True, monitor: str = "val_accuracy",
                   fit: Callable[..., Any] | None = None) -> dict[str, list[float]]:
    """Train on ``splits`` (validation on the val split when there is one); returns the history.

    ``splits`` is a :class:`tinyfarm_datasets.Splits` or :class:`TrainArrays`. With
    ``early_stopping_patience`` the best epoch by ``monitor`` (``val_accuracy`` by default; without a
    val split its training counterpart) is restored at the end. ``fit`` replaces ``model.fit``: a
    function with the arguments of ``keras.Model.fit`` returning its ``History`` — a trainer with
    its own loss (distillation) passes its own ``fit`` and compiles itself (``compile=False``).
    """
    if compile:
        compile_classifier(model, learning_rate, epochs * steps_per_epoch(len(splits.x_train), batch_size))
    has_val = len(splits.x_val) > 0
    cbs: list[keras.callbacks.Callback] = list(callbacks)
    if early_stopping_patience:
        watch = monitor if has_val else monitor.removeprefix("val_")
        cbs.append(keras.callbacks.EarlyStopping(
            monitor=watch, mode="max" if watch.endswith("accuracy") else "min",
            patience=early_stopping_patience, restore_best_weights=True))
    cbs.append(EpochProgress(label, epochs))
    history = (fit or model.fit)(
        splits.x_train, splits.y_train, batch_size=batch_size, epochs=epochs, verbose=0,
        validation_data=(splits.x_val, splits.y_val) if has_val else None,
        shuffle=True, callbacks=cbs)
    return {k: [float(x) for x in v] for k, v in history.history.items()}


def keras_accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Test accuracy of a Keras model (the .tflite variants are measured separately, with LiteRT)."""
    if len(x) == 0:
        return float("nan")
    pred = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(pred, axis=-1) == y))
