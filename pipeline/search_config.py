"""The ``target`` and ``search`` sections: what the model must fit, and the steps tried to get there.

``target`` is the budget — a board profile (flash and RAM from ``device_harness/boards.yaml``)
and/or explicit ``flash_bytes`` / ``ram_bytes``, an accuracy floor (``min_accuracy``, or
``max_drop`` against the float baseline) — and the goal: the most ``accurate`` model that fits, or
the ``smallest`` model that keeps the floor.

``search`` is the method the product is built on — compress, retrain, measure, repeat — as a ladder
of steps from the least to the most compression. Each step narrows the baseline (structured
pruning: a share of its filters and units kept), optionally prunes it (unstructured sparsity),
clusters its weights (a few distinct values per channel), fine-tunes with cluster-preserving QAT,
and stores the int8 weights with TFLM's own compression (LUT or pruning encoding). The loop stops
as soon as the goal is decided; every candidate is kept.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Section(BaseModel):
    # Same rules as ``pipeline.config.Section`` (which imports this module, hence not shared).
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TargetSection(_Section):
    """The budget a deployable model must meet, and which model wins among those that do."""

    board: str | None = Field(None, description="board profile (tinyfarm boards); None: the default board")
    flash_bytes: int | None = Field(
        16384, ge=256, description="flash for the model (.tflite bytes as stored); None: the board's flash")
    ram_bytes: int | None = Field(
        None, ge=256, description="RAM for the model (arena + decompression memory); None: the board "
                                  "profile's arena")
    min_accuracy: float | None = Field(None, gt=0, le=1, description="accuracy floor (0..1)")
    max_drop: float | None = Field(
        0.01, ge=0, lt=1, description="accuracy floor as a drop from the float baseline (0.01: one point)")
    goal: Literal["smallest", "accurate"] = Field(
        "accurate", description="smallest: the least flash that keeps the floor; accurate: the most "
                                "accurate model that fits")
    select_on: Literal["val", "test"] = Field(
        "val", description="split whose accuracy decides (val keeps the test split unseen)")


class SearchStep(_Section):
    """One rung of the ladder: how much of the baseline is kept and how its weights are stored."""

    width: float = Field(1.0, gt=0, le=1, description="share of filters/units kept (structured pruning)")
    sparsity: float | None = Field(None, gt=0, lt=1, description="unstructured magnitude pruning "
                                   "(stored with TFLM's pruning encoding)")
    clusters: int | None = Field(16, ge=2, le=128, description="distinct weight values per channel "
                                 "(stored as a TFLM look-up table); None: no clustering")

    @property
    def label(self) -> str:
        parts = [f"w{round(self.width * 100)}"]
        if self.sparsity:
            parts.append(f"s{round(self.sparsity * 100)}")
        if self.clusters:
            parts.append(f"c{self.clusters}")
        return "_".join(parts)


def _default_steps() -> list[SearchStep]:
    return [SearchStep(width=1.0, sparsity=0.8, clusters=16), SearchStep(width=0.5, clusters=16),
            SearchStep(width=0.35, clusters=16), SearchStep(width=0.25, clusters=16),
            SearchStep(width=0.25, clusters=8), SearchStep(width=0.18, clusters=8)]


class SearchSection(_Section):
    """The compress-retrain-measure loop (after ``export``; its candidates become variants)."""

    enabled: bool = True
    steps: list[SearchStep] = Field(default_factory=_default_steps, min_length=1,
                                    description="tried in order: least compression first")
    compression: Literal["auto", "lut", "prune", "none"] = Field(
        "auto", description="TFLM weight compression per tensor: auto picks the smaller of LUT and "
                            "pruning encoding")
    distill: bool = Field(True, description="narrowed models learn from the baseline (teacher)")
    fine_tune_epochs: int = Field(25, ge=1, description="epochs after narrowing")
    prune_epochs: int = Field(10, ge=1)
    cluster_epochs: int = Field(5, ge=1)
    qat_epochs: int = Field(5, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(2e-3, gt=0)
    stop_early: bool = Field(True, description="stop once the goal is decided (False: try every step)")
    patience: int = Field(2, ge=1, description="goal smallest: rungs under the floor in a row before "
                                               "the ladder stops")

    @model_validator(mode="after")
    def _unique_labels(self) -> "SearchSection":
        labels = [s.label for s in self.steps]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"search.steps: the same step twice: {', '.join(dup)}")
        return self
