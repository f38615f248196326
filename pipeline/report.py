"""Stage 7: ``report.json`` (the machine contract) and ``report.md`` + a plot (for people).

``report.json`` holds ``"dataset"`` and ``"variants"`` — a list with at least ``name``, ``kind``,
``accuracy`` (test split, 0..1), ``size_bytes``, ``sparsity`` (0..1, measured in the flatbuffer's
weight buffers) and ``path`` (relative to the run folder) — plus the deployable model, the TFLM
check, each stage's status, and whatever later stages add under their own key.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.budget import resolve_budget
from pipeline.run_context import StageResult, record_path
from pipeline.search_report import plot_budget, render_search, variant_budget_fields
from tinyfarm import __version__
from tinyfarm.atomic_files import atomic_path, write_text
from tinyfarm.provenance import command_line, library_versions, sha256_file, write_json

if TYPE_CHECKING:
    from pipeline.run_context import StageContext

logger = logging.getLogger(__name__)

VARIANT_KEYS = ("name", "kind", "source", "method", "accuracy", "size_bytes", "gzip_bytes",
                "sparsity", "parameter_count", "path", "flash_bytes", "ram_bytes", "macs", "compression",
                "fits")


def build_report(ctx: "StageContext") -> dict:
    """The ``report.json`` object from the results of the stages run so far."""
    data = ctx.data()
    evaluated = ctx.result("evaluate").summary["results"] if ctx.result("evaluate") else {}
    tflm = ctx.result("tflm").summary.get("checks", {}) if ctx.result("tflm") else {}
    search = (ctx.result("search").summary.get("report") or {}).get("search") if ctx.result("search") else None
    budget = search["budget"] if search else resolve_budget(ctx.config.target, None).as_dict()
    variants = []
    for v in ctx.variants():
        m = evaluated.get(v["name"], {})
        entry = {"name": v["name"], "kind": v["kind"], "source": v.get("source"),
                 "method": v.get("method"), "accuracy": m.get("accuracy"),
                 "size_bytes": m.get("size_bytes", (ctx.path(v["path"]).stat().st_size
                                                     if ctx.path(v["path"]).is_file() else None)),
                 "gzip_bytes": m.get("gzip_bytes"), "sparsity": m.get("sparsity"),
                 "parameter_count": m.get("parameter_count"), "path": v["path"],
                 "sha256": sha256_file(ctx.path(v["path"])) if ctx.path(v["path"]).is_file() else None,
                 "input_type": m.get("input_type"), "output_type": m.get("output_type"),
                 "layer_sparsity": m.get("layer_sparsity"), "ops": m.get("ops")}
        if v["name"] in tflm:
            entry["tflm"] = {k: tflm[v["name"]].get(k) for k in
                             ("passed", "arena_bytes", "identical_share", "within_one_step_share",
                              "same_top_class_share", "compared")}
        if v.get("tflm_path"):
            entry["tflm_path"] = v["tflm_path"]  # the file as the device stores it
        entry.update(variant_budget_fields(entry, ctx.path(v["path"]), search, budget))
        variants.append(entry)
    report: dict = {
        "tinyfarm_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        "seed": ctx.seed,
        "dataset": {**data.summary(), "description": data.description,
                    "path": str(ctx.config.dataset.path) if ctx.config.dataset.path else None},
        "variants": variants,
    }
    deployable = ctx.deployable()
    if deployable:
        report["deployable"] = dict(deployable)
        c_source = None  # the C array of the deployable model: the last stage that chose one wrote it
        for res in ctx.results.values():
            c_source = res.summary.get("c_source", c_source)
        if c_source:
            report["deployable"]["c_source"] = c_source
        if ctx.path(deployable["path"]).is_file():
            from tinyfarm.tflite_bytes import byte_breakdown

            report["deployable"]["bytes"] = byte_breakdown(ctx.path(deployable["path"]).read_bytes())
        if deployable.get("copy_of") in tflm:
            report["deployable"]["tflm"] = tflm[deployable["copy_of"]]
    keras_acc = {name: res.summary.get("keras_test_accuracy") for name, res in ctx.results.items()
                 if isinstance(res.summary, dict) and "keras_test_accuracy" in res.summary}
    if keras_acc:
        report["keras_test_accuracy"] = keras_acc
    if ctx.result("prune"):
        report["pruning"] = {k: ctx.result("prune").summary.get(k)
                             for k in ("schedule", "steps_per_epoch", "kernel_sparsity")}
    if tflm:
        report["tflm"] = tflm
    report["stages"] = {name: {"skipped": res.skipped, "seconds": round(res.seconds, 3),
                               "record": record_path(name)}
                        for name, res in ctx.results.items()}
    for res in ctx.results.values():  # later stages (deploy, distill) add their own sections
        for key, value in (res.summary.get("report") or {}).items():
            report[key] = value
    report["config"] = ctx.config.model_dump(mode="json")
    report["versions"] = library_versions()
    return report


def plot_accuracy_vs_size(variants: list[dict], path: Path, title: str) -> Path:
    """Test accuracy against file size: one point (and colour) per variant, marker by source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    markers = {"baseline": "o", "prune": "s"}
    colours = plt.get_cmap("tab10").colors  # one per variant: several share a kind (int8)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for i, v in enumerate(variants):
        if v.get("accuracy") is None or v.get("size_bytes") is None:
            continue
        ax.scatter(v["size_bytes"] / 1024, 100 * v["accuracy"], s=60, alpha=0.85,
                   color=colours[i % len(colours)], marker=markers.get(v.get("source"), "^"),
                   label=f"{v['name']} ({v['size_bytes'] / 1024:.1f} KiB, {100 * v['accuracy']:.2f}%)")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(ScalarFormatter())
    ax.tick_params(axis="x", which="both", labelsize=7)
    ax.set_xlabel("size of the .tflite (KiB, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, bbox_inches="tight")
    plt.close(fig)
    return path


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def render_markdown(report: dict, plot_name: str | None) -> str:
    ds = report["dataset"]
    lines = [f"# tinyfarm report: {ds['name']}", "",
             f"Data set: {ds.get('description') or ds['name']} — train {ds['train']}, val {ds['val']}, "
             f"test {ds['test']}; input {tuple(ds['input_shape'])}, {ds['num_classes']} classes. "
             f"Seed {report['seed']}.", "",
             "Accuracy on the test split with LiteRT reference kernels; sparsity measured in the "
             "flatbuffer's weight buffers; size is the .tflite file, flash the model as the device "
             "stores it, RAM the TFLM arena plus decompression memory (where measured).", "",
             "| variant | kind | method | accuracy | size (B) | flash (B) | RAM (B) | gzip (B) | sparsity | params | TFLM |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for v in report["variants"]:
        t = v.get("tflm")
        tflm = "—" if not t else (f"arena {t['arena_bytes']} B; {100 * t['identical_share']:.1f}% "
                                  f"bit-identical, {100 * (t.get('within_one_step_share') or 0):.1f}% "
                                  f"within 1 step")
        lines.append(f"| {v['name']} | {v['kind']} | {v.get('method') or ''} | {_pct(v['accuracy'])} | "
                     f"{v['size_bytes']} | {v.get('flash_bytes') or '—'} | {v.get('ram_bytes') or '—'} | "
                     f"{v.get('gzip_bytes') or '—'} | {_pct(v['sparsity'])} | "
                     f"{v.get('parameter_count') or '—'} | {tflm} |")
    dep = report.get("deployable")
    if dep:
        lines += ["", f"Deployable model: `{dep['path']}` (= `{dep['copy_of']}`)"
                  + (f", C array `{dep['c_source']['source']}` / `{dep['c_source']['header']}`"
                     if dep.get("c_source") else "") + "."]
        if dep.get("tflm"):
            t = dep["tflm"]
            lines.append(f"TFLM: ops {', '.join(t['ops'])}; all supported: {t['ops_supported']}; "
                         f"smallest arena {t['arena_bytes']} B; {t['identical']}/{t['compared']} "
                         f"outputs bit-identical to the LiteRT reference, "
                         f"{100 * t.get('within_one_step_share', 0):.1f}% within one quantization step, "
                         f"{100 * t.get('same_top_class_share', 0):.1f}% with the same top class.")
            if t["compared"] and t["identical"] < t["compared"] and (t.get("max_abs_diff") or 0) <= 1:
                lines.append("The differences are single quantization steps: TFLM rounds the int8 "
                             "requantization twice (gemmlowp), LiteRT once; values within about 2^-shift "
                             "of a .5 tie round apart (see pipeline/tflm_check.py).")
    if dep and dep.get("bytes"):
        parts = ", ".join(f"{k} {v:,}" for k, v in sorted(dep["bytes"].items(), key=lambda kv: -kv[1]) if v)
        lines += ["", f"Where the deployable model's {sum(dep['bytes'].values()):,} B go: {parts}."]
    if report.get("search"):
        lines += ["", *render_search(report["search"], report.get("files", {}).get("budget_plot"))]
    if report.get("keras_test_accuracy"):
        lines += ["", "Keras test accuracy per stage: " + ", ".join(
            f"{k} {_pct(v)}" for k, v in report["keras_test_accuracy"].items()) + "."]
    if report.get("distillation"):
        from pipeline.distill_stage import render_distillation

        lines += ["", *render_distillation(report["distillation"])]
    if report.get("deploy"):
        from pipeline.deploy_stage import render_deploy

        lines += ["", *render_deploy(report["deploy"])]
    if report.get("emulator"):
        from pipeline.deploy_stage import render_deploy

        lines += ["", *render_deploy(report["emulator"], title="On the emulated Cortex-M4 (the firmware users flash)")]
    if dep:
        lines += ["", *_next_steps(dep, report["variants"], ds["name"])]
    if plot_name:
        lines += ["", f"![accuracy vs size]({plot_name})"]
    def stage_note(s: dict) -> str:
        return "skipped, unchanged" if s["skipped"] else f"{s['seconds']:.1f} s"

    lines += ["", "Stages: " + ", ".join(
        f"{n} ({stage_note(s)})" for n, s in report["stages"].items()) + ".", ""]
    return "\n".join(lines)


def _next_steps(dep: dict, variants: list[dict], dataset: str) -> list[str]:
    """What a TinyML engineer does with the result, in commands that exist."""
    arena = (dep.get("tflm") or {}).get("arena_bytes")
    memory = dep.get("decompression_bytes") or 0
    lines = ["## Next", "",
             f"- Embed `{dep['c_source']['source'] if dep.get('c_source') else dep['path']}` in your "
             "application" + (f"; give TFLM a tensor arena of at least {arena} B (plus what your "
                                 "own ops need; measured on the host TFLM, a 64-bit build: a Cortex-M "
                                 "needs a little less)" if arena else "")
             + (f", and {memory} B of alternate decompression memory: the weights are stored with "
                "TFLM's weight compression, so register TFLM's DECODE operator (a TFLM with compression; "
                "the harness firmware: `-DTINYFARM_TFLM_COMPRESSION=ON`)" if memory else "") + ".",
             f"- Check flash, RAM and an estimated latency on every board profile: "
             f"`tinyfarm fit {dep['path']}`.",
             f"- Measure on a board running the firmware (`firmware/README.md`, built with your TFLM): "
             f"`tinyfarm bench {dep['path']} --device /dev/ttyACM0`, and "
             f"`tinyfarm evaluate {dep['path']} --device /dev/ttyACM0 --dataset {dataset}` for accuracy."]
    chosen = next((v for v in variants if v["name"] == dep.get("copy_of")), None)
    if (chosen and not dep.get("compression") and (chosen.get("sparsity") or 0) >= 0.3
            and chosen.get("gzip_bytes")):
        lines.append(f"- Sparsity ({_pct(chosen['sparsity'])}) shrinks the download "
                     f"({chosen['gzip_bytes']} B gzipped), not flash: TFLM stores and runs the weights "
                     f"dense, so flash use is the .tflite size ({chosen['size_bytes']} B); the `search` "
                     "stage stores sparse weights with TFLM's pruning encoding instead.")
    return lines


def write_reports(ctx: "StageContext") -> dict[str, str]:
    """Write ``report.json``, ``report.md`` and ``accuracy_vs_size.png`` into the run folder."""
    # The report lists itself among the stages.
    ctx.results.setdefault("report", StageResult("report", "", {}, {}, False, 0.0))
    report = build_report(ctx)
    files = {"json": "report.json", "markdown": "report.md"}
    plot_name = None
    if ctx.section is None or getattr(ctx.section, "plot", True):
        plot_name = "accuracy_vs_size.png"
        plot_accuracy_vs_size(report["variants"], ctx.path(plot_name),
                              f"{report['dataset']['name']}: accuracy vs size")
        files["plot"] = plot_name
    if report.get("search") and (ctx.section is None or getattr(ctx.section, "plot", True)):
        files["budget_plot"] = "accuracy_vs_budget.png"
        plot_budget(report["search"], ctx.path(files["budget_plot"]),
                    f"{report['dataset']['name']}: candidates against the budget")
    report["files"] = files
    write_json(ctx.path("report.json"), report)
    write_text(ctx.path("report.md"), render_markdown(report, plot_name))
    logger.debug("report: wrote %s", ", ".join(str(ctx.path(f)) for f in files.values()))
    ctx.results.pop("report", None)
    return files


def run_report(ctx: "StageContext") -> dict:
    """Stage ``report``: report.json, report.md and the accuracy-vs-size plot (declared, so a
    plot the config no longer asks for is removed)."""
    files = write_reports(ctx)
    for name in files.values():
        ctx.output(ctx.path(name))
    return {"files": files}
