"""The ``distill`` stage: teacher -> student by distillation -> prune -> pruning-preserving QAT -> int8.

For every seed of ``distill.seeds`` the same student architecture is trained twice with the same
loop, epochs, optimizer and initial weights: from scratch (hard labels, ``alpha = 1``) and by
distillation. The distilled student is then pruned, fine-tuned with pruning-preserving QAT and
converted to int8 with the ``prune``/``quantize``/``export`` sections' settings — by default with
the teacher kept in both fine-tunings (:func:`pipeline.distill_models.compress_student`), else
(``compress_loss: labels``) on hard labels; then :func:`pipeline.export.convert`. Every model is
measured on the test split with LiteRT's reference kernels (:func:`pipeline.evaluate.evaluate_tflite`),
like every other variant.

The first seed's models are written as variants (evaluated again by the ``evaluate`` stage, TFLM
checked like the rest); the ``"distillation"`` object of ``report.json`` holds the accuracies of every
seed and their means. The stage runs after ``export`` so the deployable model stays the baseline's.
:func:`run_distill` reads as its steps: :func:`prepare`, :func:`measure_teacher`, then per seed
:func:`train_students` and :func:`compress_and_measure`, and :func:`summarize`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from pipeline.distill_models import check_compatible, compress_student, load_teacher, student_builder
from pipeline.run_context import StageContext
from pipeline.training_stages import save_stage_model
from tinyfarm.atomic_files import write_bytes

logger = logging.getLogger(__name__)

VARIANTS = {
    "scratch": "student_scratch_float32",
    "distilled": "student_distilled_float32",
    "pruned": "student_distilled_pruned_float32",
    "compressed": "student_distilled_pruned_pqat_int8",
    "teacher": "teacher_float32",
}


def _tflite_accuracy(model_bytes: bytes, data) -> dict:
    from pipeline.evaluate import evaluate_tflite

    metrics, _, _ = evaluate_tflite(model_bytes, data.x_test, data.y_test)
    return {k: metrics.as_dict()[k] for k in ("accuracy", "size_bytes", "sparsity", "parameter_count")}


def _mean(values: list[float]) -> float:
    return float(np.mean(values))


@dataclass
class DistillSetup:
    """What every seed shares: the teacher (as trained and as logits), the student's builder, the
    teacher's cached soft targets (offline mode) and the calibration samples."""

    teacher: Any
    teacher_source: str
    teacher_logits: Any
    build_student: Callable[[], Any]
    student_info: dict
    representative: np.ndarray
    soft: dict = field(default_factory=dict)
    cache_info: dict | None = None


class VariantFiles:
    """The stage's ``.tflite`` variants: written to ``DIR/variants``, declared, listed for the summary."""

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self.dir = ctx.out_dir / "variants"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.entries: list[dict] = []

    def write(self, key: str, model_bytes: bytes, kind: str, method: str) -> None:
        path = self.dir / f"{VARIANTS[key]}.tflite"
        write_bytes(path, model_bytes)
        self.ctx.output(path)
        logger.debug("distill: wrote %s", path)
        self.entries.append({"name": VARIANTS[key], "kind": kind, "path": self.ctx.rel(path),
                             "source": "distill", "method": method})

    def has(self, key: str) -> bool:
        return any(v["name"] == VARIANTS[key] for v in self.entries)


def prepare(ctx: StageContext) -> DistillSetup:
    """Teacher and student, checked against each other and the data; the soft targets (offline)."""
    from pipeline.distill import as_logits_model
    from pipeline.distill_cache import default_cache_dir, teacher_logits
    from pipeline.export import representative_samples

    cfg, config, data = ctx.section, ctx.config, ctx.data()
    baseline_model = ctx.artifact("baseline", "model") if ctx.has_artifact("baseline", "model") else None
    teacher, teacher_source = load_teacher(config, baseline_model)
    build_student, student_info = student_builder(config, data)
    check_compatible(teacher, build_student(), data, teacher_source)
    setup = DistillSetup(teacher, teacher_source, as_logits_model(teacher, probe=data.x_train[:16]),
                         build_student, student_info,
                         representative_samples(data.x_train, config.export.representative_samples, ctx.seed))
    if cfg.mode == "offline":
        cache_dir = cfg.teacher_cache or default_cache_dir(config.dataset.path)
        setup.soft, meta = teacher_logits(setup.teacher_logits,
                                          {"train": data.x_train, "val": data.x_val, "test": data.x_test},
                                          cache_dir, dataset_name=data.name)
        setup.cache_info = {k: meta[k] for k in ("path", "reused", "teacher_sha256", "inputs_sha256", "kind")}
        logger.info("distill: teacher logits %s %s", "reused from" if meta["reused"] else "written to",
                    meta["path"])
    return setup


