"""The farm report: one self-contained HTML file (plots embedded) and a regression verdict.

The verdict compares a run with a baseline run, pair by pair — same device name, same model bytes
(SHA-256): a job that passed in the baseline and fails now is a regression; so is a median latency
more than ``latency_tol`` (relative) above the baseline's, or an accuracy more than ``accuracy_tol``
(absolute) below it. Pairs only one of the two runs has are listed, not judged.
"""

from __future__ import annotations

import base64
import html
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyfarm.atomic_files import write_text
from tinyfarm.errors import ConfigError

from .store import ResultsStore


@dataclass
class Finding:
    device: str
    model: str
    metric: str
    baseline: float | str | None
    current: float | str | None
    regression: bool
    note: str = ""


@dataclass
class Verdict:
    run_id: int
    baseline_id: int
    latency_tol: float
    accuracy_tol: float
    findings: list[Finding] = field(default_factory=list)
    only_in_run: list[tuple[str, str]] = field(default_factory=list)
    only_in_baseline: list[tuple[str, str]] = field(default_factory=list)

    @property
    def regressions(self) -> list[Finding]:
        return [f for f in self.findings if f.regression]

    @property
    def compared(self) -> int:
        return len({(f.device, f.model) for f in self.findings})

    def summary(self) -> str:
        if self.regressions:
            return (f"REGRESSION: {len(self.regressions)} finding(s) in run {self.run_id} vs "
                    f"baseline {self.baseline_id} ({self.compared} device/model pairs compared)")
        return (f"OK: no regression in run {self.run_id} vs baseline {self.baseline_id} "
                f"({self.compared} device/model pairs compared, latency tolerance "
                f"{self.latency_tol:.0%}, accuracy tolerance {self.accuracy_tol:g})")


def latest_per_pair(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The last measurement of each (device, model sha256): retries and reruns keep the newest."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        out[(row["device"], row["model_sha256"])] = row
    return out


def compare(store: ResultsStore, run_id: int, baseline_id: int, latency_tol: float = 0.10,
            accuracy_tol: float = 0.01) -> Verdict:
    store.run(run_id)
    store.run(baseline_id)
    current = latest_per_pair(store.measurements(run_id))
    base = latest_per_pair(store.measurements(baseline_id))
    verdict = Verdict(run_id, baseline_id, latency_tol, accuracy_tol)
    for key in sorted(base.keys() - current.keys()):
        verdict.only_in_baseline.append((key[0], base[key]["model"]))
    for key in sorted(current.keys() - base.keys()):
        verdict.only_in_run.append((key[0], current[key]["model"]))
    for key in sorted(current.keys() & base.keys()):
        cur, old = current[key], base[key]
        device, model = key[0], cur["model"]
        if old["status"] == "ok" and cur["status"] != "ok":
            verdict.findings.append(Finding(device, model, "status", "ok", "failed", True,
                                            cur["reason"] or ""))
            continue
        if cur["status"] != "ok":
            verdict.findings.append(Finding(device, model, "status", old["status"], cur["status"],
                                            False, "failed in both runs"))
            continue
        if old["status"] != "ok":
            verdict.findings.append(Finding(device, model, "status", old["status"], "ok", False,
                                            "fixed"))
            continue
        b, c = old["latency_us_median"], cur["latency_us_median"]
        if b is not None and c is not None and b > 0:
            ratio = c / b
            verdict.findings.append(Finding(device, model, "latency_us_median", b, c,
                                            ratio > 1 + latency_tol, f"x{ratio:.3f}"))
        b, c = old["accuracy"], cur["accuracy"]
        if b is not None and c is not None:
            verdict.findings.append(Finding(device, model, "accuracy", b, c,
                                            c < b - accuracy_tol, f"{c - b:+.4f}"))
    return verdict


# -- plots ---------------------------------------------------------------------------------------

def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _grouped_bars(rows: list[dict[str, Any]], value: str, err: str | None, ylabel: str,
                  title: str, log: bool = False) -> str | None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ok = [r for r in rows if r["status"] == "ok" and r.get(value) is not None]
    if not ok:
        return None
    models = sorted({r["model"] for r in ok})
    devices = sorted({r["device"] for r in ok})
    width = 0.8 / len(devices)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(models) * max(1, len(devices) / 2)), 4))
    x = np.arange(len(models))
    for i, device in enumerate(devices):
        vals, errs = [], []
        for model in models:
            match = [r for r in ok if r["model"] == model and r["device"] == device]
            v = match[-1][value] if match else np.nan
            vals.append(v)
            errs.append((match[-1][err] - v) if match and err and match[-1].get(err) is not None
                        else 0)
        ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=device,
               yerr=[np.zeros(len(errs)), errs] if err else None, capsize=2)
    ax.set_xticks(x, models, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _history(all_rows: list[dict[str, Any]]) -> str | None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in all_rows if r["status"] == "ok" and r.get("latency_us_median") is not None]
    runs = sorted({r["run_id"] for r in ok})
    if len(runs) < 2:
        return None
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(9, 4))
    series: dict[tuple[str, str], dict[int, float]] = {}
    for r in ok:
        series.setdefault((r["device"], r["model"]), {})[r["run_id"]] = r["latency_us_median"]
    models = sorted({m for _, m in series})
    devices = sorted({d for d, _ in series})
    colors = plt.get_cmap("tab10")
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "D", "v", "P"]
    for (device, model), points in sorted(series.items()):  # colour = model, line = device
        xs = sorted(points)
        di = devices.index(device)
        ax.plot(xs, [points[x] for x in xs], color=colors(models.index(model) % 10),
                linestyle=styles[di % len(styles)], marker=markers[di % len(markers)],
                label=f"{model} @ {device}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("run id")
    ax.set_ylabel("median latency (µs)")
    ax.set_yscale("log")
    ax.set_title("Latency history across runs")
    ax.grid(alpha=0.3)
    if len(series) <= 40:
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)


