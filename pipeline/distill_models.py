"""The two models of distillation: the student (built or loaded), the teacher, their compatibility,
and the compression of the distilled student (prune -> QAT, with or without the teacher).

Used by the ``distill`` stage (:mod:`pipeline.distill_stage`); usable alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from tinyfarm.errors import ConfigError


def student_builder(config, data) -> tuple[Callable[[], "object"], dict]:
    """A function returning a fresh **logits** student (initialised from the current seed), and a
    description of it. Multipliers scale the baseline CNN; a model file gives the architecture."""
    from pipeline.distill import as_logits_model
    from pipeline.keras_env import keras
    from pipeline.keras_models import build_cnn, load_user_model

    spec, base = config.distill.student, config.baseline
    if spec.model_path is not None:
        user_model = load_user_model(spec.model_path, trust_code=base.trust_model_code)
        template = as_logits_model(user_model, probe=data.x_train[:16])

        def from_file():
            # The file gives the architecture; weights are drawn from the seed, so the scratch and
            # distilled students start from the same point.
            return keras.models.clone_model(template)

        return from_file, {"model_path": str(spec.model_path)}
    if base.model_path is not None:
        raise ConfigError("distill.student: width/depth multipliers scale the baseline CNN, but the "
                          "baseline is a model file; give distill.student.model_path")
    width = max(1, int(round(base.width * spec.width_multiplier)))
    depth = max(1, int(round(base.depth * spec.depth_multiplier)))
    dense = max(1, int(round(base.dense_units * spec.width_multiplier))) if base.dense_units else 0
    kwargs = dict(family=base.family, width=width, depth=depth, growth=base.growth,
                  kernel_size=base.kernel_size, downsample=base.downsample,
                  downsample_from=base.downsample_from, head=base.head, dense_units=dense,
                  dropout=base.dropout)

    def from_multipliers():
        return build_cnn(data.input_shape, data.num_classes, softmax=False,
                         name=f"student_w{width}_d{depth}", **kwargs)

    return from_multipliers, {"width": width, "depth": depth, "dense_units": dense,
                              "width_multiplier": spec.width_multiplier,
                              "depth_multiplier": spec.depth_multiplier}


def load_teacher(config, baseline_model_path: Path | None):
    """The teacher as it was trained (softmax or logits): the pipeline's baseline or a model file."""
    from pipeline.keras_env import keras
    from pipeline.keras_models import load_user_model

    path = config.distill.teacher_path()
    if path is not None:
        return load_user_model(path, trust_code=config.baseline.trust_model_code), str(path)
    if baseline_model_path is None or not Path(baseline_model_path).is_file():
        raise ConfigError("distill.teacher: 'baseline' needs the baseline stage's model, which is missing")
    return keras.models.load_model(baseline_model_path, compile=False), "baseline"


def check_compatible(teacher, student, data, teacher_source: str) -> None:
    """Teacher and student must read the same samples and score the same classes (one line if not)."""
    t_out, s_out = int(teacher.output_shape[-1]), int(student.output_shape[-1])
    if t_out != s_out:
        raise ConfigError(f"distill: the teacher ({teacher_source}) has {t_out} outputs but the student "
                          f"has {s_out}; they must match")
    if t_out != data.num_classes:
        raise ConfigError(f"distill: the teacher ({teacher_source}) has {t_out} outputs but the data set "
                          f"has {data.num_classes} classes")
    for who, model in (("teacher", teacher), ("student", student)):
        if tuple(model.input_shape[1:]) != tuple(data.input_shape):
            raise ConfigError(f"distill: the {who} takes inputs of shape {tuple(model.input_shape[1:])}, "
                              f"the data's samples are {tuple(data.input_shape)}")


def compress_student(student_probs, data, config, *, teacher_train=None, teacher_val=None,
                     teacher=None, label: str = "student") -> tuple[object, object, dict]:
    """Prune -> (pruning-preserving) QAT the distilled student; returns (pruned, QAT model, summary).

    ``distill.compress_loss: labels`` runs the pipeline's own :func:`pipeline.prune.prune_model` and
    :func:`pipeline.quantize.quantization_aware_training` (hard labels). ``distillation`` (default)
    keeps the teacher during both fine-tunings — fine-tuning on hard labels alone pulls the student
    back towards what it learns from scratch and gives away much of the gain: the same
    :func:`~pipeline.prune.prune_model` with a distillation ``fit``, then the pipeline's QAT
    wrapping fine-tuned by distillation. Settings come from the ``prune``/``quantize`` sections
    (their ``enabled``/``qat`` flags only switch the baseline's chain).
    """
    from pipeline.distill import as_logits_model, fit_distiller
    from pipeline.prune import prune_kwargs, prune_model
    from pipeline.quantize import make_qat_model, quantization_aware_training

    d, p, q = config.distill, config.prune, config.quantize
    qat_label = f"{label} pqat" if q.preserve_sparsity else f"{label} qat"
    if d.compress_loss == "labels":
        pruned, info = prune_model(student_probs, data, **prune_kwargs(p), label=f"{label} prune")
        qat, _ = quantization_aware_training(
            pruned, data, preserve_sparsity=q.preserve_sparsity, epochs=q.epochs, batch_size=q.batch_size,
            learning_rate=q.learning_rate, early_stopping_patience=q.early_stopping_patience, label=qat_label)
        return pruned, qat, {"kernel_sparsity": info["kernel_sparsity"], "schedule": info["schedule"],
                             "preserve_sparsity": q.preserve_sparsity, "loss": "labels"}

    soft = {"teacher": teacher} if teacher is not None else {"teacher_train": teacher_train,
                                                             "teacher_val": teacher_val}
    common = dict(temperature=d.temperature, alpha=d.alpha, monitor=d.monitor, mixup=d.mixup, **soft)

    def distill_fit(wrapped, callbacks: list) -> dict:
        _, history = fit_distiller(
            as_logits_model(wrapped), data.x_train, data.y_train, data.x_val, data.y_val,
            epochs=p.epochs, batch_size=p.batch_size, learning_rate=p.learning_rate,
            early_stopping_patience=p.early_stopping_patience, callbacks=callbacks,
            label=f"{label} prune", **common)
        return history

    pruned, info = prune_model(student_probs, data, **prune_kwargs(p), label=f"{label} prune",
                               fit=distill_fit)
    qat = make_qat_model(pruned, preserve_sparsity=q.preserve_sparsity)
    fit_distiller(as_logits_model(qat), data.x_train, data.y_train, data.x_val, data.y_val,
                  epochs=q.epochs, batch_size=q.batch_size, learning_rate=q.learning_rate,
                  early_stopping_patience=q.early_stopping_patience, label=qat_label, **common)
    return pruned, qat, {"kernel_sparsity": info["kernel_sparsity"], "schedule": info["schedule"],
                         "preserve_sparsity": q.preserve_sparsity, "loss": "distillation"}
