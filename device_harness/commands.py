"""Device commands: ``tinyfarm twin | info | deploy | invoke | bench | evaluate``.

Every command that talks to a device takes ``--device`` (``twin``, ``twin:BOARD``, a pyserial URL,
a device path, or a name a plugin registered — see :mod:`device_harness.device_registry`) and ``--json``
(one JSON object on stdout, for machines). User-fixable failures raise TinyfarmError subclasses, which
the ``tinyfarm`` entry point prints as one ``error: ...`` line with a non-zero exit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from device_harness import limits, measure
from device_harness.cli_types import ARENA_BYTES, BAUD, PORT, seconds
from tinyfarm.array_files import load_npy
from tinyfarm.atomic_files import atomic_path
from tinyfarm.errors import ConfigError, DeviceError


# ---- shared options and plumbing -----------------------------------------------------------------
def device_options(fn):
    opts = [
        click.option("--device", "-d", default="twin", show_default=True,
                     help="twin, twin:BOARD, a pyserial URL (socket://, rfc2217://, loop://), a device "
                          "path, or a registered device (qemu, qemu:ELF, renode:ELF, farm names)."),
        click.option("--board", default=None, help="Board profile of a twin started by --device twin."),
        click.option("--arena-bytes", type=ARENA_BYTES, default=None,
                     help="Override the twin's tensor arena size (bytes)."),
        click.option("--pace/--no-pace", default=False,
                     help="A twin paces its line at the board's baud rate (transfer times of the board)."),
        click.option("--baud", type=BAUD, default=None,
                     help="Line rate: for a twin, pace at it; for a URL, the real rate (scales timeouts)."),
        click.option("--farm", type=click.Path(dir_okay=False), envvar="TINYFARM_FARM", default=None,
                     help="Farm file whose device names and labels --device may use [env: TINYFARM_FARM]."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def session_for(device: str, board: str | None, arena_bytes: int | None, pace: bool,
                baud: int | None, farm: str | None = None):
    """The :class:`~device_harness.session.DeviceSession` for the ``--device`` options (unopened)."""
    from device_harness.session import DeviceSession  # noqa: PLC0415

    session = DeviceSession.for_device(device, board=board, arena_bytes=arena_bytes, pace=pace,
                                       baud=baud, farm=farm)
    if session.backend.baud is None and baud:  # a URL at a known line rate: scale the timeouts
        session.backend.baud = baud
    return session


def _emit(as_json: bool, data: dict[str, Any], text: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, default=_json_default))
    elif text is not None:
        click.echo(text)


def _json_default(o: Any) -> Any:
    import numpy as np  # noqa: PLC0415

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (Path,)):
        return str(o)
    raise TypeError(type(o).__name__)


def _progress(enabled: bool, description: str, total: int):
    """A rich progress bar on stderr (nothing with --json or when stderr is not a terminal)."""
    from rich.console import Console  # noqa: PLC0415
    from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress,  # noqa: PLC0415
                               TextColumn, TimeRemainingColumn, TransferSpeedColumn)

    console = Console(stderr=True)
    bytes_mode = description.startswith("upload")
    columns = [TextColumn("{task.description}"), BarColumn(),
               DownloadColumn() if bytes_mode else MofNCompleteColumn(),
               TransferSpeedColumn() if bytes_mode else TimeRemainingColumn()]
    progress = Progress(*columns, console=console, transient=True,
                        disable=not enabled or not console.is_terminal)
    task = progress.add_task(description, total=total)
    return progress, lambda done, _total: progress.update(task, completed=done)


def _upload(session: Any, model: bytes, name: str, show: bool):
    progress, update = _progress(show, f"upload {name}", len(model))
    with progress:
        return session.upload(model, progress=update)


def _load_model(path: str) -> bytes:
    from tinyfarm.tflite_file import read_model  # noqa: PLC0415

    return read_model(path)


# ---- twin ----------------------------------------------------------------------------------------
def _tick_source(server: Any) -> str:
    dev = server.device
    if dev.estimate_ticks:
        return f"estimate (the board's cycles from the cost model, {dev.profile.cpu_hz:,} Hz)"
    return "host-ns"



@click.command("twin")
@click.option("--board", default=None, help="Board profile (see boards.yaml); default: the default profile.")
@click.option("--arena-bytes", type=ARENA_BYTES, default=None, help="Override the profile's tensor arena size.")
@click.option("--tcp", is_flag=True, help="Serve on a loopback TCP port (socket://) instead of a pty.")
@click.option("--port", type=PORT, default=0, help="TCP port with --tcp (0: any free port).")
@click.option("--pace", is_flag=True, help="Pace the line at the profile's baud rate.")
@click.option("--baud", type=BAUD, default=None, help="Pace the line at this baud rate.")
@click.option("--idle-timeout", type=seconds(min_open=False), default=limits.DEFAULT_IDLE_TIMEOUT_S,
              show_default=True, help="With --tcp: drop a client silent for this many seconds, so a "
                                      "forgotten connection cannot hold the twin (0: never).")
@click.option("--host-time", is_flag=True, default=None,
              help="Ticks are host ns around Invoke() (tick_source host-ns) instead of the board's "
                   "estimated cycles (tick_source estimate, the default for a board profile) "
                   "[env: TINYFARM_TWIN_TICKS=host].")
@click.option("--json", "as_json", is_flag=True, help="Print the URL and profile as one JSON line.")
def twin(board, arena_bytes, tcp, port, pace, baud, idle_timeout, host_time, as_json) -> None:
    """Serve a TFLM device twin on a pty (or loopback TCP) and print its URL; Ctrl-C stops it.

    Over TCP one client holds the twin at a time; another one is answered BUSY naming the holder."""
    from device_harness.boards import get_board  # noqa: PLC0415
    from device_harness.twin.server import TwinServer  # noqa: PLC0415

    profile = get_board(board).with_overrides(arena_bytes=arena_bytes)
    line_baud = baud or (profile.baud if pace else None)
    try:
        server = TwinServer(profile, tcp=tcp, port=port, baud=line_baud, idle_timeout_s=idle_timeout,
                            host_time=host_time or None)
    except ValueError as exc:
        raise ConfigError(f"cannot serve the twin: {exc}") from None
    except OSError as exc:
        raise DeviceError(f"cannot serve the twin: {exc.strerror or exc}") from None
    if as_json:
        click.echo(json.dumps({"url": server.url, "board": profile.name, "arena_bytes": profile.arena_bytes,
                               "max_model_bytes": profile.max_model_bytes, "paced_baud": line_baud,
                               "idle_timeout_s": idle_timeout if tcp else None,
                               "tick_source": "estimate" if server.device.estimate_ticks else "host-ns"}))
    else:
        click.echo(server.url)
        pacing = f", line paced at {line_baud} baud" if line_baud else ""
        click.echo(f"twin of {profile.name}: {profile.arena_bytes:,} B arena, {profile.max_model_bytes:,} B "
                   f"model buffer{pacing}; ticks: {_tick_source(server)}. Ctrl-C to stop.", err=True)
    sys.stdout.flush()
    server.serve_until_stopped()


# ---- info ----------------------------------------------------------------------------------------
@click.command("info")
@device_options
def info(device, board, arena_bytes, pace, baud, farm, as_json) -> None:
    """Show a device's HELLO/INFO fields."""
    with session_for(device, board, arena_bytes, pace, baud, farm) as session:
        d = session.info.as_dict()
        d["device"] = device
    if as_json:
        _emit(True, d)
        return
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=f"{device}", show_header=False)
    for key, value in d.items():
        if isinstance(value, int) and key.endswith(("bytes", "hz")):
            value = f"{value:,}"
        table.add_row(key, str(value))
    Console().print(table)