# -- HTML ----------------------------------------------------------------------------------------

def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return html.escape(str(value))


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "–"


CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}td,th{border:1px solid #ccc;
padding:.25em .6em;text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}
.bad{color:#b00020;font-weight:600}.ok{color:#1b7f3b;font-weight:600}img{max-width:100%}
.verdict{font-size:1.15em;padding:.6em;border:2px solid}"""


def render_html(store: ResultsStore, run_id: int, verdict: Verdict | None) -> str:
    run = store.run(run_id)
    rows = store.measurements(run_id)
    all_rows = store.measurements()
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>tinyfarm farm run "
             f"{run_id}</title><style>{CSS}</style></head><body>",
             f"<h1>tinyfarm farm report — run {run_id}</h1>",
             f"<p>Farm <b>{_fmt(run['farm'])}</b> ({_fmt(run['farm_path'])}), {run['kind']} run "
             f"on {html.escape(run['host'])}, started {_when(run['started_at'])}, "
             f"{'finished ' + _when(run['finished_at']) if run['finished_at'] else '<span class=bad>interrupted (never finished)</span>'}"
             f", status <b>{html.escape(run['status'])}</b>. Command: <code>{_fmt(run['command'])}</code></p>"]
    if verdict is not None:
        cls = "bad" if verdict.regressions else "ok"
        parts.append(f"<p class='verdict {cls}'>{html.escape(verdict.summary())}</p>")
    ok = sum(r["status"] == "ok" for r in rows)
    parts.append(f"<h2>Results</h2><p>{ok} of {len(rows)} jobs succeeded.</p>")
    parts.append("<table><tr><th class=l>device</th><th class=l>model</th><th>size (B)</th>"
                 "<th class=l>status</th><th>median µs</th><th>p90 µs</th><th>min µs</th>"
                 "<th>max µs</th><th>median ticks</th><th>arena used (B)</th><th>upload (s)</th>"
                 "<th>upload (B/s)</th><th>accuracy</th><th>attempts</th><th class=l>reason</th></tr>")
    for r in rows:
        status = f"<span class={'ok' if r['status'] == 'ok' else 'bad'}>{r['status']}</span>"
        parts.append(
            f"<tr><td class=l>{html.escape(r['device'])}</td><td class=l>{html.escape(r['model'])}"
            f"</td><td>{r['model_bytes']:,}</td><td class=l>{status}</td>"
            f"<td>{_fmt(r['latency_us_median'])}</td><td>{_fmt(r['latency_us_p90'])}</td>"
            f"<td>{_fmt(r['latency_us_min'])}</td><td>{_fmt(r['latency_us_max'])}</td>"
            f"<td>{_fmt(r['ticks_median'], 0)}</td><td>{_fmt(r['arena_used'])}</td>"
            f"<td>{_fmt(r['upload_s'], 3)}</td><td>{_fmt(r['upload_bytes_per_s'], 0)}</td>"
            f"<td>{_fmt(r['accuracy'], 4)}</td><td>{r['attempts']}</td>"
            f"<td class=l>{_fmt(r['reason'])}</td></tr>")
    parts.append("</table>")
    for title, img in (
        ("Latency per model per device", _grouped_bars(
            rows, "latency_us_median", "latency_us_p90", "median latency (µs), bar to p90",
            f"Run {run_id}: on-device latency", log=True)),
        ("Accuracy per model per device", _grouped_bars(
            rows, "accuracy", None, "accuracy", f"Run {run_id}: on-device accuracy")),
        ("History across runs", _history(all_rows)),
    ):
        parts.append(f"<h2>{title}</h2>")
        parts.append(f"<img alt='{title}' src='data:image/png;base64,{img}'>" if img
                     else "<p>No data for this plot.</p>")
    if verdict is not None:
        parts.append(f"<h2>Comparison with baseline run {verdict.baseline_id}</h2><table><tr>"
                     "<th class=l>device</th><th class=l>model</th><th class=l>metric</th>"
                     "<th>baseline</th><th>current</th><th class=l>change</th><th class=l>verdict</th></tr>")
        for f in verdict.findings:
            mark = "<span class=bad>regression</span>" if f.regression else "ok"
            parts.append(f"<tr><td class=l>{html.escape(f.device)}</td><td class=l>"
                         f"{html.escape(f.model)}</td><td class=l>{f.metric}</td>"
                         f"<td>{_fmt(f.baseline, 2)}</td><td>{_fmt(f.current, 2)}</td>"
                         f"<td class=l>{html.escape(f.note)}</td><td class=l>{mark}</td></tr>")
        parts.append("</table>")
        for label, pairs in (("Only in this run", verdict.only_in_run),
                             ("Only in the baseline", verdict.only_in_baseline)):
            if pairs:
                parts.append(f"<p>{label}: " + ", ".join(html.escape(f"{m} @ {d}")
                                                           for d, m in pairs) + "</p>")
    versions = store.versions(run_id)
    parts.append("<h2>Versions</h2><table>" + "".join(
        f"<tr><td class=l>{html.escape(k)}</td><td class=l>{html.escape(v)}</td></tr>"
        for k, v in versions.items()) + "</table>")
    fw = sorted({(r["device"], r["firmware_version"], r["tflm_version"]) for r in rows
                 if r["firmware_version"]})
    if fw:
        parts.append("<table><tr><th class=l>device</th><th class=l>firmware</th>"
                     "<th class=l>TFLM</th></tr>" + "".join(
                         f"<tr><td class=l>{html.escape(d)}</td><td class=l>{html.escape(f)}</td>"
                         f"<td class=l>{html.escape(t or '')}</td></tr>" for d, f, t in fw)
                     + "</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def resolve_run(store: ResultsStore, value: str | int | None, default_latest: bool = True
                ) -> int | None:
    """A run id from the CLI: a number, ``latest`` or ``previous`` (the one before latest)."""
    if value is None:
        return store.latest_run_id() if default_latest else None
    if isinstance(value, int) or str(value).isdigit():
        run_id = int(value)
        if run_id >= 1 << 63:  # past SQLite's INTEGER: no such run (and no OverflowError)
            raise ConfigError(f"no run {str(value)[:30]} in {store.path}")
        store.run(run_id)
        return run_id
    ids = [r["id"] for r in store.runs()]
    if value == "latest" and ids:
        return ids[-1]
    if value == "previous" and len(ids) >= 2:
        return ids[-2]
    raise ConfigError(f"no run {value!r} in {store.path}")


def write_report(store: ResultsStore, out: str | Path, run_id: int,
                 verdict: Verdict | None) -> Path:
    return write_text(out, render_html(store, run_id, verdict))
