"""One way to fit a classifier in every stage: Adam + cosine decay, sparse cross-entropy, Keras callbacks."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from pipeline.keras_env import keras
from pipeline.keras_progress import EpochProgress
from tinyfarm_datasets import Splits


def steps_per_epoch(n_samples: int, batch_size: int) -> int:
    return max(1, math.ceil(n_samples / batch_size))


def compile_classifier(model: keras.Model, learning_rate: float, total_steps: int) -> None:
    """Adam with cosine-decayed learning rate; cross-entropy on probabilities or logits, whichever
    the model outputs (a user's model may end without softmax)."""
    from pipeline.models import ends_in_softmax

    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, total_steps),
                                                      alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not ends_in_softmax(model)),
                  metrics=["accuracy"])


def fit_classifier(model: keras.Model, splits: Splits, *, epochs: int, batch_size: int,
                   learning_rate: float, label: str, early_stopping_patience: int | None = None,
                   callbacks: Sequence[keras.callbacks.Callback] = (),
                   compile: bool = True) -> dict[str, list[float]]:
    """Train on ``splits`` (validation on the val split when there is one); returns the history.

    With ``early_stopping_patience`` the best epoch by validation accuracy is restored at the end.
    """
    if compile:
        compile_classifier(model, learning_rate, epochs * steps_per_epoch(len(splits.x_train), batch_size))
    has_val = len(splits.x_val) > 0
    cbs: list[keras.callbacks.Callback] = list(callbacks)
    if early_stopping_patience:
        cbs.append(keras.callbacks.EarlyStopping(
            monitor="val_accuracy" if has_val else "accuracy", mode="max",
            patience=early_stopping_patience, restore_best_weights=True))
    cbs.append(EpochProgress(label, epochs))
    history = model.fit(
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
