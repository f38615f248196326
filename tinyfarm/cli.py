"""The ``tinyfarm`` command.

Subcommands live next to the code they drive and are imported only when used, so
``tinyfarm --help`` and the device commands start without paying for a TensorFlow import.
Every :class:`~tinyfarm.errors.TinyfarmError` becomes one ``error: ...`` line and a non-zero exit.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys

import click

from tinyfarm import __version__
from tinyfarm.child_process import Terminated, install_termination_handlers
from tinyfarm.errors import TinyfarmError, storage_error
from tinyfarm.log import setup_logging

# TF-MOT needs Keras 2 (tf-keras); this must be set before TensorFlow is first imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# name -> (module, attribute, one-line help shown without importing the module)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("pipeline.commands", "run", "Train, compress, export, evaluate (and deploy) a model from a config."),
    "datasets": ("pipeline.commands", "datasets_cmd", "List the built-in data sets."),
    "twin": ("device_harness.commands", "twin", "Serve a TFLM device twin on a pty or loopback TCP port."),
    "info": ("device_harness.commands", "info", "Show a device's HELLO/INFO fields."),
    "deploy": ("device_harness.commands", "deploy", "Upload a .tflite to a device and verify it there."),
    "invoke": ("device_harness.commands", "invoke", "Run one inference on a device with .npy inputs."),
    "bench": ("device_harness.commands", "bench", "Measure on-device latency over N runs."),
    "evaluate": ("device_harness.commands", "evaluate", "Measure on-device accuracy on a data set's test split."),
    "diff": ("device_harness.diff_command", "diff", "Compare an int8 model layer by layer with its references (host)."),
    "fit": ("device_harness.fit_command", "fit", "Estimate flash, RAM and latency of a .tflite on each board profile."),
    "regress": ("device_harness.regress", "regress", "Compare a model suite on emulators with a baseline."),
    "farm": ("device_harness.farm.commands", "farm", "Inventory and run a farm of devices."),
}


class LazyGroup(click.Group):
    """A click group that imports each subcommand's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:  # a missing optional part is a clear message
            reason = f"'{name}' is not available: {exc}"

            @click.command(name=name, help=COMMANDS[name][2],
                           context_settings={"ignore_unknown_options": True})
            @click.argument("args", nargs=-1, type=click.UNPROCESSED)
            def unavailable(args: tuple[str, ...]) -> None:
                raise TinyfarmError(reason)
            return unavailable

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> None:
        try:
            super().invoke(ctx)  # a command's return value is not an exit status (see main)
        except TinyfarmError as err:
            click.echo(f"error: {err}", err=True)
            ctx.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except OSError as exc:  # a full disk, a read-only folder...: one line (anything else: a bug)
            err = storage_error(exc)
            if err is None:
                raise
            click.echo(f"error: {err}", err=True)
            ctx.exit(err.exit_code)
        except Terminated as exc:  # SIGTERM/SIGHUP: the with-blocks have stopped every child
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """click's main, except that a usage error (a bad option value, a missing argument) is one
        ``error: ...`` line too, not click's three-line usage block."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            click.echo(f"error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Terminated as exc:  # arrived outside a command (while parsing its options)
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:
            if exc.errno != errno.EPIPE:  # stdout closed under us (`tinyfarm ... | head`)
                raise
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tinyfarm")
@click.option("-v", "--verbose", count=True,
              help="Diagnostics on stderr: -v for what was decided (cache, arena, files), -vv for detail.")
def cli(verbose: int) -> None:
    """tinyfarm: compress a TensorFlow model for a microcontroller and measure it on the device.

    \b
    Typical flow:
      tinyfarm run --out runs/digits            # train, prune, quantize, export, evaluate
      tinyfarm deploy runs/digits/model_int8.tflite --device twin
      tinyfarm bench  runs/digits/model_int8.tflite --device qemu
    """
    setup_logging(verbose)


def main() -> None:
    install_termination_handlers()
    cli(prog_name="tinyfarm")


if __name__ == "__main__":
    main()
