"""Structured pruning: remove whole conv filters and dense units, rebuild a narrower model.

TF-MOT only zeroes single weights (:mod:`pipeline.prune`); TFLM stores and runs them dense, so
unstructured sparsity does not shrink flash. Removing filters does: :func:`narrow_model` ranks each
``Conv`` filter / ``Dense`` unit by the L1 norm of its weights (times the following BatchNorm's
scale ``|gamma / sqrt(var + eps)|``: a filter BN scales to nothing contributes nothing), keeps the
top fraction and rebuilds the same chain of layers, narrower, with the surviving weights copied —
the next layer's input channels, BatchNorm statistics and a ``Flatten -> Dense`` kernel (rows of a
flattened ``(h, w, c)`` tensor) sliced to match. The classifier (the last weighted layer) keeps all
its outputs. The narrow model is not trained: :func:`fine_tune` does that, by distillation from the
wide model when given one.

Handled: single-input single-output chains (the CNNs of :func:`pipeline.keras_models.build_cnn`,
``Sequential``-like MLPs). Anything else that would have to be narrowed is a :class:`ModelError`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from pipeline.keras_env import keras
from tinyfarm.errors import ConfigError, ModelError

L = keras.layers

#: Layers whose outputs (filters / units) can be removed: exact types, so Conv2DTranspose (a Conv2D
#: with a transposed kernel layout) is not taken for one.
NARROWABLE = (L.Conv1D, L.Conv2D, L.Dense)
#: Layers that act on each channel alone: they pass a narrowed channel set through unchanged.
CHANNELWISE = (L.ReLU, L.Activation, L.LeakyReLU, L.ELU, L.Dropout, L.SpatialDropout1D,
               L.SpatialDropout2D, L.GaussianNoise, L.GaussianDropout, L.MaxPooling1D, L.MaxPooling2D,
               L.AveragePooling1D, L.AveragePooling2D, L.GlobalAveragePooling1D,
               L.GlobalAveragePooling2D, L.GlobalMaxPooling1D, L.GlobalMaxPooling2D,
               L.ZeroPadding1D, L.ZeroPadding2D, L.Cropping1D, L.Cropping2D, L.UpSampling1D,
               L.UpSampling2D, L.Identity)
TRANSPOSED = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)
DEPTHWISE = (L.DepthwiseConv1D, L.DepthwiseConv2D)
MAC_LAYERS = (L.Dense, L.Conv1D, L.Conv2D, L.Conv3D, *TRANSPOSED, *SEPARABLE, *DEPTHWISE)


def _kind(layer: keras.layers.Layer) -> str:
    return f"{layer.name!r} ({type(layer).__name__})"


def _chain(model: keras.Model) -> list[tuple[keras.layers.Layer, tuple]]:
    """The model's layers from input to output with each one's input shape, or ModelError."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelError(f"model {model.name!r} has {len(model.inputs)} inputs and {len(model.outputs)} "
                         "outputs; structured pruning needs a single chain of layers")
    chain = []
    tensor = model.outputs[0]
    while True:
        layer, node_index, _ = tensor._keras_history
        if isinstance(layer, L.InputLayer):
            break
        inputs = layer._inbound_nodes[node_index].input_tensors
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != 1:
                raise ModelError(f"cannot narrow layer {_kind(layer)}: it has {len(inputs)} inputs "
                                 "(structured pruning handles single chains of layers)")
            inputs = inputs[0]
        chain.append((layer, tuple(inputs.shape)))
        tensor = inputs
    chain.reverse()
    on_chain = {id(layer) for layer, _ in chain}
    for layer in model.layers:
        if not isinstance(layer, L.InputLayer) and id(layer) not in on_chain:
            raise ModelError(f"cannot narrow layer {_kind(layer)}: it is on a branch off the main chain")
    return chain


def _is_narrowable(layer: keras.layers.Layer) -> bool:
    return type(layer) in NARROWABLE and getattr(layer, "groups", 1) == 1 and \
        layer.get_config().get("data_format", "channels_last") == "channels_last"


def prunable_layers(model: keras.Model) -> list[str]:
    """Names of the layers :func:`narrow_model` may narrow: every conv/dense but the classifier."""
    kernels = [layer for layer, _ in _chain(model) if isinstance(layer, MAC_LAYERS)]
    return [layer.name for layer in kernels[:-1] if _is_narrowable(layer)]


def _importance(chain: list, position: int) -> np.ndarray:
    """L1 norm of each output's weights, scaled by the next BatchNorm's |gamma / sqrt(var + eps)|."""
    layer = chain[position][0]
    kernel = layer.get_weights()[0]
    score = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)
    for follower, _ in chain[position + 1:]:
        if isinstance(follower, L.BatchNormalization):
            gamma = follower.gamma.numpy() if follower.gamma is not None else 1.0
            variance = follower.moving_variance.numpy()
            score = score * np.abs(gamma / np.sqrt(variance + follower.epsilon))
            break
        if not isinstance(follower, CHANNELWISE):
            break
    return score


