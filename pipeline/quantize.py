"""Stage 3: quantization-aware training, pruning-preserving when the model was pruned.

Post-training quantization (int8, int16x8, dynamic range, float16) needs no training and happens at
conversion, in :mod:`pipeline.export`. QAT here fine-tunes with fake-quant ops; after pruning, the
``Default8BitPrunePreserveQuantizeScheme`` keeps the zeros at zero so sparsity survives into int8.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from pipeline.keras_env import keras, tfmot
from pipeline.train import fit_classifier
from tinyfarm_datasets import Splits

quant = tfmot.quantization.keras


def make_qat_model(model: keras.Model, *, preserve_sparsity: bool,
                   scheme: quant.QuantizeScheme | None = None) -> keras.Model:
    """Wrap a float (or stripped pruned) model for QAT; the input model is not modified.

    ``scheme`` (a TF-MOT ``QuantizeScheme``) replaces the one ``preserve_sparsity`` picks, e.g. the
    cluster-preserving scheme of :func:`pipeline.cluster.make_cqat_model`.
    """
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    annotated = quant.quantize_annotate_model(copy)
    if scheme is not None:
        return quant.quantize_apply(annotated, scheme)
    if preserve_sparsity:
        scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
        return quant.quantize_apply(annotated, scheme)
    return quant.quantize_apply(annotated)


def quantization_aware_training(model: keras.Model, splits: Splits, *, preserve_sparsity: bool,
                                epochs: int = 8, batch_size: int = 32, learning_rate: float = 3e-4,
                                early_stopping_patience: int | None = None,
                                label: str = "qat",
                                scheme: quant.QuantizeScheme | None = None) -> tuple[keras.Model, dict]:
    """QAT fine-tuning; returns the QAT model (convert it with :func:`pipeline.export.convert`).

    ``scheme`` as in :func:`make_qat_model`.
    """
    from pipeline.progress import console

    console.print(f"  {label}: wrapping the model for quantization-aware training")
    qat = make_qat_model(model, preserve_sparsity=preserve_sparsity, scheme=scheme)
    history = fit_classifier(qat, splits, epochs=epochs, batch_size=batch_size,
                             learning_rate=learning_rate, label=label,
                             early_stopping_patience=early_stopping_patience)
    return qat, {"history": history, "preserve_sparsity": preserve_sparsity}


@contextmanager
def qat_scope() -> Iterator[None]:
    """Custom objects needed to load a saved QAT model (``keras.models.load_model`` inside it)."""
    with quant.quantize_scope():
        yield
