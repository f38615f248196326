"""The ``distill`` stage: teacher -> student by distillation -> prune -> pruning-preserving QAT -> int8.

For every seed of ``distill.seeds`` the same student architecture is trained twice with the same
loop, epochs, optimizer and initial weights: from scratch (hard labels, ``alpha = 1``) and by
distillation. The distilled student is then pruned, fine-tuned with pruning-preserving QAT and
converted to int8 with the ``prune``/``quantize``/``export`` sections' settings — by default with
the teacher kept in both fine-tunings (:func:`compress_student`), built from the pipeline's pruning
schedule, QAT wrapping and :func:`pipeline.export.convert`; ``compress_loss: labels`` calls
:func:`pipeline.prune.prune_model` and :func:`pipeline.quantize.quantization_aware_training` as
they are. Every model is measured on the test split with LiteRT's reference kernels
(:func:`pipeline.evaluate.evaluate_tflite`), like every other variant.

The first seed's models are written as variants (evaluated again by the ``evaluate`` stage, TFLM
checked like the rest); the ``"distillation"`` object of ``report.json`` holds the accuracies of every
seed and their means. The stage runs after ``export`` so the deployable model stays the baseline's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from pipeline.runner import Stage, StageContext, register_stage
from pipeline.stages import MODEL_FILE
from tinyfarm.errors import ConfigError

VARIANTS = {
    "scratch": "student_scratch_float32",
    "distilled": "student_distilled_float32",
    "pruned": "student_distilled_pruned_float32",
    "compressed": "student_distilled_pruned_pqat_int8",
    "teacher": "teacher_float32",
}


def student_builder(config, data) -> tuple[Callable[[], "object"], dict]:
    """A function returning a fresh **logits** student (initialised from the current seed), and a
    description of it. Multipliers scale the baseline CNN; a model file gives the architecture."""
    from pipeline.distill import as_logits_model
    from pipeline.keras_env import keras
    from pipeline.models import build_cnn, load_user_model

    spec, base = config.distill.student, config.baseline
    if spec.model_path is not None:
        template = as_logits_model(load_user_model(spec.model_path), probe=data.x_train[:16])

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
    from pipeline.models import load_user_model

    path = config.distill.teacher_path()
    if path is not None:
        return load_user_model(path), str(path)
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


def _tflite_accuracy(model_bytes: bytes, data) -> dict:
    from pipeline.evaluate import evaluate_tflite

    metrics, _, _ = evaluate_tflite(model_bytes, data.x_test, data.y_test)
    return {k: metrics.as_dict()[k] for k in ("accuracy", "size_bytes", "sparsity", "parameter_count")}


def compress_student(student_probs, data, config, *, teacher_train=None, teacher_val=None,
                     teacher=None, label: str = "student") -> tuple[object, object, dict]:
    """Prune -> (pruning-preserving) QAT the distilled student; returns (pruned, QAT model, summary).

    ``distill.compress_loss: labels`` runs the pipeline's own :func:`pipeline.prune.prune_model` and
    :func:`pipeline.quantize.quantization_aware_training` (hard labels). ``distillation`` (default)
    keeps the teacher during both fine-tunings — fine-tuning on hard labels alone pulls the student
    back towards what it learns from scratch and gives away much of the gain — with the pipeline's
    pieces: its pruning schedule, prunable layer types and sparsity count, and its QAT wrapping.
    Settings come from the ``prune``/``quantize`` sections (their ``enabled``/``qat`` flags only
    switch the baseline's chain).
    """
    from pipeline.distill import as_logits_model, fit_distiller
    from pipeline.keras_env import keras, tfmot
    from pipeline.prune import PRUNABLE, kernel_sparsity, prune_model, pruning_schedule
    from pipeline.quantize import make_qat_model, quantization_aware_training
    from pipeline.train import steps_per_epoch

    d, p, q = config.distill, config.prune, config.quantize
    qat_label = f"{label} pqat" if q.preserve_sparsity else f"{label} qat"
    if d.compress_loss == "labels":
        pruned, info = prune_model(
            student_probs, data, schedule=p.schedule, initial_sparsity=p.initial_sparsity,
            target_sparsity=p.target_sparsity, m_by_n=p.m_by_n, epochs=p.epochs, batch_size=p.batch_size,
            learning_rate=p.learning_rate, ramp_fraction=p.ramp_fraction, frequency=p.frequency,
            exclude=p.exclude, early_stopping_patience=p.early_stopping_patience, label=f"{label} prune")
        qat, _ = quantization_aware_training(
            pruned, data, preserve_sparsity=q.preserve_sparsity, epochs=q.epochs, batch_size=q.batch_size,
            learning_rate=q.learning_rate, early_stopping_patience=q.early_stopping_patience, label=qat_label)
        return pruned, qat, {"kernel_sparsity": info["kernel_sparsity"], "schedule": info["schedule"],
                             "preserve_sparsity": q.preserve_sparsity, "loss": "labels"}

    soft = {"teacher": teacher} if teacher is not None else {"teacher_train": teacher_train,
                                                             "teacher_val": teacher_val}
    common = dict(temperature=d.temperature, alpha=d.alpha, monitor=d.monitor, mixup=d.mixup, **soft)
    sched, spec = pruning_schedule(
        p.schedule, initial_sparsity=p.initial_sparsity, target_sparsity=p.target_sparsity, epochs=p.epochs,
        steps_per_epoch=steps_per_epoch(len(data.x_train), p.batch_size), ramp_fraction=p.ramp_fraction,
        frequency=p.frequency)
    kwargs = {"pruning_schedule": sched}
    if p.m_by_n is not None:
        kwargs["sparsity_m_by_n"] = tuple(p.m_by_n)

    def wrap(layer):
        if isinstance(layer, PRUNABLE) and layer.name not in set(p.exclude):
            return tfmot.sparsity.keras.prune_low_magnitude(layer, **kwargs)
        return layer

    copy = keras.models.clone_model(student_probs)
    copy.set_weights(student_probs.get_weights())
    wrapped = keras.models.clone_model(copy, clone_function=wrap)
    fit_distiller(as_logits_model(wrapped), data.x_train, data.y_train, data.x_val, data.y_val,
                  epochs=p.epochs, batch_size=p.batch_size, learning_rate=p.learning_rate,
                  early_stopping_patience=p.early_stopping_patience,
                  callbacks=[tfmot.sparsity.keras.UpdatePruningStep()], label=f"{label} prune", **common)
    pruned = tfmot.sparsity.keras.strip_pruning(wrapped)
    qat = make_qat_model(pruned, preserve_sparsity=q.preserve_sparsity)
    fit_distiller(as_logits_model(qat), data.x_train, data.y_train, data.x_val, data.y_val,
                  epochs=q.epochs, batch_size=q.batch_size, learning_rate=q.learning_rate,
                  early_stopping_patience=q.early_stopping_patience, label=qat_label, **common)
    return pruned, qat, {"kernel_sparsity": kernel_sparsity(pruned), "schedule": spec.__dict__,
                         "preserve_sparsity": q.preserve_sparsity, "loss": "distillation"}


def _mean(values: list[float]) -> float:
    return float(np.mean(values))


def run_distill(ctx: StageContext) -> dict:
    """Train scratch and distilled students per seed, compress the distilled ones, measure all."""
    from pipeline.distill import as_logits_model, as_probability_model, count_params, fit_distiller
    from pipeline.distill_cache import default_cache_dir, teacher_logits
    from pipeline.export import convert, representative_samples
    from pipeline.keras_env import set_seed

    cfg, config, data = ctx.section, ctx.config, ctx.data()
    teacher, teacher_source = load_teacher(config, ctx.out_dir / "stages" / "baseline" / MODEL_FILE)
    build_student, student_info = student_builder(config, data)
    check_compatible(teacher, build_student(), data, teacher_source)
    teacher_logits_model = as_logits_model(teacher, probe=data.x_train[:16])
    rep = representative_samples(data.x_train, config.export.representative_samples, ctx.seed)
    variants_dir = ctx.out_dir / "variants"
    variants_dir.mkdir(parents=True, exist_ok=True)

    cache_info = None
    soft = {}
    if cfg.mode == "offline":
        cache_dir = cfg.teacher_cache or default_cache_dir(config.dataset.path)
        soft, meta = teacher_logits(teacher_logits_model,
                                    {"train": data.x_train, "val": data.x_val, "test": data.x_test},
                                    cache_dir, dataset_name=data.name)
        cache_info = {k: meta[k] for k in ("path", "reused", "teacher_sha256", "inputs_sha256", "kind")}

    variants: list[dict] = []

    def write_variant(key: str, model_bytes: bytes, kind: str, method: str) -> None:
        path = variants_dir / f"{VARIANTS[key]}.tflite"
        path.write_bytes(model_bytes)
        ctx.output(path)
        variants.append({"name": VARIANTS[key], "kind": kind, "path": ctx.rel(path), "source": "distill",
                         "method": method})

    # The teacher is measured like the students: its float32 .tflite on the reference kernels (the
    # export stage's baseline_float32 when the teacher is the baseline, else a variant of its own).
    exported = [v for v in ctx.variants() if v.get("source") == "baseline" and v["kind"] == "float32"]
    if teacher_source == "baseline" and exported:
        teacher_eval = _tflite_accuracy(ctx.path(exported[0]["path"]).read_bytes(), data)
        teacher_eval["variant"] = exported[0]["name"]
    else:
        teacher_bytes = convert(teacher, "float32", strip=config.export.strip_strings)
        teacher_eval = _tflite_accuracy(teacher_bytes, data)
        if teacher_source != "baseline":
            write_variant("teacher", teacher_bytes, "float32", "none")
            teacher_eval["variant"] = VARIANTS["teacher"]

    seeds = cfg.seeds or [ctx.seed]
    per_seed = []
    student_params = None
    for i, seed in enumerate(seeds):
        primary = i == 0
        tag = "" if len(seeds) == 1 else f" (seed {seed})"
        results: dict = {"seed": seed}
        trained = {}
        for which, alpha in (("scratch", 1.0), ("distilled", cfg.alpha)):
            set_seed(seed)
            student = build_student()
            kwargs = ({"teacher": teacher_logits_model} if cfg.mode == "online" and alpha < 1.0 else
                      {"teacher_train": soft.get("train"), "teacher_val": soft.get("val")})
            _, history = fit_distiller(
                student, data.x_train, data.y_train, data.x_val, data.y_val,
                temperature=cfg.temperature, alpha=alpha, epochs=cfg.epochs, batch_size=cfg.batch_size,
                learning_rate=cfg.learning_rate, early_stopping_patience=cfg.early_stopping_patience,
                monitor=cfg.monitor, mixup=cfg.mixup, label=f"student {which}{tag}", **kwargs)
            student_params = count_params(student)
            probs = as_probability_model(student)  # the plain student, in the pipeline's softmax form
            trained[which] = probs
            model_bytes = convert(probs, "float32", strip=config.export.strip_strings)
            results[which] = {**_tflite_accuracy(model_bytes, data), "epochs_run": len(history["loss"])}
            if primary:
                path = ctx.stage_dir / f"student_{which}.keras"
                probs.save(path)
                ctx.output(path)
                write_variant(which, model_bytes, "float32", "none")
        if cfg.compress:
            set_seed(seed)
            pruned, qat, info = compress_student(
                trained["distilled"], data, config, label=f"student{tag}",
                **({"teacher": teacher_logits_model} if cfg.mode == "online" else
                   {"teacher_train": soft["train"], "teacher_val": soft["val"]}))
            pruned_bytes = convert(pruned, "float32", strip=config.export.strip_strings)
            int8_bytes = convert(qat, "int8", rep, strip=config.export.strip_strings)
            results["pruned"] = _tflite_accuracy(pruned_bytes, data)
            results["compressed"] = {**_tflite_accuracy(int8_bytes, data),
                                     "kernel_sparsity": info["kernel_sparsity"]}
            if primary:
                path = ctx.stage_dir / "student_distilled_pruned.keras"
                pruned.save(path)
                ctx.output(path)
                write_variant("pruned", pruned_bytes, "float32", "none")
                write_variant("compressed", int8_bytes, "int8",
                              "pqat" if info["preserve_sparsity"] else "qat")
        if teacher_eval["accuracy"] > results["scratch"]["accuracy"]:
            results["gap_closed"] = ((results["distilled"]["accuracy"] - results["scratch"]["accuracy"])
                                     / (teacher_eval["accuracy"] - results["scratch"]["accuracy"]))
        per_seed.append(results)

    teacher_acc = teacher_eval["accuracy"]
    scratch = _mean([r["scratch"]["accuracy"] for r in per_seed])
    distilled = _mean([r["distilled"]["accuracy"] for r in per_seed])
    compressed = _mean([r["compressed"]["accuracy"] for r in per_seed]) if cfg.compress else None
    gap = teacher_acc - scratch
    distillation = {
        "teacher": teacher_source, "student": student_info, "mode": cfg.mode,
        "temperature": cfg.temperature, "alpha": cfg.alpha, "epochs": cfg.epochs, "mixup": cfg.mixup,
        "teacher_params": count_params(teacher), "student_params": student_params,
        "params_ratio": student_params / count_params(teacher),
        "teacher_accuracy": teacher_acc,
        "student_scratch_accuracy": scratch,
        "student_distilled_accuracy": distilled,
        "student_compressed_accuracy": compressed,
        # Share of the scratch-to-teacher gap that distillation closed (1 = as good as the teacher).
        "gap_closed": (distilled - scratch) / gap if gap > 0 else None,
        # Accuracy points the compression cost the distilled student (int8 pruned vs float).
        "compression_cost_points": None if compressed is None else 100 * (distilled - compressed),
        "compressed_gain_points": None if compressed is None else 100 * (compressed - scratch),
        "seeds": seeds,
        "averaged_over_seeds": len(seeds) > 1,
        "note": (f"accuracies are means over seeds {', '.join(map(str, seeds))} (one seed is noisy "
                 f"on {len(data.x_test)} test samples); per-seed values in per_seed"
                 if len(seeds) > 1 else "single seed"),
        # The acceptance checks of the distillation stage, computed (not asserted) from the above.
        "criteria": {
            "student_params_le_25pct_of_teacher": student_params <= 0.25 * count_params(teacher),
            "distillation_closes_half_the_gap": gap > 0 and (distilled - scratch) >= 0.5 * gap,
            "compressed_keeps_gain_within_1_point": None if compressed is None else
            bool(distilled - compressed <= 0.01 + 1e-9),
        },
        "per_seed": per_seed,
        "teacher_logits_cache": cache_info,
        "variants": {**({"teacher": teacher_eval["variant"]} if "variant" in teacher_eval else {}),
                     **{k: VARIANTS[k] for k in ("scratch", "distilled", "pruned", "compressed")
                        if any(v["name"] == VARIANTS[k] for v in variants)}},
        "accuracy_source": "LiteRT reference kernels, test split (float32 .tflite; int8 for compressed)",
    }
    return {"variants": variants, "report": {"distillation": distillation}}


register_stage(Stage("distill", run_distill, enabled=lambda c: c.distill.enabled,
                     sections=("dataset", "baseline", "prune", "quantize", "export")),
               after="export")


def render_distillation(d: dict) -> list[str]:
    """Markdown lines for ``report.md``: teacher vs student from scratch vs distilled vs compressed."""
    def pct(x: float | None) -> str:
        return "—" if x is None else f"{100 * x:.2f}%"

    seeds = d.get("seeds") or []
    over = f"mean over seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else f"seed {seeds[0]}" if seeds else ""
    lines = ["## Distillation", "",
             f"Teacher `{d['teacher']}` ({d['teacher_params']} parameters) -> student "
             f"({d['student_params']} parameters, {100 * d['params_ratio']:.1f}% of the teacher); "
             f"T = {d['temperature']}, alpha = {d['alpha']}, {d['mode']} mode, {d['epochs']} epochs"
             + (f", mixup {d['mixup']} for both students" if d.get("mixup") else "") + ". "
             f"Test accuracy — {d.get('accuracy_source', 'test split')}; {over}:", "",
             "| model | accuracy |", "|---|---:|",
             f"| teacher | {pct(d['teacher_accuracy'])} |",
             f"| student from scratch (same epochs, seed, optimizer) | {pct(d['student_scratch_accuracy'])} |",
             f"| student distilled | {pct(d['student_distilled_accuracy'])} |",
             f"| student distilled, pruned + QAT, int8 | {pct(d['student_compressed_accuracy'])} |"]
    if d.get("gap_closed") is not None:
        lines += ["", f"Distillation closed {100 * d['gap_closed']:.0f}% of the gap between the student "
                      f"from scratch and the teacher."
                  + (f" Compression cost {d['compression_cost_points']:.2f} points of the distilled "
                     f"student's accuracy." if d.get("compression_cost_points") is not None else "")]
    if d.get("criteria"):
        names = {"student_params_le_25pct_of_teacher": "student <= 25% of the teacher's parameters",
                 "distillation_closes_half_the_gap": "distillation closes >= half the gap",
                 "compressed_keeps_gain_within_1_point": "compressed student within 1 point of the distilled one"}
        lines += ["", "Checks: " + "; ".join(
            f"{names.get(k, k)}: {'—' if v is None else 'yes' if v else 'NO'}" for k, v in d["criteria"].items()) + "."]
    if len(d.get("per_seed", [])) > 1:
        lines += ["", "Per seed (scratch / distilled / compressed): " + "; ".join(
            f"{r['seed']}: {pct(r['scratch']['accuracy'])} / {pct(r['distilled']['accuracy'])} / "
            f"{pct(r.get('compressed', {}).get('accuracy'))}" for r in d["per_seed"]) + "."]
    return lines
