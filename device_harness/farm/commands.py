"""``tinyfarm farm``: list, discover, status, run a models x devices matrix, report.

Busy devices: ``farm run`` waits for a device another run holds (``--busy wait``, the default, up
to ``--lock-timeout`` seconds, then that device's jobs fail with the holder named) or skips it at
once (``--busy skip``). Either way two runs never use one device at the same time.
"""

from __future__ import annotations

import json
import shlex
import sys
import threading
from pathlib import Path
from typing import Any

import click

from device_harness.cli_types import NON_NEGATIVE, seconds
from tinyfarm.errors import ConfigError, DeviceError, TinyfarmError

from .inventory import load_farm
from .locks import device_lock, lock_dir
from .store import DEFAULT_DB, ResultsStore

FARM_OPTION = click.option(
    "--farm", "farm_path", envvar="TINYFARM_FARM", required=True, metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Farm file (YAML) listing the devices; also $TINYFARM_FARM.")
DB_OPTION = click.option(
    "--db", "db_path", envvar="TINYFARM_DB", default=str(DEFAULT_DB), show_default=True,
    type=click.Path(dir_okay=False, path_type=Path), help="SQLite results store; also $TINYFARM_DB.")


def _labels(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _console():
    from rich.console import Console
    return Console(stderr=True)


@click.group(name="farm")
def farm() -> None:
    """Inventory and run a farm of devices (boards, emulators, twins).

    \b
    tinyfarm farm list     --farm farm.example.yaml
    tinyfarm farm status   --farm farm.example.yaml
    tinyfarm farm discover
    tinyfarm farm run      --farm farm.example.yaml --models ../shared/models
    tinyfarm farm report   --out report.html --baseline previous --fail-on-regression
    """


def _place_text(device) -> str:
    place = device.place
    tags = ",".join(f"{k}={v}" for k, v in sorted(place.tags.items()))
    return f"labgrid place {place.name}" if place.name else f"labgrid place with {tags}"


# -- list ----------------------------------------------------------------------------------------

@farm.command(name="list")
@FARM_OPTION
@click.option("--labels", multiple=True, help="Only devices with all these labels (comma list).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(farm_path: Path, labels: tuple[str, ...], as_json: bool) -> None:
    """The devices of a farm file."""
    the_farm = load_farm(farm_path)
    devices = the_farm.select(labels=_labels(labels))
    if as_json:
        click.echo(json.dumps([d.model_dump(exclude_none=True) for d in devices], indent=2))
        return
    from rich.table import Table
    table = Table(title=f"farm {the_farm.name} ({the_farm.path})")
    for col in ("name", "backend", "board", "connection / launch", "labels"):
        table.add_column(col)
    for d in devices:
        how = _place_text(d) if d.place else d.connection.url if d.connection else ", ".join(
            f"{k}={v}" for k, v in (d.launch.model_dump(exclude_none=True) if d.launch else {}).items()
        ) or "defaults"
        table.add_row(d.name, d.backend, d.board or "default", how, ", ".join(d.labels))
    from rich.console import Console
    Console().print(table)


# -- status --------------------------------------------------------------------------------------

@farm.command()
@FARM_OPTION
@click.option("--labels", multiple=True, help="Only devices with all these labels (comma list).")
@click.option("--timeout", type=seconds(), default=30.0, show_default=True,
              help="Seconds to bring a device up (launch a twin or emulator) and get its HELLO.")
@click.option("--no-hello", is_flag=True, help="Only show locks; do not open or launch devices.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(farm_path: Path, labels: tuple[str, ...], timeout: float, no_hello: bool,
           as_json: bool) -> None:
    """Which devices answer HELLO now, and which are locked by whom.

    A device another process holds is not touched (its lock holder is shown instead); free
    devices are locked while probed, launched ones (twin, qemu) are started and stopped.
    """
    from .connect import probe_device

    the_farm = load_farm(farm_path)
    devices = the_farm.select(labels=_labels(labels))
    directory = lock_dir(the_farm.spec.lock_dir)
    rows: dict[str, dict[str, Any]] = {}

    def check(device) -> None:
        row: dict[str, Any] = {"name": device.name, "backend": device.backend}
        lock = device_lock(the_farm, device, directory, "tinyfarm farm status")
        try:
            holder = lock.probe()
        except TinyfarmError as exc:  # a labgrid coordinator or place that is not there
            row.update(state="no answer", detail=str(exc))
            rows[device.name] = row
            return
        if holder is not None:
            row.update(state="locked", holder={"pid": holder.pid, "host": holder.host,
                                               "command": holder.command, "since": holder.since},
                       detail=f"locked by {holder.describe()}")
        elif no_hello:
            row.update(state="free", detail="")
        else:
            try:
                lock.acquire(timeout=0)
            except Exception as exc:  # noqa: BLE001 - lost a race with another process
                row.update(state="locked", detail=str(exc))
            else:
                try:
                    info = probe_device(the_farm, device, timeout)
                    row.update(state="ok", hello=info,
                               detail=f"{info.get('board')} fw {info.get('firmware_version')} "
                                      f"TFLM {info.get('tflm_version')}")
                except Exception as exc:  # noqa: BLE001 - reported per device
                    from .scheduler import one_line
                    row.update(state="no answer", detail=one_line(exc))
                finally:
                    lock.release()
        rows[device.name] = row

    threads = [threading.Thread(target=check, args=(d,), daemon=True) for d in devices]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ordered = [rows[d.name] for d in devices]
    if as_json:
        click.echo(json.dumps(ordered, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"farm {the_farm.name}: status")
    for col in ("name", "backend", "state", "detail"):
        table.add_column(col)
    colors = {"ok": "green", "locked": "yellow", "free": "cyan", "no answer": "red"}
    for r in ordered:
        table.add_row(r["name"], r["backend"], f"[{colors[r['state']]}]{r['state']}[/]",
                      r["detail"])
    Console().print(table)


# -- discover ------------------------------------------------------------------------------------

@farm.command()
@click.option("--timeout", type=seconds(), default=0.5, show_default=True,
              help="Seconds to wait for each HELLO.")
@click.option("--all", "all_ports", is_flag=True,
              help="Say HELLO on every serial port, not only known probes/boards/bridges.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def discover(timeout: float, all_ports: bool, as_json: bool) -> None:
    """Find connected boards: serial ports of known probes/boards, confirmed with HELLO.

    Prints a farm-file snippet for the devices that answered.
    """
    from .discovery import discover as run_discovery, farm_snippet

    found = run_discovery(timeout=timeout, all_ports=all_ports)
    if as_json:
        click.echo(json.dumps([c.as_dict() for c in found], indent=2))
        return
    from rich.console import Console
    from rich.table import Table
    console = Console()
    if not found:
        console.print("no candidate serial port found (no known USB probe, board or bridge "
                      "connected; --all tries every port)")
        return
    table = Table(title="serial ports")
    for col in ("port", "USB", "identified as", "HELLO"):
        table.add_column(col)
    for c in found:
        table.add_row(c.device, c.usb_id or "–", c.known or c.description or "?",
                      f"[green]{c.board} ({c.firmware_version})[/]" if c.hello
                      else f"[red]{c.error or 'no answer'}[/]")
    console.print(table)
    snippet = farm_snippet(found)
    if snippet:
        console.print("\nFarm file entries for the devices that answered:\n")
        click.echo(snippet)


# -- run -----------------------------------------------------------------------------------------

@farm.command()
@FARM_OPTION
@click.option("--models", "model_specs", multiple=True, required=True, metavar="DIR|LIST",
              help="A folder of .tflite files, a file, or a comma-separated list; repeatable.")
@click.option("--labels", multiple=True, help="Only devices with all these labels (comma list).")
@click.option("--device", "device_names", multiple=True, metavar="NAME",
              help="Only these devices (repeatable).")
@DB_OPTION
@click.option("--runs", type=click.IntRange(1), default=None, help="Timed runs per model "
              "(default: the farm file's defaults.bench_runs).")
@click.option("--warmup", type=click.IntRange(0), default=None, help="Warm-up runs per model.")
@click.option("--job-timeout", type=seconds(), default=None,
              help="Seconds one job (upload + bench) may take before the device is reset.")
@click.option("--retries", type=click.IntRange(0), default=None,
              help="Retries of a job after a transient fault (serial error, timeout, device fault).")
@click.option("--busy", type=click.Choice(["wait", "skip"]), default="wait", show_default=True,
              help="A device held by another run: wait for it, or skip it (its jobs fail).")
@click.option("--lock-timeout", type=seconds(allow_negative=True), default=600.0, show_default=True,
              help="With --busy wait: seconds to wait for a device's lock (negative: forever).")
@click.option("--sequential", is_flag=True, help="One device at a time (for comparison).")
@click.option("--dataset", default=None, help="Also measure on-device accuracy on this data set.")
@click.option("--samples", type=click.IntRange(1), default=None,
              help="With --dataset: test samples per model (default: the whole test split).")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
def run(farm_path: Path, model_specs: tuple[str, ...], labels: tuple[str, ...],
        device_names: tuple[str, ...], db_path: Path, runs: int | None, warmup: int | None,
        job_timeout: float | None, retries: int | None, busy: str, lock_timeout: float,
        sequential: bool, dataset: str | None, samples: int | None, as_json: bool) -> None:
    """Run every model on every selected device, in parallel across devices.

    Each job uploads the model (verified on the device), reads its arena use, and benches it
    (and measures accuracy with --dataset); each result is committed to the results store as
    soon as it is known, so an interrupted run keeps what it measured. Each device is locked
    for the run: a device another run holds is waited for (--busy wait) or skipped (--busy skip).
    A job hit by a serial error, a timeout or a device fault is retried after a device restart.

    Exit status: 0 when every job succeeded, 1 when some failed (each named on stderr), and one
    `error:` line when no device could be used at all.
    """
    from .connect import FarmDevice
    from .model_refs import collect_models
    from .live_status import LiveProgress
    from .scheduler import FarmRunner, RunOptions

    the_farm = load_farm(farm_path)
    devices = the_farm.select(names=list(device_names), labels=_labels(labels))
    models, notes = collect_models(model_specs)
    d = the_farm.defaults
    options = RunOptions(
        runs=runs or d.bench_runs, warmup=d.bench_warmup if warmup is None else warmup,
        job_timeout_s=job_timeout or d.job_timeout_s,
        retries=d.retries if retries is None else retries, busy=busy,
        lock_timeout_s=None if lock_timeout < 0 else lock_timeout, parallel=not sequential,
        dataset=dataset, samples=samples)
    if dataset:
        from .accuracy import check_dataset
        check_dataset(dataset)
    console = _console()
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    command = "tinyfarm " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    with ResultsStore(db_path) as store:
        with LiveProgress(console, devices, len(models), enabled=not as_json) as progress:
            runner = FarmRunner(the_farm, devices, models, store, options, FarmDevice,
                                on_event=progress.event, command=command)
            summary = runner.run()
        failed = summary.failed
        unusable = [r for r in failed if r.reason and r.reason.startswith(
            ("device unavailable:", "skipped:"))]
        if failed and len(unusable) == len(summary.results):  # nothing could run at all
            reasons = sorted({f"{r.device}: {r.reason.split(': ', 1)[1]}" for r in unusable})
            raise DeviceError(f"no device could be used ({'; '.join(reasons)})")
        line = (f"run {summary.run_id}: {len(summary.results) - len(failed)} of "
                f"{len(summary.results)} jobs ok on {len(devices)} device(s) in "
                f"{summary.wall_s:.1f} s; results in {db_path}")
        if as_json:
            click.echo(json.dumps({
                "run_id": summary.run_id, "wall_s": round(summary.wall_s, 3), "db": str(db_path),
                "jobs": [{"device": r.device, "model": r.model, "status": r.status,
                          "reason": r.reason, "attempts": r.attempts, **r.metrics}
                         for r in summary.results]}, default=str))
        else:
            _print_results(store, summary.run_id)
            click.echo(line)
    if failed:
        for r in failed:
            click.echo(f"failed: {r.model} on {r.device}: {r.reason}", err=True)
        raise click.exceptions.Exit(1)


def _print_results(store: ResultsStore, run_id: int) -> None:
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"run {run_id}")
    for col in ("device", "model", "status", "median µs", "p90 µs", "arena B", "upload s",
                "accuracy", "tries", "reason"):
        left = col in ("device", "model", "status", "reason")
        table.add_column(col, justify="left" if left else "right", no_wrap=col != "reason",
                         overflow="fold")
    for r in sorted(store.measurements(run_id), key=lambda r: (r["device"], r["model"])):
        fmt = lambda v, p=1: "–" if v is None else f"{v:,.{p}f}"  # noqa: E731
        table.add_row(r["device"], r["model"],
                      "[green]ok[/]" if r["status"] == "ok" else f"[red]{r['status']}[/]",
                      fmt(r["latency_us_median"]), fmt(r["latency_us_p90"]),
                      fmt(r["arena_used"], 0), fmt(r["upload_s"], 3), fmt(r["accuracy"], 4),
                      str(r["attempts"]), r["reason"] or "")
    console = Console()
    if not console.is_terminal:  # a log file: no need to squeeze into 80 columns
        console = Console(width=160)
    console.print(table)


# -- report --------------------------------------------------------------------------------------

@farm.command()
@DB_OPTION
@click.option("--run", "run_ref", default=None, metavar="ID|latest",
              help="The run to report (default: the latest).")
@click.option("--baseline", default=None, metavar="ID|previous",
              help="Compare with this run and give a regression verdict.")
@click.option("--latency-tol", type=NON_NEGATIVE, default=0.10, show_default=True,
              help="Allowed relative increase of median latency.")
@click.option("--accuracy-tol", type=NON_NEGATIVE, default=0.01, show_default=True,
              help="Allowed absolute drop of accuracy.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("report.html"),
              show_default=True, help="HTML file to write.")
@click.option("--fail-on-regression", is_flag=True, help="Exit 1 when the verdict is a regression.")
def report(db_path: Path, run_ref: str | None, baseline: str | None, latency_tol: float,
           accuracy_tol: float, out: Path, fail_on_regression: bool) -> None:
    """HTML report of a run (plots embedded) and its regression verdict against a baseline."""
    from .html_report import compare, resolve_run, write_report

    if not db_path.exists():
        raise ConfigError(f"results database not found: {db_path}")
    with ResultsStore(db_path) as store:
        run_id = resolve_run(store, run_ref)
        if run_id is None:
            raise ConfigError(f"no run in {db_path} yet")
        verdict = None
        if baseline is not None:
            base_id = resolve_run(store, baseline, default_latest=False)
            verdict = compare(store, run_id, base_id, latency_tol, accuracy_tol)
        path = write_report(store, out, run_id, verdict)
    click.echo(f"report of run {run_id} written to {path}")
    if verdict is not None:
        click.echo(verdict.summary())
        for f in verdict.regressions:
            click.echo(f"  regression: {f.model} on {f.device}: {f.metric} "
                       f"{f.baseline} -> {f.current} ({f.note})")
        if verdict.regressions and fail_on_regression:
            raise click.exceptions.Exit(1)


def _add_labgrid_setup() -> None:
    from device_harness.labgrid.lab_setup import labgrid_setup  # labgrid itself loads on use
    farm.add_command(labgrid_setup)


_add_labgrid_setup()
