"""Weight clustering and cluster-preserving QAT (CQAT) with TF-MOT.

Clustering replaces each kernel's weights by ``clusters`` shared values (k-means++ initialised
centroids, fine-tuned); on a pruned model ``preserve_sparsity`` keeps the zeros at zero. After
int8 conversion a clustered kernel still has at most ``clusters`` distinct values per output
channel (BatchNorm folding and per-channel quantization scale each channel as a whole), which TFLM's
look-up-table compression stores as ``log2(clusters)``-bit indices plus a small value table per
channel: :func:`pipeline.tflm_compress.compress_weights` does that to a ``.tflite`` (the file
then has DECODE operators).

Order: (prune ->) :func:`cluster_model` -> :func:`make_cqat_model` + fine-tuning (or
:func:`cluster_qat`) -> :func:`pipeline.export.convert` (``int8``) -> ``compress_weights``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.keras_env import keras, tfmot
from pipeline.prune import PRUNABLE, kernel_sparsity
from pipeline.quantize import make_qat_model
from pipeline.train import fit_classifier
from tinyfarm.errors import ModelError

clustering = tfmot.clustering.keras


def unique_values_per_layer(model: keras.Model) -> dict[str, int]:
    """Distinct values in each conv/dense kernel of a (stripped) Keras model."""
    return {layer.name: int(np.unique(layer.get_weights()[0]).size)
            for layer in model.layers if isinstance(layer, PRUNABLE)}


def cluster_model(model: keras.Model, splits: Any, *, clusters: int, preserve_sparsity: bool = True,
                  epochs: int, batch_size: int, learning_rate: float, label: str = "cluster",
                  early_stopping_patience: int | None = None,
                  fit: Callable[[keras.Model, list], dict] | None = None) -> tuple[keras.Model, dict]:
    """Cluster every conv/dense kernel to ``clusters`` values, fine-tune, strip; the input is unchanged.

    ``fit(wrapped_model, callbacks) -> history`` replaces the fine-tuning on hard labels
    (:func:`pipeline.train.fit_classifier`), as in :func:`pipeline.prune.prune_model`; clustering
    needs no callback of its own (TF-MOT's ``ClusteringSummaries`` is only TensorBoard logging), so
    ``callbacks`` is empty, but a ``fit`` must still pass it on. Returns the stripped model and
    ``{"clusters", "preserve_sparsity", "unique_values_per_layer", "kernel_sparsity", "history",
    "seconds"}``.
    """
    if clusters < 2:
        raise ModelError(f"clustering needs at least 2 clusters, got {clusters}")
    start = time.perf_counter()
    copy = keras.models.clone_model(model)  # the wrappers train the weights they wrap: a copy
    copy.set_weights(model.get_weights())
    kwargs = dict(number_of_clusters=int(clusters), preserve_sparsity=preserve_sparsity,
                  cluster_centroids_init=clustering.CentroidInitialization.KMEANS_PLUS_PLUS)
    skipped: list[str] = []

    def wrap(layer: keras.layers.Layer) -> keras.layers.Layer:
        # k-means++ needs more points than centroids (per sign, after pruning): a kernel with few
        # (non-zero) weights is left as it is — clustering it would save a few bytes at best.
        # With preserve_sparsity the positive and negative weights are clustered apart. A skipped
        # layer is frozen meanwhile, so its pruned zeros stay zero.
        if isinstance(layer, PRUNABLE):
            kernel = layer.get_weights()[0]
            points = (min(np.count_nonzero(kernel > 0), np.count_nonzero(kernel < 0))
                      if preserve_sparsity else kernel.size)
            if points >= clusters:
                return clustering.cluster_weights(layer, **kwargs)
            skipped.append(layer.name)
            layer.trainable = not preserve_sparsity
        return layer

    wrapped = keras.models.clone_model(copy, clone_function=wrap)  # TF-MOT's per-layer way
    if fit is None:
        def fit(wrapped_model: keras.Model, callbacks: list) -> dict:
            return fit_classifier(wrapped_model, splits, epochs=epochs, batch_size=batch_size,
                                  learning_rate=learning_rate, label=label,
                                  early_stopping_patience=early_stopping_patience, callbacks=callbacks)

    history = fit(wrapped, [])
    stripped = clustering.strip_clustering(wrapped)
    for layer in stripped.layers:
        if layer.name in skipped:
            layer.trainable = True
    return stripped, {"clusters": int(clusters), "preserve_sparsity": preserve_sparsity,
                      "not_clustered": skipped,
                      "unique_values_per_layer": unique_values_per_layer(stripped),
                      "kernel_sparsity": kernel_sparsity(stripped), "history": history,
                      "seconds": round(time.perf_counter() - start, 3)}


def cqat_scheme(preserve_sparsity: bool = True) -> object:
    """TF-MOT's 8-bit scheme that keeps clustered weights clustered (and zeros zero) during QAT."""
    return tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(
        preserve_sparsity=preserve_sparsity)


def _reloaded(model: keras.Model) -> keras.Model:
    """The model saved to a temporary ``.keras`` file and loaded back (fresh layers, same weights)."""
    with tempfile.TemporaryDirectory(prefix="tinyfarm_cqat_") as tmp:
        tmp_file = Path(tmp) / "model.keras"  # scratch in a private folder, not a result
        model.save(tmp_file)
        return keras.models.load_model(tmp_file, compile=False)


def make_cqat_model(model: keras.Model, *, preserve_sparsity: bool = True) -> keras.Model:
    """Wrap a stripped clustered model for cluster-preserving QAT; the input model is unchanged.

    This is :func:`pipeline.quantize.make_qat_model` with :func:`cqat_scheme`. After
    ``cluster_weights`` on a pruned model, ``quantize_apply`` can fail with "Unable to clone
    model" (layers still carrying state of the wrappers they were stripped from); a model saved to
    a ``.keras`` file and loaded back has plain layers, so that is tried once before giving up.
    """
    try:
        return make_qat_model(model, preserve_sparsity=preserve_sparsity,
                              scheme=cqat_scheme(preserve_sparsity))
    except ValueError as exc:
        if "Unable to clone model" not in str(exc):
            raise
    return make_qat_model(_reloaded(model), preserve_sparsity=preserve_sparsity,
                          scheme=cqat_scheme(preserve_sparsity))


def cluster_qat(model: keras.Model, splits: Any, *, preserve_sparsity: bool = True, epochs: int,
                batch_size: int, learning_rate: float, label: str = "cqat",
                early_stopping_patience: int | None = None,
                fit: Callable[[keras.Model, list], dict] | None = None) -> tuple[keras.Model, dict]:
    """CQAT fine-tuning of a stripped clustered model; returns the QAT model (convert it with
    :func:`pipeline.export.convert`, kind ``int8``) and ``{"history", "preserve_sparsity",
    "seconds"}``. ``fit`` as in :func:`cluster_model` (e.g. distillation)."""
    start = time.perf_counter()
    qat = make_cqat_model(model, preserve_sparsity=preserve_sparsity)
    if fit is None:
        history = fit_classifier(qat, splits, epochs=epochs, batch_size=batch_size,
                                 learning_rate=learning_rate, label=label,
                                 early_stopping_patience=early_stopping_patience)
    else:
        history = fit(qat, [])
    return qat, {"history": history, "preserve_sparsity": preserve_sparsity,
                 "seconds": round(time.perf_counter() - start, 3)}
