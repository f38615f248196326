"""Stage ``search``: compress, retrain, measure, repeat — until the budget is met or the floor crossed.

Walks the ``search.steps`` ladder (least compression first). Each candidate is trained by
:func:`pipeline.search_candidate.train_candidate`, then measured the way the target will see it:

- **flash** — the ``.tflite`` as stored on the device: TFLM weight compression
  (:mod:`pipeline.tflm_compress`, LUT or pruning encoding per tensor) when it pays, else the plain
  int8 file;
- **RAM** — the smallest TFLM arena it allocates in, plus the decompression memory DECODE writes the
  weights into (host TFLM, the device reference);
- **accuracy** — LiteRT reference kernels on the uncompressed int8 model, on the selection split
  (``target.select_on``) and on the test split; the compressed model is then checked bit-identical
  to it on the host TFLM over the whole test split, or its compression is dropped.

The PTQ int8 baseline (``baseline_int8`` from ``export``) is candidate zero. The budget and the
choice are :mod:`pipeline.budget`'s. The chosen candidate replaces the deployable model; when none
meets the target, the summary says by how much the closest misses (``tinyfarm run`` then exits
non-zero after writing the report, so every candidate is in it).
"""

from __future__ import annotations

import json
import logging

from pipeline.run_context import StageContext
from pipeline.tflite_stages import publish_deployable
from pipeline.training_stages import load_stage_model

logger = logging.getLogger(__name__)

CACHE_DIR = "cache"  # stages/search/cache/<step>.tflite|.json: trained candidates, keyed


def measure_candidate(int8: bytes, data, select_on: str, compression: str) -> dict:
    """Flash, RAM, MACs, accuracy and every storage of one int8 model (JSON-able).

    Each storage — ``none``, ``lut``, ``prune``, ``auto`` — is the model as a TFLM device stores it
    (:func:`pipeline.tflm_compress.store_for_tflm`), proven bit-identical to the int8 model on the
    host TFLM over the test split; one that is not is never used. ``compression`` picks the one
    that counts (``auto``: per tensor, the smaller encoding).
    """
    from pipeline.evaluate import evaluate_tflite
    from pipeline.search_candidate import selection_split
    from pipeline.tflm_compress import store_for_tflm, tflm_reference, verify_bit_identical
    from tinyfarm.tflite_macs import total_macs

    xs, ys = selection_split(data, select_on)
    selected, _, _ = evaluate_tflite(int8, xs, ys)
    tested, x_q, _ = evaluate_tflite(int8, data.x_test, data.y_test)
    out = {"accuracy": selected.accuracy, "test_accuracy": tested.accuracy, "macs": total_macs(int8),
           "int8_bytes": len(int8), "sparsity": tested.sparsity, "parameter_count": tested.parameter_count,
           "arena_bytes": None, "decompression_bytes": 0, "ram_bytes": None, "flash_bytes": len(int8),
           "compression": None, "encodings": {}, "storage": None}
    stored = {}
    reference = tflm_reference(int8, x_q)  # the plain int8 model on TFLM, once for every storage
    checks: dict[bytes, dict] = {}
    for method in ("none", "lut", "prune", "auto"):
        packed = store_for_tflm(int8, method)
        if packed is None:
            out["encodings"][method] = None
            continue
        # "auto" is often byte for byte one of the others: proven once
        check = checks.get(packed.model) or verify_bit_identical(int8, packed, x_q, reference=reference)
        checks[packed.model] = check
        same = check["compared"] > 0 and check["identical"] == check["compared"]
        out["encodings"][method] = {"bytes": len(packed.model), "identical": check["identical"],
                                    "compared": check["compared"], "bit_identical": same,
                                    "arena_bytes": check.get("arena_bytes"),
                                    "decompression_bytes": packed.decompression_bytes,
                                    "error": check.get("error")}
        if same:
            stored[method] = (packed, check)
        else:
            logger.warning("search: storage %s is not bit-identical on TFLM (%d/%d)%s; not used", method,
                           check["identical"], check["compared"],
                           f": {check['error']}" if check.get("error") else "")
    pick = compression if compression in stored else "none"
    if pick in stored:
        packed, check = stored[pick]
        out.update(flash_bytes=len(packed.model), storage=pick,
                   compression=packed.as_dict() if packed.tensors else None,
                   arena_bytes=check.get("arena_bytes"), decompression_bytes=packed.decompression_bytes,
                   ram_bytes=check["arena_bytes"] + packed.decompression_bytes)
        out["_stored"] = packed.model
    return out


def _cached_candidate(cache, step, key: str):
    model, meta = cache / f"{step.label}.tflite", cache / f"{step.label}.json"
    if model.is_file() and meta.is_file():
        info = json.loads(meta.read_text())
        if info.get("key") == key:
            return model.read_bytes(), info["info"]
    return None


def _store_candidate(cache, step, key: str, int8: bytes, info: dict) -> None:
    from tinyfarm.atomic_files import write_bytes, write_json

    cache.mkdir(parents=True, exist_ok=True)
    write_bytes(cache / f"{step.label}.tflite", int8)
    write_json(cache / f"{step.label}.json", {"key": key, "info": info})  # last: the key vouches


