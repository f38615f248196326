"""The training stages: ``baseline``, ``prune``, ``quantize`` — thin wiring from the stage functions
(:mod:`pipeline.keras_models`, :mod:`pipeline.train`, :mod:`pipeline.prune`, :mod:`pipeline.quantize`,
all usable alone) to files in the run folder.

Each ``run_*`` takes a :class:`~pipeline.run_context.StageContext` and returns a JSON-able summary.
A trained Keras model is published as the artifact ``"model"`` of its stage; later stages load it
with :func:`load_stage_model` (``ctx.artifact(stage, "model")``), never by its path.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.run_context import StageContext
from tinyfarm.atomic_files import atomic_path, write_bytes

logger = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
MODEL = "model"  # the artifact name of a stage's trained Keras model


def save_stage_model(ctx: StageContext, model, name: str = MODEL_FILE, artifact: str = MODEL) -> Path:
    """Save ``model`` in the stage's folder and publish it as the artifact ``artifact``."""
    path = ctx.stage_dir / name
    with atomic_path(path) as tmp:
        model.save(tmp)
    logger.debug("%s: wrote %s", ctx.name, path)
    return ctx.output(path, name=artifact)


def load_stage_model(ctx: StageContext, stage: str):
    """The Keras model stage ``stage`` published as its ``"model"`` artifact."""
    from pipeline.keras_env import keras

    return keras.models.load_model(ctx.artifact(stage, MODEL), compile=False)


def run_baseline(ctx: StageContext) -> dict:
    """Stage 1: build (or load) and train the float model."""
    from pipeline.keras_env import set_seed
    from pipeline.keras3_import import import_user_model
    from pipeline.keras_models import build_cnn, check_model_fits
    from pipeline.train import fit_classifier, keras_accuracy

    cfg, data = ctx.section, ctx.data()
    set_seed(ctx.seed)
    if cfg.model_path is not None:
        # A Keras 3 file is rebuilt as tf-keras and checked against the original on the test split.
        model, imported = import_user_model(cfg.model_path, x_check=data.x_test, trust_code=cfg.trust_model_code)
        check_model_fits(model, data.input_shape, data.num_classes, str(cfg.model_path))
        source = {"model_path": str(cfg.model_path), "import": imported}
        if imported.get("source") == "keras3":
            from pipeline.progress import console

            console.print(f"  rebuilt the Keras {imported['keras_version']} model as tf-keras: "
                          f"{imported['layers']} layers, outputs match the original on "
                          f"{imported['checked_samples']} test samples (max |diff| {imported['max_abs_diff']:.2g})")
    else:
        model = build_cnn(data.input_shape, data.num_classes, family=cfg.family, width=cfg.width,
                          depth=cfg.depth, growth=cfg.growth, kernel_size=cfg.kernel_size,
                          downsample=cfg.downsample, downsample_from=cfg.downsample_from,
                          head=cfg.head, dense_units=cfg.dense_units, dropout=cfg.dropout)
        source = {"family": model.name}
    history: dict = {}
    if cfg.train:
        history = fit_classifier(model, data, epochs=cfg.epochs, batch_size=cfg.batch_size,
                                 learning_rate=cfg.learning_rate, label="baseline",
                                 early_stopping_patience=cfg.early_stopping_patience)
    path = save_stage_model(ctx, model)
    return {**source, "parameters": int(model.count_params()),
            "epochs_run": len(history.get("loss", [])),
            "val_accuracy": max(history["val_accuracy"]) if history.get("val_accuracy") else None,
            "keras_test_accuracy": keras_accuracy(model, data.x_test, data.y_test),
            "model": ctx.rel(path)}


def run_prune(ctx: StageContext) -> dict:
    """Stage 2: prune + fine-tune the baseline, strip the wrappers."""
    from pipeline.keras_env import set_seed
    from pipeline.prune import prune_kwargs, prune_model
    from pipeline.train import keras_accuracy

    cfg, data = ctx.section, ctx.data()
    set_seed(ctx.seed)
    model, info = prune_model(load_stage_model(ctx, "baseline"), data, **prune_kwargs(cfg))
    path = save_stage_model(ctx, model)
    info.pop("history", None)
    return {**info, "keras_test_accuracy": keras_accuracy(model, data.x_test, data.y_test),
            "model": ctx.rel(path)}


def _float_source(ctx: StageContext) -> str:
    return "prune" if ctx.result("prune") is not None else "baseline"


def run_quantize(ctx: StageContext) -> dict:
    """Stage 3: QAT (pruning-preserving after pruning), converted at once to an int8 variant."""
    from pipeline.export import convert, representative_samples
    from pipeline.keras_env import set_seed
    from pipeline.progress import console
    from pipeline.quantize import quantization_aware_training
    from pipeline.train import keras_accuracy

    cfg, data = ctx.section, ctx.data()
    set_seed(ctx.seed)
    source = _float_source(ctx)
    preserve = source == "prune" and cfg.preserve_sparsity
    qat, info = quantization_aware_training(
        load_stage_model(ctx, source), data, preserve_sparsity=preserve, epochs=cfg.epochs,
        batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
        early_stopping_patience=cfg.early_stopping_patience, label="pqat" if preserve else "qat")
    rep = representative_samples(data.x_train, ctx.config.export.representative_samples, ctx.seed)
    name = ("pruned_pqat_int8" if preserve else "pruned_qat_int8") if source == "prune" else "qat_int8"
    path = ctx.path(f"variants/{name}.tflite")
    path.parent.mkdir(parents=True, exist_ok=True)
    console.print(f"  converting {name}")
    write_bytes(path, convert(qat, "int8", rep, strip=ctx.config.export.strip_strings,
                              drop_softmax=ctx.config.export.drop_softmax))
    ctx.output(path)
    logger.debug("quantize: wrote %s", path)
    info.pop("history", None)
    return {**info, "source": source, "keras_test_accuracy": keras_accuracy(qat, data.x_test, data.y_test),
            "variants": [{"name": name, "kind": "int8", "path": ctx.rel(path), "source": source,
                          "method": "pqat" if preserve else "qat"}]}
