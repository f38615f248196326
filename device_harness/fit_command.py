"""``tinyfarm fit MODEL``: what each board profile will take of a model (see :mod:`device_harness.fit`)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .fit import KERNELS


@click.command("fit")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--board", "boards", multiple=True,
              help="Board profile (boards.yaml); repeat for several. Default: every profile.")
@click.option("--kernels", type=click.Choice(KERNELS), default=None,
              help="TFLM kernel library for the latency estimate (default: the profile's `kernels`).")
@click.option("--no-arena", is_flag=True, help="Skip the arena search on the twin's TFLM (faster; RAM unknown).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def fit(model: str, boards: tuple[str, ...], kernels: str | None, no_arena: bool, as_json: bool) -> None:
    """Flash, RAM (arena estimated for a 32-bit target) and estimated latency of MODEL per board.

    Estimates only: nothing runs on a device. Constants and their sources:
    device_harness/cost_model.yaml; firmware footprints: device_harness/boards.yaml.
    """
    from tinyfarm.tflite_file import read_model  # noqa: PLC0415

    from .boards import board_names, get_board  # noqa: PLC0415
    from .fit import fit as fit_all, format_text, model_facts  # noqa: PLC0415

    profiles = [get_board(name) for name in (boards or board_names())]
    facts = model_facts(read_model(model), Path(model).name, host_arena=not no_arena)
    result = fit_all(facts, profiles, kernels)
    click.echo(json.dumps(result) if as_json else format_text(result))