# ---- deploy --------------------------------------------------------------------------------------
@click.command("deploy")
@click.argument("model", type=click.Path(dir_okay=False))
@device_options
def deploy(model, device, board, arena_bytes, pace, baud, farm, as_json) -> None:
    """Upload MODEL to a device and verify it there (SHA-256); print size, time, throughput."""
    data = _load_model(model)
    with session_for(device, board, arena_bytes, pace, baud, farm) as session:
        r = _upload(session, data, Path(model).name, not as_json)
        line_baud = session.client.link.baud
        arena = session.arena() if r.loaded else (0, session.info.arena_bytes)
        board_name = session.info.board
    out = {"model": str(model), "device": device, "board": board_name, "bytes": r.size,
           "seconds": round(r.seconds, 4), "bytes_per_second": round(r.bytes_per_second, 1),
           "verified": r.verified, "loaded": r.loaded, "arena_used": arena[0], "arena_capacity": arena[1],
           "line_baud": line_baud,
           "line_utilisation": round(r.bytes_per_second / (line_baud / 10), 4) if line_baud else None}
    text = (f"deployed {Path(model).name} to {board_name}: {r.size:,} bytes in {r.seconds:.3f} s "
            f"({r.bytes_per_second / 1024:.1f} KiB/s"
            + (f", {out['line_utilisation']:.0%} of {line_baud} baud" if line_baud else "") + "), "
            + ("verified and loaded" if r.loaded else "verified (not loaded: no engine)")
            + (f", arena {arena[0]:,} of {arena[1]:,} bytes" if r.loaded else ""))
    _emit(as_json, out, text)


