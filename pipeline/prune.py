"""Stage 2: magnitude pruning with TF-MOT, scheduled so that short runs really reach the target.

TF-MOT's default pruning frequency is 100 steps: on a small data set (digits: ~38 steps per epoch)
a few epochs of fine-tuning update the masks a handful of times, or never, and the model stays
dense. :func:`pruning_schedule` derives the frequency and end step from the steps per epoch instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from pipeline.keras_env import keras, tfmot
from pipeline.train import fit_classifier, steps_per_epoch
from tinyfarm_datasets import Splits

sparsity = tfmot.sparsity.keras

# Layers whose kernels are pruned (and whose zeros we count); the rest are passed through unwrapped.
PRUNABLE = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense, keras.layers.Conv1D)


@dataclass(frozen=True)
class ScheduleSpec:
    """Where the masks are updated: every ``frequency`` steps from ``begin_step`` to ``end_step``."""

    kind: str
    begin_step: int
    end_step: int
    frequency: int
    total_steps: int


def pruning_schedule(kind: str, *, initial_sparsity: float, target_sparsity: float, epochs: int,
                     steps_per_epoch: int, ramp_fraction: float = 0.7, frequency: int | None = None,
                     updates: int = 16) -> tuple[object, ScheduleSpec]:
    """A TF-MOT schedule that reaches ``target_sparsity`` within ``epochs * steps_per_epoch`` steps.

    The ramp (polynomial) ends after ``ramp_fraction`` of the steps, leaving the rest to recover
    accuracy at full sparsity. The frequency is about ``updates`` mask updates over the ramp unless
    given, and ``end_step`` is a multiple of it, so the last update lands exactly on the target.
    """
    total = max(1, epochs * steps_per_epoch)
    ramp = max(1, int(total * ramp_fraction))
    freq = frequency or max(1, ramp // updates)
    freq = min(freq, ramp)
    end_step = max(freq, (ramp // freq) * freq)
    spec = ScheduleSpec(kind, 0, end_step, freq, total)
    if kind == "polynomial":
        schedule = sparsity.PolynomialDecay(initial_sparsity=initial_sparsity, final_sparsity=target_sparsity,
                                            begin_step=0, end_step=end_step, frequency=freq)
    elif kind == "constant":
        schedule = sparsity.ConstantSparsity(target_sparsity, begin_step=0, end_step=-1, frequency=freq)
    else:
        raise ValueError(f"unknown pruning schedule {kind!r}")
    return schedule, spec


def prune_model(model: keras.Model, splits: Splits, *, schedule: str = "polynomial",
                initial_sparsity: float = 0.0, target_sparsity: float = 0.8,
                m_by_n: tuple[int, int] | None = None, epochs: int = 20, batch_size: int = 32,
                learning_rate: float = 1e-3, ramp_fraction: float = 0.7, frequency: int | None = None,
                exclude: tuple[str, ...] | list[str] = (), early_stopping_patience: int | None = None,
                label: str = "prune",
                fit: Callable[[keras.Model, list], dict] | None = None) -> tuple[keras.Model, dict]:
    """Prune a trained float model and fine-tune it; returns the stripped model and a summary.

    Only conv and dense kernels are pruned (``exclude`` keeps named layers dense). With ``m_by_n``
    (e.g. ``(2, 4)``) the masks are structured m-of-n blocks and the schedule only sets when they apply.
    ``fit(wrapped_model, callbacks) -> history`` replaces the fine-tuning on hard labels
    (:func:`pipeline.train.fit_classifier`); it must pass ``callbacks`` (TF-MOT's
    ``UpdatePruningStep``) to its training loop. Distillation keeps the teacher this way.
    """
    spe = steps_per_epoch(len(splits.x_train), batch_size)
    sched, spec = pruning_schedule(schedule, initial_sparsity=initial_sparsity,
                                   target_sparsity=target_sparsity, epochs=epochs, steps_per_epoch=spe,
                                   ramp_fraction=ramp_fraction, frequency=frequency)
    kwargs = {"pruning_schedule": sched}
    if m_by_n is not None:
        kwargs["sparsity_m_by_n"] = tuple(m_by_n)
    excluded = set(exclude)

    def wrap(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, PRUNABLE) and layer.name not in excluded:
            return sparsity.prune_low_magnitude(layer, **kwargs)
        return layer

    # Work on a copy: the wrappers share (and train) the weights of the layers they wrap.
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    pruned = keras.models.clone_model(copy, clone_function=wrap)
    if fit is None:
        def fit(wrapped: keras.Model, callbacks: list) -> dict:
            return fit_classifier(wrapped, splits, epochs=epochs, batch_size=batch_size,
                                  learning_rate=learning_rate, label=label,
                                  early_stopping_patience=early_stopping_patience, callbacks=callbacks)

    history = fit(pruned, [sparsity.UpdatePruningStep()])
    stripped = sparsity.strip_pruning(pruned)
    return stripped, {"schedule": spec.__dict__, "steps_per_epoch": spe, "history": history,
                      "kernel_sparsity": kernel_sparsity(stripped)}


def prune_kwargs(section) -> dict:
    """A config ``prune`` section (:class:`pipeline.config.PruneSection`) as keyword arguments of
    :func:`prune_model`."""
    return dict(schedule=section.schedule, initial_sparsity=section.initial_sparsity,
                target_sparsity=section.target_sparsity, m_by_n=section.m_by_n, epochs=section.epochs,
                batch_size=section.batch_size, learning_rate=section.learning_rate,
                ramp_fraction=section.ramp_fraction, frequency=section.frequency, exclude=section.exclude,
                early_stopping_patience=section.early_stopping_patience)


def kernel_sparsity(model: keras.Model) -> dict[str, float]:
    """Share of exact zeros in each conv/dense kernel of a Keras model (before conversion)."""
    out = {}
    for layer in model.layers:
        if isinstance(layer, PRUNABLE):
            kernel = layer.get_weights()[0]
            out[layer.name] = float(np.mean(kernel == 0))
    return out
