"""The built-in stages: thin wiring from the stage functions to files in the run folder.

Each ``run_*`` takes a :class:`~pipeline.runner.StageContext` and returns a JSON-able summary; the
real work lives in plain functions (``pipeline.models``, ``prune``, ``quantize``, ``export``,
``evaluate``, ``tflm_check``, ``report``) that are usable alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from pipeline.runner import Stage, StageContext, register_stage

MODEL_FILE = "model.keras"
DEPLOYABLE = "model_int8.tflite"


def _save(ctx: StageContext, model, name: str = MODEL_FILE) -> Path:
    path = ctx.stage_dir / name
    model.save(path)
    return ctx.output(path)


def _load(ctx: StageContext, stage: str):
    from pipeline.keras_env import keras

    return keras.models.load_model(ctx.out_dir / "stages" / stage / MODEL_FILE, compile=False)


def run_baseline(ctx: StageContext) -> dict:
    """Stage 1: build (or load) and train the float model."""
    from pipeline.keras_env import set_seed
    from pipeline.models import build_cnn, check_model_fits, load_user_model
    from pipeline.train import fit_classifier, keras_accuracy

    cfg, data = ctx.section, ctx.data()
    set_seed(ctx.seed)
    if cfg.model_path is not None:
        model = load_user_model(cfg.model_path)
        check_model_fits(model, data.input_shape, data.num_classes, str(cfg.model_path))
        source = {"model_path": str(cfg.model_path)}
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
    _save(ctx, model)
    return {**source, "parameters": int(model.count_params()),
            "epochs_run": len(history.get("loss", [])),
            "val_accuracy": max(history["val_accuracy"]) if history.get("val_accuracy") else None,
            "keras_test_accuracy": keras_accuracy(model, data.x_test, data.y_test),
            "model": ctx.rel(ctx.stage_dir / MODEL_FILE)}


def run_prune(ctx: StageContext) -> dict:
    """Stage 2: prune + fine-tune the baseline, strip the wrappers."""
    from pipeline.keras_env import set_seed
    from pipeline.prune import prune_model
    from pipeline.train import keras_accuracy

    cfg, data = ctx.section, ctx.data()
    set_seed(ctx.seed)
    model, info = prune_model(
        _load(ctx, "baseline"), data, schedule=cfg.schedule, initial_sparsity=cfg.initial_sparsity,
        target_sparsity=cfg.target_sparsity, m_by_n=cfg.m_by_n, epochs=cfg.epochs,
        batch_size=cfg.batch_size, learning_rate=cfg.learning_rate, ramp_fraction=cfg.ramp_fraction,
        frequency=cfg.frequency, exclude=cfg.exclude, early_stopping_patience=cfg.early_stopping_patience)
    _save(ctx, model)
    info.pop("history", None)
    return {**info, "keras_test_accuracy": keras_accuracy(model, data.x_test, data.y_test),
            "model": ctx.rel(ctx.stage_dir / MODEL_FILE)}


def _float_source(ctx: StageContext) -> str:
    return "prune" if ctx.result("prune") is not None else "baseline"


def run_quantize(ctx: StageContext) -> dict:
    """Stage 3: QAT (pruning-preserving after pruning), converted at once to an int8 variant."""
    from pipeline.export import convert, representative_samples
    from pipeline.keras_env import set_seed
    from pipeline.quantize import quantization_aware_training
    from pipeline.train import keras_accuracy

    cfg, data = ctx.section, ctx.data()
    set_seed(ctx.seed)
    source = _float_source(ctx)
    preserve = source == "prune" and cfg.preserve_sparsity
    qat, info = quantization_aware_training(
        _load(ctx, source), data, preserve_sparsity=preserve, epochs=cfg.epochs,
        batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
        early_stopping_patience=cfg.early_stopping_patience, label="pqat" if preserve else "qat")
    rep = representative_samples(data.x_train, ctx.config.export.representative_samples, ctx.seed)
    name = ("pruned_pqat_int8" if preserve else "pruned_qat_int8") if source == "prune" else "qat_int8"
    path = ctx.path(f"variants/{name}.tflite")
    path.parent.mkdir(parents=True, exist_ok=True)
    from pipeline.progress import console

    console.print(f"  converting {name}")
    path.write_bytes(convert(qat, "int8", rep, strip=ctx.config.export.strip_strings,
                             drop_softmax=ctx.config.export.drop_softmax))
    ctx.output(path)
    info.pop("history", None)
    return {**info, "source": source, "keras_test_accuracy": keras_accuracy(qat, data.x_test, data.y_test),
            "variants": [{"name": name, "kind": "int8", "path": ctx.rel(path), "source": source,
                          "method": "pqat" if preserve else "qat"}]}


def run_export(ctx: StageContext) -> dict:
    """Stage 4: PTQ/float variants of the float models, then the deployable int8 model + C array."""
    from pipeline.export import convert, representative_samples, write_c_array
    from pipeline.progress import task

    cfg, data = ctx.section, ctx.data()
    rep = representative_samples(data.x_train, cfg.representative_samples, ctx.seed)
    jobs = [("baseline", "baseline", k) for k in cfg.baseline_kinds]
    if ctx.result("prune") is not None:
        jobs += [("prune", "pruned", k) for k in cfg.pruned_kinds]
    variants = []
    models: dict = {}
    (ctx.out_dir / "variants").mkdir(parents=True, exist_ok=True)
    with task("converting", total=len(jobs)) as progress:
        for stage, prefix, kind in jobs:
            if stage not in models:
                models[stage] = _load(ctx, stage)
            name = f"{prefix}_{kind}"
            path = ctx.path(f"variants/{name}.tflite")
            path.write_bytes(convert(models[stage], kind, rep if kind in ("int8", "int16x8") else None,
                                     strip=cfg.strip_strings, drop_softmax=cfg.drop_softmax))
            ctx.output(path)
            method = "ptq" if kind != "float32" else "none"
            variants.append({"name": name, "kind": kind, "path": ctx.rel(path), "source": stage,
                             "method": method})
            progress.tick(note=name)
    # The deployable model: QAT int8 if there is one, else the pruned int8, else the baseline int8.
    candidates = [v for v in ctx.variants() + variants if v["kind"] == "int8"]
    preference = {"pqat": 0, "qat": 1}
    candidates.sort(key=lambda v: (preference.get(v["method"], 2), 0 if v["source"] == "prune" else 1))
    summary: dict = {"variants": variants}
    if candidates:
        best = candidates[0]
        deploy_path = ctx.output(ctx.path(DEPLOYABLE))
        shutil.copyfile(ctx.path(best["path"]), deploy_path)
        deployable = {"path": DEPLOYABLE, "copy_of": best["name"], "kind": "int8",
                      "source": best["source"], "method": best["method"]}
        summary["deployable"] = deployable
        if cfg.c_array:
            cc, h = write_c_array(deploy_path.read_bytes(), ctx.path("model_int8.cc"), symbol="g_model")
            ctx.output(cc)
            ctx.output(h)
            summary["c_source"] = {"source": ctx.rel(cc), "header": ctx.rel(h), "symbol": "g_model"}
    return summary


def run_evaluate(ctx: StageContext) -> dict:
    """Stage 5: every variant on the test split with LiteRT reference kernels."""
    from pipeline.evaluate import evaluate_tflite
    from pipeline.progress import task

    cfg, data = ctx.section, ctx.data()
    n = cfg.max_test_samples or len(data.x_test)
    x, y = data.x_test[:n], data.y_test[:n]
    variants = ctx.variants()
    results = {}
    ref_dir = ctx.stage_dir / "reference"
    ref_dir.mkdir(exist_ok=True)
    with task("evaluating (LiteRT reference kernels)", total=len(variants) * len(x)) as progress:
        for v in variants:
            metrics, xq, raw = evaluate_tflite(ctx.path(v["path"]).read_bytes(), x, y,
                                               progress=lambda k: progress.tick(k, note=v["name"]))
            results[v["name"]] = metrics.as_dict()
            np.savez(ref_dir / f"{v['name']}.npz", inputs=xq, outputs=raw, labels=y)
            ctx.output(ref_dir / f"{v['name']}.npz")
    return {"test_samples": int(n), "results": results}


def run_tflm(ctx: StageContext) -> dict:
    """Stage 6: the real TFLM runtime (child process): ops, smallest arena, identical outputs."""
    from pipeline.tflm_check import check_model

    cfg = ctx.section
    variants = {v["name"]: v for v in ctx.variants()}
    deployable = ctx.deployable()
    if cfg.variants == "deployable":
        names = [deployable["copy_of"]] if deployable else []
    elif cfg.variants == "int8":
        names = [n for n, v in variants.items() if v["kind"] == "int8"]
    else:
        names = list(variants)
    checks = {}
    for name in names:
        ref = np.load(ctx.out_dir / "stages" / "evaluate" / "reference" / f"{name}.npz")
        n = cfg.max_samples or len(ref["inputs"])
        checks[name] = check_model(ctx.path(variants[name]["path"]).read_bytes(), ref["inputs"][:n],
                                   ref["outputs"][:n], max_arena_bytes=cfg.max_arena_bytes,
                                   label=name).as_dict()
    out = {"checks": checks}
    if deployable and deployable["copy_of"] in checks:
        out["deployable_check"] = checks[deployable["copy_of"]]
    return out


def run_report(ctx: StageContext) -> dict:
    """Stage 7: report.json, report.md and the accuracy-vs-size plot."""
    from pipeline.report import write_reports

    paths = write_reports(ctx)
    return {"files": paths}


for _stage in (
    Stage("baseline", run_baseline, sections=("dataset",)),
    Stage("prune", run_prune, enabled=lambda c: c.prune.enabled),
    Stage("quantize", run_quantize, enabled=lambda c: c.quantize.qat,
          sections=("export.representative_samples", "export.strip_strings", "export.drop_softmax")),
    Stage("export", run_export),
    Stage("evaluate", run_evaluate),
    Stage("tflm", run_tflm, enabled=lambda c: c.tflm.enabled),
    Stage("report", run_report, cache=False),
):
    register_stage(_stage)
