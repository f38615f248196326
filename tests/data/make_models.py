"""Regenerate the suite's own models, so that no test that only needs "some model" depends on the
third-party models in ``../shared/models`` (those stay for the conformance tests).

=======================  ========================================================================
``sine_int8.tflite``     the role of TFLM's hello_world_int8: sin(x) on [0, 2*pi] from a 16-16-1
                         MLP, int8 in and out (shape (1, 1)), three FULLY_CONNECTED ops
``sine_float.tflite``    the same trained model as float32 (three float FULLY_CONNECTED ops)
``conv_int8.tflite``     the role of micro_speech_quantized: a 4-class int8 classifier of a
                         (1, 1960) int8 input reshaped to 49x40x1, DEPTHWISE_CONV_2D (10x8 kernel,
                         stride 2, 8 channels) + FULLY_CONNECTED + SOFTMAX: its tensors are larger
                         than one 4 KB protocol payload and it has several ops
``var_int8.tflite``      a stateful model: a tf.Variable ``s`` (1, 8) updated in a tf.function,
                         ``s = 0.5 * s + x @ W``, output ``s``, converted with resource variables:
                         CALL_ONCE (its init subgraph: VAR_HANDLE + ASSIGN_VARIABLE), VAR_HANDLE,
                         READ_VARIABLE, ASSIGN_VARIABLE around int8 MUL, FULLY_CONNECTED, ADD (the
                         variable stays float32: QUANTIZE/DEQUANTIZE); int8 in and out, (1, 8). The
                         same input invoked again gives another output
``var_float.tflite``     the same as float32 (no QUANTIZE/DEQUANTIZE)
``signal_int16.tflite``  TFLM's 14 signal-library custom operators (SignalWindow ... SignalDelay),
                         written as a flatbuffer by ``make_signal_model.py`` (its docstring says
                         how): int16 (128,) in, int16 (30,) and (128,) out, stateful
=======================  ========================================================================

Trained with tf_keras on synthetic data with fixed seeds (``SEED``) and TensorFlow's op
determinism on, then converted with the TFLite converter (the variable models: weights drawn, not
trained; the signal model: no TensorFlow, no randomness); ``models.json`` records the seed, the
versions used and each file's size and SHA-256.

    python tests/data/make_models.py           # rewrite the .tflite files and models.json
    python tests/data/make_models.py --check   # regenerate in memory, compare with the committed files

With the versions in ``models.json`` the output is byte-identical run to run on this machine; other
CPU types or TensorFlow versions may round training differently (different bytes, same roles).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # no oneDNN: its float rounding varies more

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
from make_signal_model import signal_model  # noqa: E402  (beside this script: sys.path[0])

HERE = Path(__file__).resolve().parent
SEED = 0


def _seed() -> None:
    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()


def _int8(model, representative) -> bytes:
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[None]] for x in representative)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    return conv.convert()


def _batch_one(layers, input_shape, trained):
    """The trained model's layers again behind a batch-1 input (fixed shapes in the .tflite)."""
    model = keras.Sequential([keras.Input(input_shape, batch_size=1, name="x"), *layers],
                             name=trained.name)
    model.set_weights(trained.get_weights())
    return model


def sine_models() -> dict[str, bytes]:
    _seed()
    rng = np.random.default_rng(SEED)
    x = rng.uniform(0, 2 * np.pi, (2000, 1)).astype(np.float32)
    y = np.sin(x)

    def layers():
        return [keras.layers.Dense(16, activation="relu", name="fc1"),
                keras.layers.Dense(16, activation="relu", name="fc2"), keras.layers.Dense(1, name="fc3")]

    model = keras.Sequential([keras.Input((1,), name="x"), *layers()], name="sine")
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    model.fit(x, y, epochs=150, batch_size=64, shuffle=True, verbose=0)
    model.optimizer.learning_rate.assign(0.001)
    model.fit(x, y, epochs=100, batch_size=64, shuffle=True, verbose=0)
    one = _batch_one(layers(), (1,), model)
    representative = np.linspace(0, 2 * np.pi, 500, dtype=np.float32).reshape(-1, 1)
    return {"sine_int8": _int8(one, representative),
            "sine_float": tf.lite.TFLiteConverter.from_keras_model(one).convert()}