def run_search(ctx: StageContext) -> dict:
    """Stage ``search``: the ladder of candidates, the budget, the choice, the deployable model."""
    from pipeline.budget import Candidate, choose, goal_decided, resolve_budget
    from pipeline.progress import console
    from pipeline.search_candidate import candidate_key, selection_split, train_candidate
    from pipeline.search_report import compression_note
    from pipeline.train import keras_accuracy
    from tinyfarm.atomic_files import write_bytes
    from tinyfarm.provenance import sha256_file

    cfg, target, export, data = ctx.section, ctx.config.target, ctx.config.export, ctx.data()
    baseline = load_stage_model(ctx, "baseline")
    xs, ys = selection_split(data, target.select_on)
    budget = resolve_budget(target, keras_accuracy(baseline, xs, ys))
    console.print(f"  target: {budget.goal} model within {budget.flash_bytes:,} B flash, "
                  f"{budget.ram_bytes:,} B RAM ({budget.board})"
                  + (f", accuracy ≥ {100 * budget.floor:.2f}% on {budget.select_on}"
                     if budget.floor is not None else ""))
    cache = ctx.stage_dir / CACHE_DIR
    baseline_sha = sha256_file(ctx.artifact("baseline", "model"))
    (ctx.out_dir / "variants").mkdir(parents=True, exist_ok=True)
    candidates: list[Candidate] = []
    records: list[dict] = []
    variants: list[dict] = []

    def add(name: str, int8: bytes, info: dict, variant: dict | None) -> None:
        figures = measure_candidate(int8, data, budget.select_on, cfg.compression)
        stored = figures.pop("_stored", None)
        if stored is not None:  # the file as the device stores it (candidate zero's too)
            figures["tflm_path"] = ctx.rel(write_bytes(ctx.output(ctx.path(f"variants/{name}.tflm.tflite")),
                                                       stored))
        if variant is not None:
            if stored is not None:
                variant.update(tflm_path=figures["tflm_path"], decompression_bytes=figures["decompression_bytes"])
            variants.append(variant)
        cand = Candidate(name, figures["flash_bytes"], figures["ram_bytes"], figures["accuracy"],
                         figures["test_accuracy"], {"info": info, **figures})
        candidates.append(cand)
        records.append({"name": name, **info, **figures, "fits": cand.fits(budget),
                        "keeps_floor": cand.keeps_floor(budget)})
        how = compression_note(figures.get("compression"))
        console.print(f"  {name}: {budget.select_on} {100 * cand.accuracy:.2f}%, test "
                      f"{100 * figures['test_accuracy']:.2f}%, flash {cand.flash_bytes:,} B ({how}), "
                      f"RAM {cand.ram_bytes if cand.ram_bytes is not None else '—'} B"
                      f" — {'fits' if cand.fits(budget) else 'does not fit'}")

    ptq = next((v for v in ctx.variants() if v["name"] == "baseline_int8"), None)
    if ptq is not None:
        add("baseline_int8", ctx.path(ptq["path"]).read_bytes(), {"method": "ptq"}, None)
    for step in cfg.steps:
        if cfg.stop_early and goal_decided(candidates, budget, cfg.patience):
            console.print(f"  stopping: the goal is decided ({len(candidates)} candidates measured)")
            break
        key = candidate_key(step, cfg, export, ctx.seed, baseline_sha)
        hit = _cached_candidate(cache, step, key)
        if hit is None:
            int8, info = train_candidate(baseline, step, data, cfg, export, seed=ctx.seed)
            _store_candidate(cache, step, key, int8, info)
        else:
            int8, info = hit
            console.print(f"  {step.label}: trained before (same inputs), re-measured")
        name = f"search_{step.label}"
        path = write_bytes(ctx.output(ctx.path(f"variants/{name}.tflite")), int8)
        add(name, int8, info, {"name": name, "kind": "int8", "path": ctx.rel(path), "source": "search",
                                "method": info.get("method")})

    choice = choose(candidates, budget)
    console.print(f"  {'chosen' if choice.met else 'NOT MET'}: {choice.why}")
    search = {"budget": budget.as_dict(), "candidates": records, "met": choice.met, "why": choice.why,
              "chosen": choice.chosen.name if choice.met else None}
    summary: dict = {"variants": variants, "report": {"search": search}, "met": choice.met,
                     "why": choice.why}
    if choice.met:
        chosen = next(r for r in records if r["name"] == choice.chosen.name)
        variant = next((v for v in ctx.variants() + variants if v["name"] == chosen["name"]), None)
        source = ctx.path(chosen.get("tflm_path") or variant["path"])
        summary.update(publish_deployable(
            ctx, source.read_bytes(), c_array=export.c_array,
            deployable={"copy_of": chosen["name"], "kind": "int8", "source": variant.get("source"),
                        "method": variant.get("method"), "tflm_only": bool(chosen.get("tflm_path")),
                        "tflm_path": chosen.get("tflm_path"),
                        "compression": chosen["compression"],
                        "decompression_bytes": chosen["decompression_bytes"],
                        "flash_bytes": chosen["flash_bytes"], "ram_bytes": chosen["ram_bytes"],
                        "why": choice.why}))
    return summary
