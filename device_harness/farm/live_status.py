"""Live progress of a farm run: one line per device (state, jobs done, what it is doing now)."""

from __future__ import annotations

from typing import Any, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .inventory import DeviceSpec


class LiveProgress:
    """Receives the runner's events (thread-safe) and shows them with rich."""

    def __init__(self, console: Console, devices: Sequence[DeviceSpec], jobs_per_device: int,
                 enabled: bool = True):
        # Live bars on a terminal; in a log (CI) one plain stdout line per finished job instead,
        # so stderr keeps only what went wrong.
        self.log_lines = enabled and not console.is_terminal
        enabled = enabled and console.is_terminal
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.fields[device]:<14}"), BarColumn(bar_width=20),
            MofNCompleteColumn(), TextColumn("{task.fields[state]}"), TimeElapsedColumn(),
            console=console, disable=not enabled, transient=False)
        self.tasks = {d.name: self.progress.add_task("", total=jobs_per_device, device=d.name,
                                                     state="queued") for d in devices}
        self.enabled = enabled

    def __enter__(self) -> "LiveProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def event(self, device: str, kind: str, details: dict[str, Any]) -> None:
        task = self.tasks.get(device)
        if task is None:
            return
        if kind == "waiting":
            self.progress.update(task, state=f"[yellow]waiting: {details['holder']}")
        elif kind == "starting":
            self.progress.update(task, state="starting")
        elif kind == "ready":
            info = details.get("info") or {}
            self.progress.update(task, state=f"ready ({info.get('board', '?')})")
        elif kind == "job_start":
            self.progress.update(task, state=f"{details['model']}")
        elif kind == "retry":
            self.progress.update(task, state=f"[yellow]retry {details['model']} "
                                             f"({details['reason']})")
            line = f"{device}: retrying {details['model']}: {details['reason']}"
            if self.enabled:
                self.console.log(line)
            elif self.log_lines:
                print(line, flush=True)
        elif kind == "job_done":
            self.progress.advance(task)
            if self.log_lines:
                med = details["metrics"].get("latency_us_median")
                what = (f"ok, median {med:,.1f} µs" if details["status"] == "ok" and med is not None
                        else details["status"] if details["status"] == "ok"
                        else f"failed: {details['reason']}")
                if details["status"] == "ok" and details["reason"]:
                    what += f"; {details['reason']}"
                print(f"{device}: {details['model']}: {what} (attempts: {details['attempts']})",
                      flush=True)
            if details["status"] == "ok":
                m = details["metrics"]
                med = m.get("latency_us_median")
                self.progress.update(task, state=f"[green]{details['model']}: "
                                                 f"{med:,.0f} µs" if med is not None else "ok")
            else:
                self.progress.update(task, state=f"[red]{details['model']} failed")
                if self.enabled:
                    self.console.log(f"{device}: {details['model']} failed: {details['reason']}")
        elif kind in ("skipped", "unavailable", "error"):
            self.progress.update(task, state=f"[red]{kind}: {details['reason']}")