def measure_teacher(ctx: StageContext, setup: DistillSetup, files: VariantFiles) -> dict:
    """The teacher measured like the students: its float32 .tflite on the reference kernels (the
    export stage's baseline_float32 when the teacher is the baseline, else a variant of its own)."""
    from pipeline.export import convert

    data = ctx.data()
    exported = [v for v in ctx.variants() if v.get("source") == "baseline" and v["kind"] == "float32"]
    if setup.teacher_source == "baseline" and exported:
        teacher_eval = _tflite_accuracy(ctx.path(exported[0]["path"]).read_bytes(), data)
        teacher_eval["variant"] = exported[0]["name"]
        return teacher_eval
    teacher_bytes = convert(setup.teacher, "float32", strip=ctx.config.export.strip_strings)
    teacher_eval = _tflite_accuracy(teacher_bytes, data)
    if setup.teacher_source != "baseline":
        files.write("teacher", teacher_bytes, "float32", "none")
        teacher_eval["variant"] = VARIANTS["teacher"]
    return teacher_eval


def train_students(ctx: StageContext, setup: DistillSetup, seed: int, tag: str,
                   files: VariantFiles | None) -> tuple[dict, dict, int]:
    """The student from scratch (``alpha = 1``) and distilled, same seed and loop, both measured.

    Returns (results by ``"scratch"``/``"distilled"``, the trained students in the pipeline's
    softmax form, the student's parameter count). With ``files`` (first seed) they are written.
    """
    from pipeline.distill import as_probability_model, count_params, fit_distiller
    from pipeline.export import convert
    from pipeline.keras_env import set_seed

    cfg, data = ctx.section, ctx.data()
    results: dict = {}
    trained = {}
    student_params = 0
    for which, alpha in (("scratch", 1.0), ("distilled", cfg.alpha)):
        set_seed(seed)
        student = setup.build_student()
        kwargs = ({"teacher": setup.teacher_logits} if cfg.mode == "online" and alpha < 1.0 else
                  {"teacher_train": setup.soft.get("train"), "teacher_val": setup.soft.get("val")})
        _, history = fit_distiller(
            student, data.x_train, data.y_train, data.x_val, data.y_val,
            temperature=cfg.temperature, alpha=alpha, epochs=cfg.epochs, batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate, early_stopping_patience=cfg.early_stopping_patience,
            monitor=cfg.monitor, mixup=cfg.mixup, label=f"student {which}{tag}", **kwargs)
        student_params = count_params(student)
        probs = as_probability_model(student)  # the plain student, in the pipeline's softmax form
        trained[which] = probs
        model_bytes = convert(probs, "float32", strip=ctx.config.export.strip_strings)
        results[which] = {**_tflite_accuracy(model_bytes, data), "epochs_run": len(history["loss"])}
        if files is not None:
            save_stage_model(ctx, probs, f"student_{which}.keras", artifact=f"student_{which}")
            files.write(which, model_bytes, "float32", "none")
    return results, trained, student_params


