"""``tinyfarm regress``: run a suite of models on emulator backends and compare with a committed baseline.

A *suite* (YAML, see ``device_harness/regress_suites/``) lists models and the backends to run them
on, with tolerances. For every (backend, model) the run records:

* exact values -- the device's verdict on the upload (verified / loaded / error code), the SHA-256 of
  the raw output tensors on seeded inputs, tensor counts, and the device description (HELLO);
* tolerated values -- ``arena_used`` (absolute bytes) and ``ticks`` (median of a BENCH, relative).

It prints one table and exits non-zero when any value drifted from the baseline, a value is missing
from it, or a new one appeared; ``--update`` rewrites the baseline instead (with provenance).

Ticks are only comparable where they are deterministic: QEMU with ``-icount`` counts emulated
instruction time (identical run to run); the twin's host-ns ticks are wall-clock and are shown, not
compared (``ticks_rel: null`` in the suite).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import statistics
from pathlib import Path
from typing import Any

import click
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from device_harness.shared_folder import SHARED_MODELS
from tinyfarm import provenance
from tinyfarm import safe_yaml
from tinyfarm.errors import ConfigError, DeviceError, DeviceReplyError, TinyfarmError, short

SUITES_DIR = Path(__file__).with_name("regress_suites")

EXACT = "exact"


class RegressionDrift(TinyfarmError):
    """Values differ from the baseline (exit code 1: a finding, not a usage error)."""

    exit_code = 1


class Tolerance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arena_bytes: int = Field(0, ge=0, description="allowed |current - baseline| of arena_used")
    ticks_rel: float | None = Field(0.02, ge=0, description="allowed relative tick change; null = not compared")


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    path: str | None = None        # .tflite relative to the suite, or "shared:NAME" (third-party models)
    synthetic_bytes: int | None = Field(None, gt=0)  # a seeded byte blob: exercises upload + verify only
    seed: int = 0
    warmup: int = Field(1, ge=0)
    runs: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _one_source(self) -> "ModelEntry":
        if (self.path is None) == (self.synthetic_bytes is None):
            raise ValueError(f"model {short(self.name)}: give exactly one of path / synthetic_bytes")
        return self


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    doc: str = ""
    backends: list[str] = Field(min_length=1)
    tolerance: Tolerance = Tolerance()
    backend_tolerance: dict[str, Tolerance] = {}
    models: list[ModelEntry] = Field(min_length=1)

    def tolerance_for(self, backend: str) -> Tolerance:
        return self.backend_tolerance.get(backend, self.tolerance)


def load_suite(spec: str) -> tuple[Suite, Path]:
    """A suite by path, or by the name of a built-in one (``regress_suites/NAME.yaml``)."""
    import yaml  # noqa: PLC0415

    path = Path(spec)
    if not path.exists() and (SUITES_DIR / f"{spec}.yaml").exists():
        path = SUITES_DIR / f"{spec}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SUITES_DIR.glob("*.yaml")))
        raise ConfigError(f"suite {short(spec)} not found (a YAML path, or one of: {known})")
    try:
        raw = safe_yaml.load(path.read_text(), source=str(path))
        return Suite(**raw), path.resolve()
    except (yaml.YAMLError, TypeError) as exc:
        raise ConfigError(f"{path}: not a valid suite file: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def model_bytes(entry: ModelEntry, suite_path: Path) -> bytes:
    if entry.synthetic_bytes is not None:
        return np.random.default_rng(entry.seed).integers(0, 256, entry.synthetic_bytes, dtype=np.uint8).tobytes()
    assert entry.path is not None
    if entry.path.startswith("shared:"):
        path = SHARED_MODELS / entry.path.split(":", 1)[1]
    else:
        path = (suite_path.parent / entry.path).resolve()
    if not path.is_file():
        raise ConfigError(f"model {short(entry.name)}: {path} not found"
                          + (" (set TINYFARM_SHARED_MODELS)" if entry.path.startswith("shared:") else ""))
    return path.read_bytes()


def run_model(session: Any, entry: ModelEntry, data: bytes) -> dict[str, Any]:
    """Upload, then (with an engine) invoke on seeded inputs and bench; the values to compare."""
    rec: dict[str, Any] = {"model_sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    try:
        up = session.upload(data)
    except DeviceReplyError as err:
        rec["error"] = err.name if type(err) is not DeviceReplyError else str(err.code)
        return rec
    rec.update(verified=up.verified, loaded=up.loaded)
    if not up.loaded:
        return rec
    rec.update(inputs=up.inputs, outputs=up.outputs, arena_used=up.arena_used)
    outputs, _ = session.invoke(session.seeded_inputs(entry.seed))
    digest = hashlib.sha256()
    for arr in outputs:
        digest.update(np.ascontiguousarray(arr).tobytes())
    rec["outputs_sha256"] = digest.hexdigest()
    rec["ticks"] = int(statistics.median(session.bench_ticks(entry.warmup, entry.runs)))
    return rec


def run_backend(label: str, suite: Suite, suite_path: Path, progress: Any = None) -> dict[str, Any]:
    from device_harness.session import DeviceSession  # noqa: PLC0415

    results: dict[str, Any] = {}
    with DeviceSession.for_device(label) as session:
        info = session.info
        results["device"] = {
            "board": info.board, "tflm_version": info.tflm_version, "capabilities": info.capabilities,
            "tick_source": info.tick_source, "tick_hz": info.tick_hz,
            "max_model_bytes": info.max_model_bytes, "arena_bytes": info.arena_bytes,
        }
        for entry in suite.models:
            if progress is not None:
                progress(label, entry.name)
            results[entry.name] = run_model(session, entry, model_bytes(entry, suite_path))
    return results


def compare_value(metric: str, base: Any, cur: Any, tol: Tolerance) -> tuple[str, str]:
    """(status, rule) for one metric: status is ok / DRIFT / info."""
    if metric == "ticks":
        if tol.ticks_rel is None:
            return "info", "not compared"
        if base is None or cur is None:
            return ("ok" if base == cur else "DRIFT"), EXACT
        limit = abs(base) * tol.ticks_rel
        return ("ok" if abs(cur - base) <= limit else "DRIFT"), f"±{100 * tol.ticks_rel:g}%"
    if metric == "arena_used" and isinstance(base, int) and isinstance(cur, int):
        return ("ok" if abs(cur - base) <= tol.arena_bytes else "DRIFT"), f"±{tol.arena_bytes} B"
    return ("ok" if base == cur else "DRIFT"), EXACT


def compare(suite: Suite, baseline: dict[str, Any], current: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (backend, item, metric) in either side; rows missing on one side are drift."""
    rows = []
    base_results = baseline.get("results", {})
    for backend, items in current.items():
        tol = suite.tolerance_for(backend)
        base_items = base_results.get(backend, {})
        for item in sorted(set(items) | set(base_items), key=lambda k: (k != "device", k)):
            cur_m, base_m = items.get(item, {}), base_items.get(item, {})
            for metric in sorted(set(cur_m) | set(base_m)):
                if metric not in base_m:
                    status, rule = "DRIFT", "not in baseline"
                elif metric not in cur_m:
                    status, rule = "DRIFT", "missing now"
                else:
                    status, rule = compare_value(metric, base_m[metric], cur_m[metric], tol)
                rows.append({"backend": backend, "item": item, "metric": metric, "baseline": base_m.get(metric),
                             "current": cur_m.get(metric), "rule": rule, "status": status})
    return rows


