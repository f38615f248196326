"""``tinyfarm run`` and ``tinyfarm datasets``: the pipeline from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tinyfarm.errors import BudgetError, ConfigError


@click.command("run")
@click.argument("config", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder: variants, report.json, report.md, per-stage records.")
@click.option("--force", is_flag=True, help="Re-run every stage even if its inputs are unchanged.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=None, help="Override the config's seed.")
def run(config: Path | None, out_dir: Path, force: bool, seed: int | None) -> None:
    """Train, prune, quantize, export, evaluate and TFLM-check a model from CONFIG.

    \b
    Without CONFIG the default pipeline runs on the built-in digits data set
    (the same as configs/digits.yaml). Stages whose inputs did not change since
    the last run into the same --out folder are skipped. Results: DIR/report.json,
    DIR/report.md, DIR/model_int8.tflite and its C array DIR/model_int8.cc/.h.
    """
    from pipeline.config import load_config

    cfg = load_config(config)
    if seed is not None:
        cfg.seed = seed
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} exists and is not a folder")
    from pipeline.progress import console
    from pipeline.stages import run_pipeline

    run_pipeline(cfg, out_dir, force=force)
    report = json.loads((out_dir / "report.json").read_text())
    _print_summary(report, out_dir, console)
    search = report.get("search")
    if search and not search["met"]:
        raise BudgetError(f"target not met: {search['why']} (every candidate: {out_dir / 'report.md'})")


def _print_summary(report: dict, out_dir: Path, console) -> None:
    from rich.table import Table

    table = Table(title=f"{report['dataset']['name']}: variants (test split, LiteRT reference kernels; "
                        "flash = the .tflite as stored, RAM = TFLM arena + decompression memory)")
    for col, justify in (("variant", "left"), ("kind", "left"), ("accuracy", "right"),
                         ("flash (B)", "right"), ("RAM (B)", "right"), ("sparsity", "right"),
                         ("fits", "left")):
        table.add_column(col, justify=justify, no_wrap=True)
    for v in report["variants"]:
        acc = "—" if v["accuracy"] is None else f"{100 * v['accuracy']:.2f}%"
        sp = "—" if v["sparsity"] is None else f"{100 * v['sparsity']:.1f}%"
        fits = {True: "yes", False: "no"}.get(v.get("fits"), "—")
        table.add_row(v["name"], v["kind"], acc, str(v.get("flash_bytes") or v["size_bytes"]),
                      str(v.get("ram_bytes") or "—"), sp, fits)
    console.print(table)
    dep = report.get("deployable")
    if dep:
        line = f"deployable: {out_dir / dep['path']} (= {dep['copy_of']}"
        line += f", {dep['flash_bytes']:,} B flash)" if dep.get("flash_bytes") else ")"
        t = dep.get("tflm")
        if t:
            verdict = "PASS" if t["passed"] else ("ERROR" if t.get("error") else "NOT BIT-IDENTICAL")
            line += (f"; TFLM check {verdict}: arena {t['arena_bytes']} B, "
                     f"{t['identical']}/{t['compared']} outputs bit-identical to LiteRT reference, "
                     f"{100 * t.get('within_one_step_share', 0):.1f}% within one step, "
                     f"{100 * t.get('same_top_class_share', 0):.1f}% same top class")
            if t.get("error"):
                line += f" ({t['error']})"
        console.print(line)
    search = report.get("search")
    if search:
        console.print(("chosen: " if search["met"] else "target NOT met: ") + search["why"])
        ptq = next((c for c in search["candidates"] if c["name"] == "baseline_int8"), None)
        chosen = next((c for c in search["candidates"] if c["name"] == search.get("chosen")), None)
        if ptq and chosen and chosen is not ptq:
            console.print(f"  next to the PTQ int8 baseline: {chosen['flash_bytes']:,} B vs "
                          f"{ptq['flash_bytes']:,} B flash ({chosen['flash_bytes'] / ptq['flash_bytes']:.1%}), "
                          f"test accuracy {100 * chosen['test_accuracy']:.2f}% vs {100 * ptq['test_accuracy']:.2f}%")
    console.print(f"report: {out_dir / 'report.md'}")


@click.command("datasets")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def datasets_cmd(as_json: bool) -> None:
    """List the built-in data sets (user data: a .npz with x_train, y_train, x_test, y_test)."""
    from tinyfarm_datasets import list_datasets

    names = list_datasets()
    if as_json:
        click.echo(json.dumps(names))
        return
    width = max(len(n) for n in names)
    for name, description in names.items():
        click.echo(f"{name.ljust(width)}  {description}")
    click.echo("\nUser data: dataset.path in the config, a .npz with x_train, y_train, x_test, y_test.")
