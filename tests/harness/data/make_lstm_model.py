"""Regenerate ``lstm_int8.tflite``: a tiny Keras LSTM converted to int8 with a fused
UNIDIRECTIONAL_SEQUENCE_LSTM op. On too small a tensor arena the host TFLM runtime segfaults while
allocating it (see /work/shared/ENVIRONMENT.md), which is exactly what the twin's fault handling is
tested with. Run: ``python tests/harness/data/make_lstm_model.py`` (seeded, needs TensorFlow).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

OUT = Path(__file__).with_name("lstm_int8.tflite")


def main() -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.layers.Input(shape=(8, 4), batch_size=1),
        keras.layers.LSTM(8),
        keras.layers.Dense(3),
    ])
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(32):
            yield [rng.standard_normal((1, 8, 4)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    OUT.write_bytes(converter.convert())
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