def _short(v: Any) -> str:
    s = "—" if v is None else str(v)
    return s[:12] + "…" if len(s) > 16 else s


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=title)
    for col in ("backend", "item", "metric", "baseline", "current", "rule", "status"):
        table.add_column(col, justify="right" if col in ("baseline", "current") else "left")
    style = {"ok": "green", "DRIFT": "bold red", "info": "dim"}
    for r in rows:
        table.add_row(r["backend"], r["item"], r["metric"], _short(r["baseline"]), _short(r["current"]),
                      r["rule"], f"[{style[r['status']]}]{r['status']}[/]")
    Console(width=max(120, Console().width)).print(table)


def write_baseline(path: Path, suite: Suite, suite_path: Path, results: dict[str, Any]) -> None:
    provenance.write_json(path, {
        "suite": suite.name,
        "suite_sha256": provenance.sha256_file(suite_path),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": provenance.library_versions(),
        "results": results,
    })


@click.command("regress")
@click.option("--suite", "suite_spec", required=True, help="Suite YAML path or built-in name (e.g. emulators).")
@click.option("--baseline", "baseline_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Baseline JSON to compare with (written by --update).")
@click.option("--update", is_flag=True, help="Write the current values as the new baseline.")
@click.option("--backend", "backends", multiple=True,
              help="Run only these backends (device strings from the suite, e.g. twin, qemu); repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison rows as JSON.")
def regress(suite_spec: str, baseline_path: Path, update: bool, backends: tuple[str, ...], as_json: bool) -> None:
    """Run a model suite on emulator backends and compare with a committed baseline.

    Outputs are compared exactly, arena bytes and ticks within the suite's tolerances; exits 1 on
    drift. Example: tinyfarm regress --suite emulators --baseline device_harness/regress_suites/emulators.baseline.json
    """
    from rich.console import Console  # noqa: PLC0415

    suite, suite_path = load_suite(suite_spec)
    chosen = list(backends) or suite.backends
    unknown = [b for b in chosen if b not in suite.backends]
    if unknown:
        raise ConfigError(f"backend(s) {', '.join(unknown)} not in suite {suite.name} ({', '.join(suite.backends)})")
    baseline: dict[str, Any] = {}
    if not update:
        if not baseline_path.is_file():
            raise ConfigError(f"baseline {baseline_path} not found: create it with --update")
        try:
            baseline = json.loads(baseline_path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"baseline {baseline_path} is not valid JSON: {exc}") from None

    console = Console(stderr=True)
    current: dict[str, Any] = {}
    with console.status("starting") as status:
        def progress(backend: str, model: str) -> None:
            status.update(f"[bold]{backend}[/]: {model}")
        for label in chosen:
            try:
                current[label] = run_backend(label, suite, suite_path, progress)
            except DeviceError as err:
                raise DeviceError(f"{label}: {err}") from None

    if update:
        merged = dict(baseline_path.is_file() and json.loads(baseline_path.read_text()).get("results", {}) or {})
        merged.update(current)
        write_baseline(baseline_path, suite, suite_path, merged)
        console.print(f"baseline written: {baseline_path} ({', '.join(current)})")
        return
    rows = compare(suite, baseline, current)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
    else:
        print_table(rows, f"regress {suite.name} vs {baseline_path.name}")
    drift = [r for r in rows if r["status"] == "DRIFT"]
    if drift:
        raise RegressionDrift(f"{len(drift)} value(s) drifted from {baseline_path}: "
                              + ", ".join(f"{r['backend']}/{r['item']}/{r['metric']}" for r in drift[:5]))
    console.print(f"[green]no drift[/] ({len(rows)} values, {', '.join(current)})")
