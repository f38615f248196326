"""One rung of the search ladder: narrow, (prune,) cluster, cluster-preserving QAT, int8.

:func:`train_candidate` turns the float baseline and a :class:`~pipeline.search_config.SearchStep`
into an int8 ``.tflite`` (uncompressed: TFLM compression is applied by the caller, so the same int8
weights can be stored several ways and compared). Each step is a library's own method:

- narrowing (structured pruning) is :mod:`pipeline.structured_prune` — TF-MOT has none — and the
  narrower model learns from the baseline by distillation (:mod:`pipeline.distill`);
- unstructured pruning is TF-MOT ``prune_low_magnitude`` (:mod:`pipeline.prune`);
- clustering is TF-MOT ``cluster_weights``, sparsity-preserving after pruning, and the QAT that
  follows is ``Default8BitClusterPreserveQuantizeScheme`` so int8 keeps the few values per channel
  that TFLM's look-up-table compression stores (:mod:`pipeline.cluster`).

:func:`candidate_key` fingerprints everything a candidate depends on, so a budget change re-uses
trained candidates instead of training them again.
"""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np

logger = logging.getLogger(__name__)


def candidate_key(step, search, export, seed: int, baseline_sha256: str) -> str:
    """A hash of what the int8 model of ``step`` depends on (not the budget, not the goal)."""
    training = search.model_dump(mode="json", exclude={"steps", "compression", "stop_early"})
    blob = json.dumps({"step": step.model_dump(mode="json"), "training": training, "seed": seed,
                       "baseline": baseline_sha256, "rep": export.representative_samples,
                       "strip": export.strip_strings, "drop_softmax": export.drop_softmax},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train_candidate(baseline, step, data, search, export, *, seed: int) -> tuple[bytes, dict]:
    """The int8 ``.tflite`` of one ladder step and what was done to get it (JSON-able)."""
    from pipeline.export import convert, representative_samples
    from pipeline.keras_env import set_seed
    from pipeline.progress import console
    from pipeline.train import fit_classifier

    set_seed(seed)
    info: dict = {"step": step.model_dump(mode="json")}
    name = step.label
    model = baseline
    if step.width < 1.0:
        from pipeline.structured_prune import fine_tune, narrow_model

        model, widths = narrow_model(baseline, keep=step.width)
        info["narrowing"] = widths
        console.print(f"  {name}: {widths['parameters_before']:,} -> {widths['parameters_after']:,} "
                      f"parameters; fine-tuning{' from the baseline (distillation)' if search.distill else ''}")
        fine_tune(model, data, teacher=baseline if search.distill else None,
                  epochs=search.fine_tune_epochs, batch_size=search.batch_size,
                  learning_rate=search.learning_rate, label=f"{name} fine-tune")
    if step.sparsity:
        from pipeline.prune import prune_model

        model, pruned = prune_model(model, data, target_sparsity=step.sparsity, epochs=search.prune_epochs,
                                    batch_size=search.batch_size, learning_rate=search.learning_rate / 2,
                                    label=f"{name} prune")
        info["kernel_sparsity"] = pruned["kernel_sparsity"]
    sparse = bool(step.sparsity)
    if step.clusters:
        from pipeline.cluster import cluster_model, make_cqat_model

        model, clustered = cluster_model(model, data, clusters=step.clusters, preserve_sparsity=sparse,
                                         epochs=search.cluster_epochs, batch_size=search.batch_size,
                                         learning_rate=search.learning_rate / 4, label=f"{name} cluster")
        info["clustering"] = {k: v for k, v in clustered.items() if k != "history"}
        qat = make_cqat_model(model, preserve_sparsity=sparse)
        method = "pcqat" if sparse else "cqat"
    else:
        from pipeline.quantize import make_qat_model

        qat = make_qat_model(model, preserve_sparsity=sparse)
        method = "pqat" if sparse else "qat"
    fit_classifier(qat, data, epochs=search.qat_epochs, batch_size=search.batch_size,
                   learning_rate=search.learning_rate / 8, label=f"{name} {method}")
    info["method"] = method
    info["parameters"] = int(model.count_params())
    rep = representative_samples(data.x_train, export.representative_samples, seed)
    int8 = convert(qat, "int8", rep, strip=export.strip_strings, drop_softmax=export.drop_softmax)
    logger.debug("search: %s converted, %d B uncompressed", name, len(int8))
    return int8, info


def selection_split(data, select_on: str) -> tuple[np.ndarray, np.ndarray]:
    """The samples whose accuracy decides: the val split, or test when asked (or val is empty)."""
    if select_on == "val" and len(data.x_val):
        return data.x_val, data.y_val
    return data.x_test, data.y_test
