"""Progress the user can see: a live bar per training run on a terminal, compact lines otherwise.

Anything that takes more than a couple of seconds (training, conversion, evaluation, the TFLM arena
search) goes through here, so a run never looks hung. The per-epoch callback of ``model.fit`` is
:class:`pipeline.keras_progress.EpochProgress` (it imports TensorFlow, this module does not).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True, highlight=False, soft_wrap=True)


def format_metrics(logs: dict | None) -> str:
    logs = logs or {}
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    return "  ".join(f"{k} {logs[k]:.4f}" for k in keys if k in logs)


@contextmanager
def task(label: str, total: int | None = None) -> Iterator["_Ticker"]:
    """A step with a live counter on a terminal (``tick()`` per item) and a closing line with its time."""
    ticker = _Ticker(label, total)
    try:
        yield ticker
    finally:
        ticker.close()


class _Ticker:
    def __init__(self, label: str, total: int | None):
        self.label, self.total, self.done = label, total, 0
        self.start = time.monotonic()
        self._last_print = self.start
        self._progress = None
        if console.is_terminal:
            self._progress = Progress(TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=console, transient=True)
            self._progress.start()
            self._task = self._progress.add_task(label, total=total)

    def tick(self, n: int = 1, note: str = "") -> None:
        self.done += n
        if self._progress is not None:
            self._progress.update(self._task, advance=n, description=f"{self.label} {note}".strip())
            return
        now = time.monotonic()
        if now - self._last_print >= 2.0:
            of = f"/{self.total}" if self.total else ""
            console.print(f"  {self.label} {self.done}{of} {note}".rstrip())
            self._last_print = now

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