def _keep_fractions(keep: float | dict[str, float], prunable: list[str], model: keras.Model) -> dict[str, float]:
    if isinstance(keep, dict):
        names = {layer.name for layer in model.layers}
        for name in keep:
            if name not in names:
                raise ConfigError(f"keep: model {model.name!r} has no layer {name!r}")
            if name not in prunable:
                layer = model.get_layer(name)
                raise ModelError(f"cannot narrow layer {_kind(layer)}: only conv/dense layers before the "
                                 "classifier can lose outputs")
        fractions = {name: float(keep.get(name, 1.0)) for name in prunable}
    else:
        fractions = {name: float(keep) for name in prunable}
    for name, value in fractions.items():
        if not 0.0 < value <= 1.0:
            raise ConfigError(f"keep for layer {name!r} must be in (0, 1], got {value}")
    return fractions


def _channel_axis_ok(layer: keras.layers.Layer, rank: int) -> bool:
    """Whether a BatchNormalization normalises the last axis (the channels) only."""
    axis = layer.get_config().get("axis", -1)
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    return axis in (-1, rank - 1)


def _sliced_weights(layer: keras.layers.Layer, in_idx: np.ndarray | None,
                    out_idx: np.ndarray | None) -> list[np.ndarray]:
    """The layer's weights with input channels ``in_idx`` and outputs ``out_idx`` kept."""
    weights = layer.get_weights()
    if isinstance(layer, L.BatchNormalization):
        return [w[in_idx] if in_idx is not None else w for w in weights]
    kernel, rest = weights[0], weights[1:]
    if in_idx is not None:
        kernel = np.take(kernel, in_idx, axis=-2)
    if out_idx is not None:
        kernel = np.take(kernel, out_idx, axis=-1)
        rest = [b[out_idx] for b in rest]
    return [kernel, *rest]


def narrow_model(model: keras.Model, keep: float | dict[str, float], *,
                 min_units: int = 4) -> tuple[keras.Model, dict]:
    """A narrower copy of ``model`` (weights copied, not trained) and what changed.

    ``keep`` is the fraction of filters/units kept in every prunable layer, or a ``{layer name:
    fraction}`` dict (layers not named keep all). Each layer keeps ``round(keep * n)`` outputs, at
    least ``min_units`` (or all, if it has fewer), the most important ones, in their original order.
    Returns ``(narrow, {"widths_before", "widths_after", "parameters_before", "parameters_after",
    "kept": {layer: [indices]}})``.
    """
    chain = _chain(model)
    prunable = prunable_layers(model)
    fractions = _keep_fractions(keep, prunable, model)
    positions = {layer.name: i for i, (layer, _) in enumerate(chain)}

    kept: dict[str, np.ndarray] = {}
    widths_before, widths_after = {}, {}
    for name in prunable:
        layer = chain[positions[name]][0]
        n = int(layer.get_weights()[0].shape[-1])
        n_keep = min(n, max(min_units, 1, round(fractions[name] * n)))
        widths_before[name], widths_after[name] = n, n_keep
        if n_keep < n:
            score = _importance(chain, positions[name])
            # Stable sort: among equal scores the first units survive; kept units stay in order.
            top = np.argsort(-score, kind="stable")[:n_keep]
            kept[name] = np.sort(top)

    inputs = keras.Input(batch_shape=model.inputs[0].shape, dtype=model.inputs[0].dtype,
                         name=model.input_names[0])
    h = inputs
    idx: np.ndarray | None = None  # surviving channels of the last axis of h; None: all of them
    assignments: list[tuple[keras.layers.Layer, list[np.ndarray]]] = []
    for layer, in_shape in chain:
        config = layer.get_config()
        config["trainable"] = True  # the narrow model is for fine-tuning, even from a frozen teacher
        if idx is not None and config.get("data_format") == "channels_first":
            raise ModelError(f"cannot narrow layer {_kind(layer)}: channels_first layers are not handled")
        if type(layer) in NARROWABLE:
            if not _is_narrowable(layer) and idx is not None:
                raise ModelError(f"cannot narrow layer {_kind(layer)}: grouped or channels_first "
                                 "convolutions are not handled")
            out_idx = kept.get(layer.name)
            if out_idx is not None:
                config["filters" if "filters" in config else "units"] = len(out_idx)
            weights = _sliced_weights(layer, idx, out_idx)
            idx = out_idx
        elif isinstance(layer, L.BatchNormalization):
            if idx is not None and not _channel_axis_ok(layer, len(in_shape)):
                raise ModelError(f"cannot narrow layer {_kind(layer)}: it normalises an axis that is "
                                 "not the channel axis")
            weights = _sliced_weights(layer, idx, None)
        elif isinstance(layer, L.Flatten):
            if idx is not None:
                if config.get("data_format", "channels_last") != "channels_last":
                    raise ModelError(f"cannot narrow layer {_kind(layer)}: channels_first flatten")
                channels = int(in_shape[-1])
                positions_in = int(np.prod(in_shape[1:-1], dtype=np.int64)) if len(in_shape) > 2 else 1
                # Row-major flatten of (..., c): element (p, c) lands at p * channels + c.
                idx = (np.arange(positions_in)[:, None] * channels + idx[None, :]).reshape(-1)
            weights = []
        elif isinstance(layer, CHANNELWISE):
            if idx is not None and isinstance(layer, L.Activation) and config.get("activation") == "softmax":
                raise ModelError(f"cannot narrow layer {_kind(layer)}: a softmax over narrowed channels")
            weights = layer.get_weights()
        elif isinstance(layer, L.Softmax) and idx is None:
            weights = []
        elif idx is None:  # a layer we do not know, but nothing it reads was narrowed: copy it
            weights = layer.get_weights()
        else:
            raise ModelError(f"cannot narrow layer {_kind(layer)}: structured pruning does not know how "
                             "it maps its input channels (it follows a narrowed layer)")
        new_layer = layer.__class__.from_config(config)
        h = new_layer(h)
        assignments.append((new_layer, weights))
    for new_layer, weights in assignments:
        new_layer.set_weights(weights)
    narrow = keras.Model(inputs, h, name=model.name)
    return narrow, {"widths_before": widths_before, "widths_after": widths_after,
                    "parameters_before": int(model.count_params()),
                    "parameters_after": int(narrow.count_params()),
                    "kept": {name: [int(i) for i in v] for name, v in kept.items()}}


