"""Stage 1 model families: small CNNs for images (2-D) and signals (1-D), an MLP for feature
vectors (tabular data), or a user's tf-keras model.

The MLP (``family: mlp``, chosen by ``auto`` for inputs of shape ``(features,)``) is the CNN with
``Dense`` layers for blocks: ``depth`` hidden blocks Dense -> BatchNorm -> ReLU of
``width * growth**i`` units, then the CNN's head (optional ``dense_units`` hidden layer, the
``classifier`` Dense and a separate ``Softmax``), so pruning, clustering, QAT and
:func:`pipeline.structured_prune.narrow_model` treat it as they treat the CNNs.

The 1-D family is written with ``Conv2D`` and ``(k, 1)`` kernels on a ``(length, 1, channels)``
view of the signal: TF-MOT's quantization-aware training does not support ``Conv1D`` (it is
commented out of the default 8-bit registry), and TFLM runs ``CONV_2D`` directly, without the
EXPAND_DIMS/SQUEEZE pair a ``Conv1D`` converts to.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.keras3_import import import_user_model
from pipeline.keras_env import keras
from tinyfarm.errors import ModelError


def build_cnn(input_shape: tuple[int, ...], num_classes: int, *, family: str = "auto",
              width: int = 16, depth: int = 2, growth: float = 2.0, kernel_size: int = 3,
              downsample: str = "pool", downsample_from: int = 0, head: str = "flatten",
              dense_units: int = 0, dropout: float = 0.0, softmax: bool = True,
              bn_momentum: float = 0.9, name: str | None = None) -> keras.Model:
    """A Conv -> BatchNorm -> ReLU stack, ``depth`` blocks, ``width * growth**i`` filters in block i.

    ``family`` is ``cnn2d`` (input ``(h, w, c)``), ``cnn1d`` (input ``(length, channels)``),
    ``mlp`` (input ``(features,)``: :func:`build_mlp`, which ignores the conv-only arguments) or
    ``auto`` (chosen from the rank of ``input_shape``). Blocks from ``downsample_from`` on halve the
    resolution by max-pooling or stride (never below 1). The head is ``flatten`` or global average
    pooling, an optional hidden dense layer, then a dense classifier and a separate ``Softmax``
    layer (``softmax=False``: the model ends at the logits). BatchNorm momentum is 0.9, not Keras'
    0.99: small data sets give a few hundred steps, too few for 0.99 moving statistics to settle.
    """
    input_shape = tuple(int(d) for d in input_shape)
    if family == "auto":
        family = FAMILY_BY_RANK.get(len(input_shape), "")
        if not family:
            raise ModelError(f"no model family for input shape {input_shape}: give a model file "
                             "(baseline.model_path) for inputs that are not (features,), "
                             "(length, channels) or (h, w, c)")
    if family == "mlp":
        return build_mlp(input_shape, num_classes, width=width, depth=depth, growth=growth,
                         dense_units=dense_units, dropout=dropout, softmax=softmax,
                         bn_momentum=bn_momentum, name=name)
    if family == "cnn1d" and len(input_shape) != 2:
        raise ModelError(f"cnn1d needs inputs of shape (length, channels), got {input_shape}")
    if family == "cnn2d" and len(input_shape) != 3:
        raise ModelError(f"cnn2d needs inputs of shape (height, width, channels), got {input_shape}")

    inputs = keras.Input(shape=input_shape, name="input")
    h = inputs
    if family == "cnn1d":
        h = keras.layers.Reshape((input_shape[0], 1, input_shape[1]), name="as_2d")(h)
    spatial = [int(h.shape[1]), int(h.shape[2])]
    for i in range(depth):
        filters = max(1, int(round(width * growth ** i)))
        kernel = (kernel_size, 1) if family == "cnn1d" else (kernel_size, kernel_size)
        shrink = i >= downsample_from
        factor = [2 if (shrink and s >= 2) else 1 for s in spatial]
        if family == "cnn1d":
            factor[1] = 1
        strides = tuple(factor) if downsample == "stride" else (1, 1)
        h = keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                                name=f"conv{i}")(h)
        h = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"bn{i}")(h)
        h = keras.layers.ReLU(name=f"relu{i}")(h)
        if downsample == "pool" and any(f > 1 for f in factor):
            h = keras.layers.MaxPooling2D(tuple(factor), name=f"pool{i}")(h)
        spatial = [-(-s // f) for s, f in zip(spatial, factor)]
    h = keras.layers.Flatten(name="flatten")(h) if head == "flatten" else \
        keras.layers.GlobalAveragePooling2D(name="gap")(h)
    outputs = _head(h, num_classes, dense_units=dense_units, dropout=dropout, softmax=softmax)
    return keras.Model(inputs, outputs, name=name or f"{family}_w{width}_d{depth}")


#: ``family: auto`` by the rank of one sample's shape.
FAMILY_BY_RANK = {1: "mlp", 2: "cnn1d", 3: "cnn2d"}


def build_mlp(input_shape: tuple[int, ...], num_classes: int, *, width: int = 32, depth: int = 2,
              growth: float = 2.0, dense_units: int = 0, dropout: float = 0.0, softmax: bool = True,
              bn_momentum: float = 0.9, name: str | None = None) -> keras.Model:
    """``depth`` blocks Dense -> BatchNorm -> ReLU (``width * growth**i`` units), then the CNN head.

    For inputs of shape ``(features,)``: tabular data, hand-made features. The Dense layers have
    no bias (BatchNorm's beta is the bias; BatchNorm folds into the Dense on export, as into the
    convolutions of the CNN blocks).
    """
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 1:
        raise ModelError(f"mlp needs inputs of shape (features,), got {input_shape}")
    inputs = keras.Input(shape=input_shape, name="input")
    h = inputs
    for i in range(depth):
        units = max(1, int(round(width * growth ** i)))
        h = keras.layers.Dense(units, use_bias=False, name=f"dense{i}")(h)
        h = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"bn{i}")(h)
        h = keras.layers.ReLU(name=f"relu{i}")(h)
    outputs = _head(h, num_classes, dense_units=dense_units, dropout=dropout, softmax=softmax)
    return keras.Model(inputs, outputs, name=name or f"mlp_w{width}_d{depth}")


def _head(h, num_classes: int, *, dense_units: int, dropout: float, softmax: bool):
    """Dropout, an optional hidden Dense, the ``classifier`` Dense and a separate ``Softmax`` layer."""
    if dropout > 0:
        h = keras.layers.Dropout(dropout, name="dropout")(h)
    if dense_units > 0:
        h = keras.layers.Dense(dense_units, activation="relu", name="hidden")(h)
        if dropout > 0:
            h = keras.layers.Dropout(dropout, name="dropout_hidden")(h)
    outputs = keras.layers.Dense(num_classes, name="classifier")(h)
    if softmax:  # a layer of its own, so export can cut it off (see without_softmax)
        outputs = keras.layers.Softmax(name="softmax")(outputs)
    return outputs


def ends_in_softmax(model: keras.Model) -> bool:
    """Whether the model outputs probabilities (a final Softmax layer or softmax activation)."""
    last = model.layers[-1]
    inner = getattr(last, "layer", last)  # QuantizeWrapper / pruning wrapper -> the wrapped layer
    if isinstance(inner, keras.layers.Softmax):
        return True
    activation = getattr(inner, "activation", None)
    return getattr(activation, "__name__", "") == "softmax"


def without_softmax(model: keras.Model) -> keras.Model:
    """The same model ending at the logits, if it ends in a separate ``Softmax`` layer (also QAT-wrapped).

    Argmax does not need the softmax: a device that only classifies can skip it, and the raw logits
    show every difference between two runtimes (a saturated int8 softmax hides most of them).
    Models that fold softmax into their last Dense layer are returned unchanged.
    """
    last = model.layers[-1]
    inner = getattr(last, "layer", last)  # QuantizeWrapper -> the wrapped layer
    if isinstance(inner, keras.layers.Softmax) or (
            isinstance(inner, keras.layers.Activation) and inner.get_config().get("activation") == "softmax"):
        # A layer shared by several models (clone_model reuses unwrapped layers) has one inbound
        # node per model: take the one in this model's graph (key format of tf_keras'
        # functional._make_node_key).
        for index in range(len(last._inbound_nodes)):
            if f"{last.name}_ib-{index}" in getattr(model, "_network_nodes", ()):
                return keras.Model(model.inputs, last.get_input_at(index), name=f"{model.name}_logits")
    return model


def load_user_model(path: str | Path, trust_code: bool = False, check_data=None) -> keras.Model:
    """Load a user's model (``.keras``, ``.h5`` or a SavedModel folder) as tf-keras, one-line errors.

    Unless ``trust_code`` (``baseline.trust_model_code``), no code from the file runs: its config
    is checked first (:func:`pipeline.model_files.sniff_model_file`: no Lambda, no module to
    import, only tf-keras' own layers) and ``.keras`` files load in Keras' safe mode. With
    ``trust_code`` a tf-keras file loads as Keras would load it, Lambda layers included. A Keras 3
    ``.keras`` (or ``.h5``) file is rebuilt as tf-keras and checked on ``check_data``
    (:func:`pipeline.keras3_import.import_user_model`, which also returns what was checked).
    """
    return import_user_model(path, check_data, trust_code=trust_code)[0]


def check_model_fits(model: keras.Model, input_shape: tuple[int, ...], num_classes: int, source: str) -> None:
    """A user model must take the data's samples and output one score per class."""
    got_in = tuple(model.input_shape[1:]) if not isinstance(model.input_shape, list) else None
    if got_in is None or got_in != tuple(input_shape):
        raise ModelError(f"{source}: model input shape {model.input_shape} does not match the data's "
                         f"samples {tuple(input_shape)}")
    out = model.output_shape
    if isinstance(out, list) or out[-1] != num_classes:
        raise ModelError(f"{source}: model output shape {out} does not have {num_classes} classes")
