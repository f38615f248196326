"""The ``.tflite`` stages: ``export``, ``evaluate``, ``tflm`` — thin wiring from
:mod:`pipeline.export`, :mod:`pipeline.evaluate` and :mod:`pipeline.tflm_check` (usable alone) to
files in the run folder.

``export`` converts the trained models it gets as artifacts (``ctx.artifact(stage, "model")``)
and publishes the deployable model; ``evaluate`` publishes, per variant, the exact input tensors
and raw reference outputs as the artifact ``"reference:<variant>"``, which ``tflm`` compares with.
"""

from __future__ import annotations

import logging

import numpy as np

from pipeline.run_context import StageContext
from pipeline.training_stages import load_stage_model
from tinyfarm.atomic_files import atomic_path, write_bytes

logger = logging.getLogger(__name__)

DEPLOYABLE = "model_int8.tflite"


def reference_artifact(variant: str) -> str:
    """Name of the evaluate stage's artifact holding ``variant``'s reference inputs and outputs."""
    return f"reference:{variant}"


def run_export(ctx: StageContext) -> dict:
    """Stage 4: PTQ/float variants of the float models, then the deployable int8 model + C array."""
    from pipeline.export import convert, representative_samples
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
                models[stage] = load_stage_model(ctx, stage)
            name = f"{prefix}_{kind}"
            path = ctx.path(f"variants/{name}.tflite")
            write_bytes(path, convert(models[stage], kind, rep if kind in ("int8", "int16x8") else None,
                                      strip=cfg.strip_strings, drop_softmax=cfg.drop_softmax))
            ctx.output(path)
            logger.debug("export: wrote %s", path)
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
        logger.info("export: deployable model = %s (%s, from %s)", best["name"], best["method"], best["source"])
        summary.update(publish_deployable(
            ctx, ctx.path(best["path"]).read_bytes(), c_array=cfg.c_array,
            deployable={"copy_of": best["name"], "kind": "int8", "source": best["source"],
                        "method": best["method"]}))
    return summary


def publish_deployable(ctx: StageContext, model: bytes, *, deployable: dict, c_array: bool) -> dict:
    """Write ``model`` as ``DIR/model_int8.tflite`` (and its C array): the summary keys that make it
    the deployable model (``"deployable"``, ``"c_source"``). Export does it; the search, later, may."""
    from pipeline.export import write_c_array

    deploy_path = write_bytes(ctx.output(ctx.path(DEPLOYABLE), name="deployable"), model)
    out: dict = {"deployable": {"path": DEPLOYABLE, **deployable}}
    if c_array:
        cc, h = write_c_array(model, ctx.path("model_int8.cc"), symbol="g_model")
        ctx.output(cc, name="c_source")
        ctx.output(h, name="c_header")
        out["c_source"] = {"source": ctx.rel(cc), "header": ctx.rel(h), "symbol": "g_model"}
    logger.debug("%s: deployable model %s (%d B)", ctx.name, deploy_path, len(model))
    return out


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
            path = ref_dir / f"{v['name']}.npz"
            with atomic_path(path) as tmp:
                np.savez(tmp, inputs=xq, outputs=raw, labels=y)
            ctx.output(path, name=reference_artifact(v["name"]))
            logger.debug("evaluate: %s accuracy %.4f, wrote %s", v["name"], metrics.accuracy, path)
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
        ref = np.load(ctx.artifact("evaluate", reference_artifact(name)))
        n = cfg.max_samples or len(ref["inputs"])
        # A variant with a TFLM-only storage (weight compression: DECODE operators; one zero point
        # per tensor) runs as stored, with its decompression memory; LiteRT's reference outputs are
        # those of its plain int8 file.
        variant = variants[name]
        if deployable and deployable["copy_of"] == name and deployable.get("tflm_path"):
            variant = {**variant, **{k: deployable[k] for k in ("tflm_path", "decompression_bytes")}}
        stored = variant.get("tflm_path") or variant["path"]
        checks[name] = check_model(ctx.path(stored).read_bytes(), ref["inputs"][:n], ref["outputs"][:n],
                                   max_arena_bytes=cfg.max_arena_bytes, label=name,
                                   decompression_bytes=variant.get("decompression_bytes") or 0).as_dict()
        checks[name]["model"] = stored
    out = {"checks": checks}
    if deployable and deployable["copy_of"] in checks:
        out["deployable_check"] = checks[deployable["copy_of"]]
    return out
