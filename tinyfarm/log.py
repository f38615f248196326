"""Diagnostics through Python's ``logging``, to stderr, at the verbosity of ``tinyfarm -v``.

What the user is meant to read while a command runs (progress, tables, results) goes through the
commands' own console output; ``logging`` carries the diagnostics behind it — why a stage was
skipped or re-run, which arena was chosen, which files were written. Modules log with
``logger = logging.getLogger(__name__)``; :func:`setup_logging` decides what is shown:

- no ``-v``: warnings and errors only (the default);
- ``-v``: INFO from tinyfarm's own packages (``pipeline``, ``device_harness``, ``tinyfarm``,
  ``tinyfarm_datasets``);
- ``-vv``: DEBUG from them; third-party libraries stay at WARNING (``-vvv`` opens those too).
"""

from __future__ import annotations

import logging
import sys

PACKAGES = ("tinyfarm", "pipeline", "device_harness", "tinyfarm_datasets")
FORMAT = logging.BASIC_FORMAT  # "LEVEL:logger:message", as logging.basicConfig() prints


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (test runners and click swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; always follow sys.stderr
        pass


def level_for(verbosity: int) -> int:
    """WARNING for 0, INFO for 1, DEBUG for 2 or more."""
    return logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG


def setup_logging(verbosity: int = 0) -> None:
    """Send log records to stderr at the level ``verbosity`` (the count of ``-v``) asks for.

    Idempotent: calling it again (another command in the same process, tests) replaces the handler
    it installed instead of adding a second one.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StderrHandler):
            root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbosity >= 3 else logging.WARNING)
    for name in PACKAGES:
        logging.getLogger(name).setLevel(level_for(verbosity))