# ---- invoke --------------------------------------------------------------------------------------
@click.command("invoke")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--input", "-i", "inputs", multiple=True, required=True,
              help="An .npy per model input, in order, in the model's own dtype and shape.")
@click.option("--output-dir", "-o", type=click.Path(file_okay=False), required=True,
              help="Where output_<i>.npy files are written.")
@device_options
def invoke(model, inputs, output_dir, device, board, arena_bytes, pace, baud, farm, as_json) -> None:
    """Run one inference of MODEL on a device with .npy inputs; write the raw outputs as .npy."""
    import numpy as np  # noqa: PLC0415

    data = _load_model(model)
    arrays = [load_npy(path) for path in inputs]
    with session_for(device, board, arena_bytes, pace, baud, farm) as session:
        session.require_engine(_upload(session, data, Path(model).name, not as_json))
        outputs, ticks = session.invoke(arrays)
        tick_hz, tick_source = session.info.tick_hz, session.info.tick_source
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for i, arr in enumerate(outputs):
        path = out_dir / f"output_{i}.npy"
        with atomic_path(path) as tmp:
            np.save(tmp, arr)
        files.append(str(path))
    us = ticks * 1e6 / tick_hz if tick_hz else None
    out = {"model": str(model), "outputs": files, "shapes": [list(a.shape) for a in outputs],
           "dtypes": [str(a.dtype) for a in outputs], "ticks": ticks, "tick_hz": tick_hz, "us": us, "tick_source": tick_source}
    text = "\n".join([f"{f}: {a.dtype} {tuple(a.shape)}" for f, a in zip(files, outputs)]
                     + [f"invoke: {ticks:,} ticks" + (f" ({us:,.1f} us)" if us is not None else "")
                        + f"; {measure.latency_source(tick_source)}"])
    _emit(as_json, out, text)


# ---- bench ---------------------------------------------------------------------------------------
@click.command("bench")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--runs", "-n", type=click.IntRange(1, 1_000_000), default=100, show_default=True)
@click.option("--warmup", "-w", type=click.IntRange(0, 1_000_000), default=5, show_default=True)
@click.option("--input", "-i", "inputs", multiple=True, help="Optional .npy inputs (default: zeros).")
@device_options
def bench(model, runs, warmup, inputs, device, board, arena_bytes, pace, baud, farm, as_json) -> None:
    """On-device latency of MODEL over N runs after W warm-ups (median, p90, min, max)."""
    import numpy as np  # noqa: PLC0415

    data = _load_model(model)
    arrays = [load_npy(p) for p in inputs] if inputs else None
    with session_for(device, board, arena_bytes, pace, baud, farm) as session:
        session.require_engine(_upload(session, data, Path(model).name, not as_json))
        if arrays is None:
            arrays = [np.zeros(t.dims, t.numpy_dtype) for t in session.client.inputs]
        stats = session.bench(warmup=warmup, runs=runs, inputs=arrays)
        info_ = session.info
        used, capacity = session.arena()
    out = {"model": str(model), "device": device, "board": info_.board, "tick_source": info_.tick_source,
           "warmup": warmup, **stats.as_dict(), "arena_used_bytes": used, "arena_capacity_bytes": capacity}
    if info_.board.startswith("twin"):  # a 64-bit host build of TFLM: a 32-bit target needs less
        from device_harness.fit import arena_32bit, model_facts  # noqa: PLC0415

        facts = model_facts(data, host_arena=False)
        out["arena_bytes_32bit_estimate"] = arena_32bit(used, facts.tensors, len(facts.ops))
    if as_json:
        _emit(True, out)
        return
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    arena = f"arena {used:,} B" + (f" (~{out['arena_bytes_32bit_estimate']:,} B on a 32-bit target, estimated)"
                                   if "arena_bytes_32bit_estimate" in out else "")
    table = Table(title=f"{Path(model).name} on {info_.board}", min_width=64,
                  caption=f"{runs} runs after {warmup} warm-ups; ticks: {info_.tick_source} at {info_.tick_hz:,} Hz; "
                          f"{arena}\nlatency: {measure.latency_source(info_.tick_source)}")
    table.add_column("")
    table.add_column("ticks", justify="right")
    table.add_column("us", justify="right")
    for key in ("median", "p90", "min", "max"):
        t = getattr(stats, f"{key}_ticks")
        us = stats.us(t)
        table.add_row(key, f"{t:,.0f}", f"{us:,.1f}" if us is not None else "-")
    Console().print(table)