def compress_and_measure(ctx: StageContext, setup: DistillSetup, distilled, seed: int, tag: str,
                         files: VariantFiles | None) -> dict:
    """Prune + QAT the distilled student (:func:`compress_student`), convert, measure both models."""
    from pipeline.export import convert
    from pipeline.keras_env import set_seed

    cfg, config, data = ctx.section, ctx.config, ctx.data()
    set_seed(seed)
    pruned, qat, info = compress_student(
        distilled, data, config, label=f"student{tag}",
        **({"teacher": setup.teacher_logits} if cfg.mode == "online" else
           {"teacher_train": setup.soft["train"], "teacher_val": setup.soft["val"]}))
    pruned_bytes = convert(pruned, "float32", strip=config.export.strip_strings)
    int8_bytes = convert(qat, "int8", setup.representative, strip=config.export.strip_strings)
    results = {"pruned": _tflite_accuracy(pruned_bytes, data),
               "compressed": {**_tflite_accuracy(int8_bytes, data), "kernel_sparsity": info["kernel_sparsity"]}}
    if files is not None:
        save_stage_model(ctx, pruned, "student_distilled_pruned.keras", artifact="student_distilled_pruned")
        files.write("pruned", pruned_bytes, "float32", "none")
        files.write("compressed", int8_bytes, "int8", "pqat" if info["preserve_sparsity"] else "qat")
    return results


def summarize(ctx: StageContext, setup: DistillSetup, teacher_eval: dict, per_seed: list[dict],
              student_params: int, seeds: list[int], files: VariantFiles) -> dict:
    """The ``"distillation"`` object of ``report.json``: figures, means over the seeds, per seed."""
    from pipeline.distill import count_params

    cfg, data = ctx.section, ctx.data()
    teacher_params = count_params(setup.teacher)
    teacher_acc = teacher_eval["accuracy"]
    scratch = _mean([r["scratch"]["accuracy"] for r in per_seed])
    distilled = _mean([r["distilled"]["accuracy"] for r in per_seed])
    compressed = _mean([r["compressed"]["accuracy"] for r in per_seed]) if cfg.compress else None
    gap = teacher_acc - scratch
    return {
        "teacher": setup.teacher_source, "student": setup.student_info, "mode": cfg.mode,
        "temperature": cfg.temperature, "alpha": cfg.alpha, "epochs": cfg.epochs, "mixup": cfg.mixup,
        "teacher_params": teacher_params, "student_params": student_params,
        "params_ratio": student_params / teacher_params,
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
        "per_seed": per_seed,
        "teacher_logits_cache": setup.cache_info,
        "variants": {**({"teacher": teacher_eval["variant"]} if "variant" in teacher_eval else {}),
                     **{k: VARIANTS[k] for k in ("scratch", "distilled", "pruned", "compressed")
                        if files.has(k)}},
        "accuracy_source": "LiteRT reference kernels, test split (float32 .tflite; int8 for compressed)",
    }


def run_distill(ctx: StageContext) -> dict:
    """Train scratch and distilled students per seed, compress the distilled ones, measure all."""
    cfg = ctx.section
    setup = prepare(ctx)
    files = VariantFiles(ctx)
    teacher_eval = measure_teacher(ctx, setup, files)
    seeds = cfg.seeds or [ctx.seed]
    per_seed = []
    student_params = 0
    for i, seed in enumerate(seeds):
        tag = "" if len(seeds) == 1 else f" (seed {seed})"
        primary = files if i == 0 else None  # the first seed's models are written as variants
        students, trained, student_params = train_students(ctx, setup, seed, tag, primary)
        results: dict = {"seed": seed, **students}
        if cfg.compress:
            results.update(compress_and_measure(ctx, setup, trained["distilled"], seed, tag, primary))
        if teacher_eval["accuracy"] > results["scratch"]["accuracy"]:
            results["gap_closed"] = ((results["distilled"]["accuracy"] - results["scratch"]["accuracy"])
                                     / (teacher_eval["accuracy"] - results["scratch"]["accuracy"]))
        per_seed.append(results)
    distillation = summarize(ctx, setup, teacher_eval, per_seed, student_params, seeds, files)
    return {"variants": files.entries, "report": {"distillation": distillation}}


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
    if len(d.get("per_seed", [])) > 1:
        lines += ["", "Per seed (scratch / distilled / compressed): " + "; ".join(
            f"{r['seed']}: {pct(r['scratch']['accuracy'])} / {pct(r['distilled']['accuracy'])} / "
            f"{pct(r.get('compressed', {}).get('accuracy'))}" for r in d["per_seed"]) + "."]
    return lines