def _io_shapes(layer: keras.layers.Layer) -> tuple[tuple, tuple]:
    try:
        return tuple(layer.input_shape), tuple(layer.output_shape)
    except AttributeError:  # a layer called more than once: its first call
        return tuple(layer.get_input_shape_at(0)), tuple(layer.get_output_shape_at(0))


def _elements(shape: tuple) -> int:
    return int(np.prod([d for d in shape[1:] if d is not None], dtype=np.int64))


def model_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one inference (batch 1): conv, depthwise/separable conv and dense.

    BatchNorm, activations and pooling are not counted (BatchNorm folds into the conv on export).
    TF-MOT wrappers (pruning, clustering, QAT) are looked through; nested models are counted.
    """
    total = 0
    for outer in model.layers:
        layer = getattr(outer, "layer", outer)
        if isinstance(layer, keras.Model):
            total += model_macs(layer)
            continue
        if not isinstance(layer, MAC_LAYERS):
            continue
        in_shape, out_shape = _io_shapes(outer)
        if isinstance(layer, L.Dense):
            total += _elements(out_shape) * int(in_shape[-1])
        elif isinstance(layer, TRANSPOSED):  # kernel (..., out, in): every input pixel, every tap
            total += _elements(in_shape) * int(np.prod(layer.kernel.shape[:-1]))
        elif isinstance(layer, SEPARABLE):  # depthwise (..., in, multiplier), then pointwise
            dw = layer.depthwise_kernel.shape
            pixels = _elements(out_shape) // int(out_shape[-1])
            total += pixels * int(np.prod(dw)) + _elements(out_shape) * int(dw[-2] * dw[-1])
        elif isinstance(layer, DEPTHWISE):  # one window of the kernel per output element
            total += _elements(out_shape) * int(np.prod(layer.depthwise_kernel.shape[:-2]))
        else:  # kernel (..., in / groups, out)
            total += _elements(out_shape) * int(np.prod(layer.kernel.shape[:-1]))
    return int(total)


def fine_tune(narrow: keras.Model, splits: Any, *, teacher: keras.Model | None = None, epochs: int,
              batch_size: int, learning_rate: float, label: str = "narrow", temperature: float = 4.0,
              alpha: float = 0.1, early_stopping_patience: int | None = None) -> dict:
    """Fine-tune ``narrow`` in place: by distillation from ``teacher`` if given, else on the labels.

    Distillation is :func:`pipeline.distill.fit_distiller` (online teacher; both models are used as
    logits, ``narrow`` keeps its softmax layer); without a teacher it is
    :func:`pipeline.train.fit_classifier`. Returns ``{"history", "loss", "seconds"}``.
    """
    from pipeline.train import fit_classifier

    start = time.perf_counter()
    if teacher is None:
        history = fit_classifier(narrow, splits, epochs=epochs, batch_size=batch_size,
                                 learning_rate=learning_rate, label=label,
                                 early_stopping_patience=early_stopping_patience)
        loss = "labels"
    else:
        from pipeline.distill import as_logits_model, fit_distiller

        probe = splits.x_train[:16]
        student = as_logits_model(narrow, probe=probe)
        # The Distiller freezes the teacher (a view sharing its layers): give them back as they were.
        frozen = [(layer, layer.trainable) for layer in [teacher, *teacher.layers]]
        try:
            _, history = fit_distiller(
                student, splits.x_train, splits.y_train, splits.x_val, splits.y_val,
                teacher=as_logits_model(teacher, probe=probe), temperature=temperature, alpha=alpha,
                epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                early_stopping_patience=early_stopping_patience, label=label)
        finally:
            for layer, trainable in frozen:
                layer.trainable = trainable
        if student is not narrow:  # a view shares the weights; a clone (Dense softmax) does not
            narrow.set_weights(student.get_weights())
        loss = "distillation"
    return {"history": history, "loss": loss, "seconds": round(time.perf_counter() - start, 3)}