# ---- evaluate ------------------------------------------------------------------------------------
@click.command("evaluate")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--dataset", required=True, help="A data set name (tinyfarm datasets) or a .npz path.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N test samples.")
@click.option("--reference/--no-reference", default=True, show_default=True,
              help="Compare every output with the host TFLM (the firmware's kernels) and LiteRT's "
                   "reference kernels (LiteRT is skipped for a model only TFLM reads: weight compression).")
@click.option("--float", "float_model", type=click.Path(dir_okay=False), default=None,
              help="Also compare the dequantized outputs with this float model's (e.g. the pipeline's "
                   "variants/baseline_float32.tflite).")
@device_options
def evaluate(model, dataset, limit, reference, float_model, device, board, arena_bytes, pace, baud, farm,
             as_json) -> None:
    """On-device accuracy of MODEL on a data set's test split, and its outputs against references:
    top-1 agreement, cosine similarity, relative L2 error, max |diff| (quantization steps)."""
    try:
        from tinyfarm_datasets import load_dataset  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigError(f"data sets are not available: {exc}") from None
    data = _load_model(model)
    float_bytes = _load_model(float_model) if float_model else None
    splits = load_dataset(dataset)
    x, y = splits.x_test, splits.y_test
    if limit:
        x, y = x[:limit], y[:limit]
    with session_for(device, board, arena_bytes, pace, baud, farm) as session:
        session.require_engine(_upload(session, data, Path(model).name, not as_json))
        progress, update = _progress(not as_json, f"evaluate on {session.info.board}", len(x))
        with progress:  # the session's client: session.evaluate has no float model yet
            result = measure.evaluate_on_device(session.client, data, x, y, dataset=splits.name,
                                                reference=reference, float_model=float_bytes,
                                                progress=update)
        board_name, tick_source = session.info.board, session.info.tick_source
    out = {"model": str(model), "device": device, "board": board_name, "tick_source": tick_source,
           **result.as_dict()}
    lat = result.latency
    lines = [f"{Path(model).name} on {board_name}, {splits.name} test split ({result.samples} samples): "
             f"accuracy {result.accuracy:.4f}"
             + (f", outputs identical to {measure.REFERENCE_NAMES.get(result.reference, result.reference)}: "
                f"{result.identical_outputs}/{result.samples}"
                f" ({result.identical_share:.1%})" if result.identical_share is not None else "")
             + (f"; median latency {lat['median_us']:,.1f} us ({measure.latency_source(tick_source)})"
                if lat.get("median_us") is not None else "")]
    for name, entry in result.references.items():
        if "error" in entry:
            lines.append(f"  vs {name}: not run ({entry['error'][:160]})")
            continue
        for m in entry["outputs"]:
            steps = f" ({m['max_steps']:g} steps)" if m["max_steps"] is not None else ""
            rel = f"{m['rel_l2']:.2e}" if m["rel_l2"] is not None else "-"
            lines.append(f"  vs {name}, output {m['output']}: top-1 agreement {m['top1_agreement']:.2%}, "
                         f"cosine {m['cosine']:.6f}, rel L2 {rel}, max |diff| {m['max_abs_diff']:.4g}{steps}")
    _emit(as_json, out, "\n".join(lines))


__all__ = ["twin", "info", "deploy", "invoke", "bench", "evaluate", "session_for", "device_options"]