def _spectrograms(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise with a brighter band of 10 of the 40 columns: the band is the class (4 classes)."""
    y = rng.integers(0, 4, n)
    x = rng.normal(0.0, 1.0, (n, 49, 40)).astype(np.float32)
    for i, c in enumerate(y):
        x[i, :, 10 * c: 10 * c + 10] += 0.1
    return x.reshape(n, 1960), y


def conv_model() -> bytes:
    _seed()
    rng = np.random.default_rng(SEED + 1)
    x, y = _spectrograms(rng, 800)

    def layers():
        return [keras.layers.Reshape((49, 40, 1), name="image"),
                keras.layers.DepthwiseConv2D((10, 8), strides=2, depth_multiplier=8, padding="same",
                                             activation="relu", name="dwconv"),
                keras.layers.Flatten(name="flat"), keras.layers.Dense(4, name="fc"),
                keras.layers.Softmax(name="probs")]

    model = keras.Sequential([keras.Input((1960,), name="x"), *layers()], name="conv")
    model.compile(optimizer=keras.optimizers.Adam(0.002), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, epochs=8, batch_size=32, shuffle=True, verbose=0)
    one = _batch_one(layers(), (1960,), model)
    return _int8(one, x[:100])


class _Stateful(tf.Module):
    """``s = 0.5 * s + x @ w`` in a tf.Variable: the converter turns it into resource-variable ops."""

    def __init__(self, w: np.ndarray) -> None:
        super().__init__(name="stateful")
        self.w = tf.constant(w)
        self.s = tf.Variable(tf.zeros((1, w.shape[1])), name="state")

    @tf.function(input_signature=[tf.TensorSpec((1, 8), tf.float32, name="x")])
    def step(self, x):
        self.s.assign(0.5 * self.s + tf.matmul(x, self.w))
        return self.s.read_value()


def var_models() -> dict[str, bytes]:
    _seed()
    rng = np.random.default_rng(SEED + 2)
    w = rng.normal(0.0, 0.5, (8, 8)).astype(np.float32)
    representative = rng.uniform(-1.0, 1.0, (100, 1, 8)).astype(np.float32)

    def convert(int8: bool) -> bytes:
        module = _Stateful(w)
        conv = tf.lite.TFLiteConverter.from_concrete_functions([module.step.get_concrete_function()], module)
        conv.experimental_enable_resource_variables = True
        if int8:  # calibration runs the samples in order: the state's range is in the ranges
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: ([x] for x in representative)
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = conv.inference_output_type = tf.int8
        return conv.convert()

    return {"var_int8": convert(True), "var_float": convert(False)}


def build() -> dict[str, bytes]:
    return {**sine_models(), "conv_int8": conv_model(), **var_models(), "signal_int16": signal_model()}


def record(models: dict[str, bytes]) -> dict:
    return {
        "generator": "tests/data/make_models.py",
        "seeds": {"keras (initial weights, shuffling)": SEED, "sine training data": SEED,
                  "conv training and representative data": SEED + 1,
                  "variable model weights and representative data": SEED + 2},
        "versions": {"tensorflow": tf.__version__, "tf-keras": keras.__version__, "numpy": np.__version__,
                     "python": platform.python_version(),
                     # the signal model's writer: the flatbuffers package and the wheel's schema
                     "flatbuffers": metadata.version("flatbuffers"),
                     "tflite-micro": metadata.version("tflite-micro")},
        "env": {k: os.environ[k] for k in ("TF_USE_LEGACY_KERAS", "TF_ENABLE_ONEDNN_OPTS")},
        "models": {f"{name}.tflite": {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                   for name, data in models.items()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="regenerate and compare with the committed files; write nothing")
    args = ap.parse_args(argv)
    models = build()
    if args.check:
        differ = [n for n, d in models.items() if (HERE / f"{n}.tflite").read_bytes() != d]
        for name in differ:
            print(f"{name}.tflite differs from the committed file", file=sys.stderr)
        print("byte-identical" if not differ else "different", file=sys.stderr)
        return 1 if differ else 0
    for name, data in models.items():
        (HERE / f"{name}.tflite").write_bytes(data)
        print(f"wrote {name}.tflite ({len(data)} bytes)")
    (HERE / "models.json").write_text(json.dumps(record(models), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
