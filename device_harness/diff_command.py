"""``tinyfarm diff``: per-layer comparison of an int8 model with its references (host side)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tinyfarm.errors import ConfigError, DataError


def _inputs(model: bytes, input_path: str | None, dataset: str | None, samples: int):
    """Float samples for the model's input 0: an .npy (floats, or raw values in the model's integer
    input dtype), a data set's test split, or seeded random values on the input's grid."""
    import numpy as np  # noqa: PLC0415

    from device_harness.compare import dequantize  # noqa: PLC0415
    from device_harness.layer_diff import _litert  # noqa: PLC0415

    detail = _litert(model, preserve=False).get_input_details()[0]
    scale, zp = detail["quantization"]
    dtype = np.dtype(detail["dtype"])
    if input_path and dataset:
        raise ConfigError("give --input or --dataset, not both")
    if input_path:
        from tinyfarm.array_files import load_npy  # noqa: PLC0415

        x = np.asarray(load_npy(input_path))
        if x.dtype.kind in "iu":
            if x.dtype != dtype:
                raise DataError(f"{Path(input_path).name}: {x.dtype} values, the model's input is {dtype.name} "
                                f"(give floats, or raw {dtype.name} values)")
            x = dequantize(x, scale, zp).astype(np.float32)
        elif x.dtype.kind != "f":
            raise DataError(f"{Path(input_path).name}: {x.dtype} values, expected floats or {dtype.name}")
        return x, Path(input_path).name
    if dataset:
        try:
            from tinyfarm_datasets import load_dataset  # noqa: PLC0415
        except ImportError as exc:
            raise ConfigError(f"data sets are not available: {exc}") from None
        splits = load_dataset(dataset)
        return splits.x_test[:samples], f"{splits.name} test split"
    rng = np.random.default_rng(0)
    shape = (samples,) + tuple(int(s) for s in detail["shape"][1:])
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        raw = rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dtype)
        return dequantize(raw, scale, zp).astype(np.float32), "seeded random inputs"
    return rng.uniform(-1, 1, size=shape).astype(np.float32), "seeded random inputs"


def _fmt(m: dict | None, float_ref: bool) -> str:
    if m is None:
        return "-"
    rel = f"{m['rel_l2']:.1e}" if m["rel_l2"] is not None else "-"
    steps = "" if float_ref or m["max_steps"] is None else f" {m['max_steps']:g}st"
    return f"{m['cosine']:.5f} {rel}{steps}"


@click.command("diff")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--float", "float_model", type=click.Path(dir_okay=False), default=None,
              help="The float model to compare each layer with (dequantized; ops matched by position "
                   "among the ops of the same type and output shape).")
@click.option("--reference", "reference_model", type=click.Path(dir_okay=False), default=None,
              help="Another int8 model of the same graph, compared op by op (e.g. before a change).")
@click.option("--input", "-i", "input_path", type=click.Path(dir_okay=False), default=None,
              help="An .npy of samples (floats, or raw values in the model's input dtype; one sample "
                   "or N on a leading axis).")
@click.option("--dataset", default=None, help="Use a data set's test split (a name or a .npz path).")
@click.option("--samples", "-n", type=click.IntRange(1, 10_000), default=16, show_default=True,
              help="How many samples of --dataset (or of seeded random inputs, the default).")
@click.option("--tflm/--no-tflm", default=True, show_default=True,
              help="Run the model under test on the host TFLM (else on LiteRT's reference kernels).")
@click.option("--device", "-d", default=None,
              help="Run the model under test on this device (twin, qemu, a port...; it needs the TENSORS "
                   "capability) and read every op's output back; the host TFLM becomes a reference.")
@click.option("--min-cosine", type=click.FloatRange(-1, 1), default=0.999, show_default=True,
              help="A layer departs under this cosine similarity...")
@click.option("--max-steps", type=click.FloatRange(0), default=1.0, show_default=True,
              help="...or more than this many quantization steps away (not used against --float).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Write a PNG of the error (relative L2) by layer.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
def diff(model, float_model, reference_model, input_path, dataset, samples, tflm, device, min_cosine,
         max_steps, plot_path, as_json) -> None:
    """Per-layer comparison of the int8 MODEL: every op's output on the host TFLM (the firmware's
    kernels), or with --device on that device (read back after each INVOKE), against LiteRT's
    reference kernels, the host TFLM, --reference and --float; cosine, relative L2, max |diff| in
    quantization steps, and the first layer that departs."""
    from device_harness.commands import _json_default, _load_model  # noqa: PLC0415
    from device_harness.layer_diff import layer_diff, plot  # noqa: PLC0415

    data = _load_model(model)
    float_bytes = _load_model(float_model) if float_model else None
    ref_bytes = _load_model(reference_model) if reference_model else None
    x, source = _inputs(data, input_path, dataset, samples)
    report = layer_diff(data, x, float_model=float_bytes, reference_model=ref_bytes, tflm=tflm,
                        device=device, min_cosine=min_cosine, max_steps=max_steps)
    report = {"model": str(model), "device": device, "float": float_model, "reference": reference_model, "inputs": source,
              **report}
    if plot_path:
        plot(report, plot_path, title=f"{Path(model).name}: error by layer")
        report["plot"] = str(plot_path)
    if as_json:
        click.echo(json.dumps(report, default=_json_default))
        return
    _print_table(report, Path(model).name)


def _print_table(report: dict, name: str) -> None:
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    refs = report["references"]
    first = report["first_departure"]
    table = Table(title=f"{name}: {report['under_test']} vs references, {report['samples']} samples "
                        f"({report['inputs']})",
                  caption="cells: cosine, relative L2, max |diff| in quantization steps (st); "
                          "* first layer that departs")
    for col in ("op", "type", "output shape"):
        table.add_column(col, justify="right" if col == "op" else "left")
    for ref in refs:
        table.add_column(f"vs {ref}", justify="right", no_wrap=True)
    for row in report["layers"]:
        cells = []
        for ref in refs:
            cell = _fmt(row["metrics"].get(ref), ref == "float")
            if first.get(ref) and first[ref]["op"] == row["op"]:
                cell = f"[bold red]*{cell}[/]"
            cells.append(cell)
        table.add_row(str(row["op"]), row["type"], "x".join(map(str, row["shape"])), *cells)
    console = Console()
    console.print(table)
    if report.get("float_matched") is not None and report["float_matched"] < len(report["layers"]):
        console.print(f"float model: {report['float_matched']} of {len(report['layers'])} layers paired "
                      "(same op type and output shape); the others are not compared", markup=False)
    if report["tflm"] != "ok":
        console.print(f"host TFLM not used: {report['tflm']}", markup=False)
    if not refs:
        console.print("no reference to compare with: give --float or --reference, or use the host TFLM",
                      markup=False)
    for ref in refs:
        f = first.get(ref)
        console.print(f"first layer departing from {ref}: "
                      + (f"op {f['op']} {f['type']} {f['shape']}" if f else "none"), markup=False)
    if report.get("plot"):
        console.print(f"plot: {report['plot']}", markup=False)
