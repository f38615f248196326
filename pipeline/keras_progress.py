"""The per-epoch progress of ``model.fit``: a rich bar on a terminal, compact lines otherwise."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.keras_env import keras
from pipeline.progress import console, format_metrics


class EpochProgress(keras.callbacks.Callback):
    """Keras callback: a rich bar (terminal) or one line per epoch at most every ``min_interval`` s."""

    def __init__(self, label: str, epochs: int, min_interval: float = 2.0, out: Console | None = None):
        super().__init__()
        self.label, self.epochs, self.min_interval = label, epochs, min_interval
        self.out = out or console
        self._progress: Progress | None = None
        self._task = None
        self._last_print = 0.0
        self._start = 0.0

    def on_train_begin(self, logs=None):
        self._start = self._last_print = time.monotonic()
        if self.out.is_terminal:
            self._progress = Progress(TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[metrics]}"), TimeElapsedColumn(),
                                      console=self.out, transient=True)
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.epochs, metrics="")

    def on_epoch_end(self, epoch, logs=None):
        line = format_metrics(logs)
        if self._progress is not None:
            self._progress.update(self._task, advance=1, metrics=line)
            return
        now = time.monotonic()
        if now - self._last_print >= self.min_interval or epoch + 1 == self.epochs:
            self.out.print(f"  {self.label} epoch {epoch + 1}/{self.epochs}  {line}")
            self._last_print = now

    def on_train_end(self, logs=None):
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        epochs_run = len(self.model.history.epoch) if getattr(self.model, "history", None) else self.epochs
        last = self.model.history.history if getattr(self.model, "history", None) else {}
        summary = {k: v[-1] for k, v in last.items() if v} if last else {}
        self.out.print(f"  {self.label}: {epochs_run} epochs in {time.monotonic() - self._start:.1f} s  "
                       f"{format_metrics(summary)}")
