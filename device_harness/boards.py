"""Board profiles (``boards.yaml``): RAM for the arena, room for the model, clock, serial baud rate.

A twin started with a profile refuses what the board would refuse: a model larger than its model
buffer (MODEL_TOO_LARGE) or one whose tensors do not fit its arena (ARENA_TOO_SMALL, found by the real
TFLM allocator). Other backends use the same profiles to describe the boards they drive.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tinyfarm import safe_yaml
from tinyfarm.errors import ConfigError, short

BOARDS_PATH = Path(__file__).with_name("boards.yaml")


class BoardProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    doc: str = ""
    cpu: str = "cortex-m4"
    cpu_hz: int = Field(ge=0)
    ram_bytes: int = Field(gt=0)
    flash_bytes: int = Field(gt=0)
    arena_bytes: int = Field(gt=0)
    max_model_bytes: int = Field(gt=0)
    baud: int = Field(gt=0)
    # the firmware's own footprint, measured on its engine-less build (optional; `tinyfarm fit`)
    firmware_flash_bytes: int | None = Field(default=None, ge=0)
    firmware_ram_bytes: int | None = Field(default=None, ge=0)
    firmware_build: str = ""
    kernels: Literal["reference", "cmsis-nn"] = "reference"

    def with_overrides(self, arena_bytes: int | None = None, baud: int | None = None) -> "BoardProfile":
        changes = {k: v for k, v in (("arena_bytes", arena_bytes), ("baud", baud)) if v is not None}
        return self.model_copy(update=changes) if changes else self


@lru_cache(maxsize=None)
def _load(path: str = str(BOARDS_PATH)) -> tuple[str, dict[str, BoardProfile]]:
    raw = safe_yaml.load(Path(path).read_text(), source=str(path))
    try:
        boards = {name: BoardProfile(name=name, **fields) for name, fields in raw["boards"].items()}
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid board profile: {exc}") from None
    return raw["default"], boards


def board_names() -> list[str]:
    return sorted(_load()[1])


def default_board() -> str:
    return _load()[0]


def get_board(name: str | None = None) -> BoardProfile:
    """The profile called ``name`` (the default one when None); ConfigError for an unknown name."""
    default, boards = _load()
    name = name or default
    try:
        return boards[name]
    except KeyError:
        raise ConfigError(f"unknown board profile {short(name)} (known: {', '.join(sorted(boards))})") from None
