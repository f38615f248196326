"""``tinyfarm run`` and ``tinyfarm datasets``: the pipeline from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tinyfarm.errors import ConfigError


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


def _print_summary(report: dict, out_dir: Path, console) -> None:
    from rich.table import Table

    table = Table(title=f"{report['dataset']['name']}: variants (test split, LiteRT reference kernels)")
    for col, justify in (("variant", "left"), ("kind", "left"), ("accuracy", "right"),
                         ("size (B)", "right"), ("sparsity", "right")):
        table.add_column(col, justify=justify)
    for v in report["variants"]:
        acc = "—" if v["accuracy"] is None else f"{100 * v['accuracy']:.2f}%"
        sp = "—" if v["sparsity"] is None else f"{100 * v['sparsity']:.1f}%"
        table.add_row(v["name"], v["kind"], acc, str(v["size_bytes"]), sp)
    console.print(table)
    dep = report.get("deployable")
    if dep:
        line = f"deployable: {out_dir / dep['path']} (= {dep['copy_of']})"
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
