"""Import TensorFlow the way TF-MOT needs it (Keras 2 via tf-keras), once, quietly.

Every pipeline module gets ``tf``, ``keras`` (tf_keras) and ``tfmot`` from here so that
``TF_USE_LEGACY_KERAS`` is always set before the first TensorFlow import, whoever imports first.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tinyfarm.native_stderr import native_stderr_held  # noqa: E402

with native_stderr_held():  # absl/cudart start-up lines, and cuInit's failure on a GPU-less host
    import absl.logging
    import tensorflow as tf
    import tf_keras as keras
    import tensorflow_model_optimization as tfmot

    tf.config.list_physical_devices()  # device discovery now, not at the first layer built

absl.logging.set_verbosity(absl.logging.ERROR)
tf.get_logger().setLevel("ERROR")

__all__ = ["tf", "keras", "tfmot", "set_seed"]


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow (``tf_keras.utils.set_random_seed``)."""
    keras.utils.set_random_seed(int(seed))
