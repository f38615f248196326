"""The ``tinyfarm`` command.

Subcommands live next to the code they drive and are imported only when used, so
``tinyfarm --help`` and the device commands start without paying for a TensorFlow import.
Every :class:`~tinyfarm.errors.TinyfarmError` becomes one ``error: ...`` line and a non-zero exit.
"""

from __future__ import annotations

import importlib
import os

import click

from tinyfarm import __version__
from tinyfarm.errors import TinyfarmError
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

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TinyfarmError as err:
            click.echo(f"error: {err}", err=True)
            ctx.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


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
    cli(prog_name="tinyfarm")


if __name__ == "__main__":
    main()
