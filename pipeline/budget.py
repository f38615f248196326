"""The budget a model must meet and the choice among candidates: pure functions, no training.

A :class:`Budget` is the config's ``target`` section resolved against a board profile and the
float baseline's accuracy. A :class:`Candidate` is what the search measured of one model: flash
(the ``.tflite`` as stored, compressed when TFLM compression paid), RAM (tensor arena + the
decompression memory DECODE writes into) and accuracy on the selection split. :func:`choose`
picks the deployable model for the goal and says, in one line, why — or by how much the best
candidate misses.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Budget:
    """Flash and RAM for the model on ``board``, the accuracy floor, and what wins."""

    board: str
    flash_bytes: int
    ram_bytes: int
    floor: float | None  # on the selection split, 0..1
    goal: str  # "smallest" | "accurate"
    select_on: str  # "val" | "test"
    floor_source: str = ""  # how the floor was set, for the report

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def resolve_budget(target, baseline_accuracy: float | None) -> Budget:
    """The ``target`` section (:class:`pipeline.search_config.TargetSection`) made concrete.

    Flash defaults to the board's flash, RAM to the arena its firmware reserves; the floor is
    ``min_accuracy``, else the float baseline's accuracy minus ``max_drop`` (the higher of the two
    when both are set), on the ``select_on`` split.
    """
    from device_harness.boards import get_board

    board = get_board(target.board)
    floors = []
    source = []
    if target.min_accuracy is not None:
        floors.append(target.min_accuracy)
        source.append(f"min_accuracy {100 * target.min_accuracy:.2f}%")
    if target.max_drop is not None and baseline_accuracy is not None:
        floors.append(baseline_accuracy - target.max_drop)
        source.append(f"float baseline {100 * baseline_accuracy:.2f}% - {100 * target.max_drop:.2f} points")
    return Budget(board=board.name, flash_bytes=target.flash_bytes or board.flash_bytes,
                  ram_bytes=target.ram_bytes or board.arena_bytes,
                  floor=max(floors) if floors else None, goal=target.goal, select_on=target.select_on,
                  floor_source=" and ".join(source))


@dataclass
class Candidate:
    """One compressed model as measured: the figures the choice reads."""

    name: str
    flash_bytes: int
    ram_bytes: int | None  # None: TFLM could not allocate it (does not fit any RAM)
    accuracy: float  # on the selection split
    test_accuracy: float | None = None
    extra: dict = field(default_factory=dict)

    def fits(self, budget: Budget) -> bool:
        return (self.flash_bytes <= budget.flash_bytes and self.ram_bytes is not None
                and self.ram_bytes <= budget.ram_bytes)

    def keeps_floor(self, budget: Budget) -> bool:
        return budget.floor is None or self.accuracy >= budget.floor - 1e-9


def goal_decided(candidates: list[Candidate], budget: Budget, patience: int = 1) -> bool:
    """Whether more compression can no longer change the choice (the ladder only compresses more).

    ``accurate``: the latest candidate fits — the next ones are smaller and, as a rule, less
    accurate. ``smallest``: the last ``patience`` candidates all crossed the floor (rungs differ in
    kind — pruning, narrowing, fewer clusters — so one miss need not mean the next rung misses).
    """
    if not candidates:
        return False
    if budget.goal == "accurate":
        return candidates[-1].fits(budget)
    recent = candidates[-patience:]
    return len(recent) == patience and not any(c.keeps_floor(budget) for c in recent)


@dataclass(frozen=True)
class Choice:
    chosen: Candidate | None
    why: str  # one line: why this candidate, or by how much the best one misses
    met: bool


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _describe_miss(c: Candidate, budget: Budget) -> str:
    misses = []
    if c.flash_bytes > budget.flash_bytes:
        misses.append(f"{c.flash_bytes - budget.flash_bytes:,} B over the flash budget "
                      f"({c.flash_bytes:,} > {budget.flash_bytes:,} B)")
    if c.ram_bytes is None:
        misses.append("does not allocate on TFLM")
    elif c.ram_bytes > budget.ram_bytes:
        misses.append(f"{c.ram_bytes - budget.ram_bytes:,} B over the RAM budget "
                      f"({c.ram_bytes:,} > {budget.ram_bytes:,} B)")
    if not c.keeps_floor(budget):
        misses.append(f"{100 * (budget.floor - c.accuracy):.2f} points under the accuracy floor "
                      f"({_pct(c.accuracy)} < {_pct(budget.floor)} on {budget.select_on})")
    return "; ".join(misses)


def choose(candidates: list[Candidate], budget: Budget) -> Choice:
    """The deployable candidate for ``budget.goal``, or the closest miss and what it misses by."""
    if not candidates:
        return Choice(None, "no candidate was measured", False)
    ok = [c for c in candidates if c.fits(budget) and c.keeps_floor(budget)]
    where = (f"{budget.flash_bytes:,} B flash, {budget.ram_bytes:,} B RAM ({budget.board})"
             + (f", floor {_pct(budget.floor)} on {budget.select_on}" if budget.floor is not None else ""))
    if ok:
        if budget.goal == "smallest":
            best = min(ok, key=lambda c: (c.flash_bytes, -c.accuracy))
            why = (f"{best.name}: the smallest of {len(ok)} candidate(s) within {where} — "
                   f"{best.flash_bytes:,} B, {_pct(best.accuracy)} on {budget.select_on}")
        else:
            best = max(ok, key=lambda c: (c.accuracy, -c.flash_bytes))
            why = (f"{best.name}: the most accurate of {len(ok)} candidate(s) within {where} — "
                   f"{_pct(best.accuracy)} on {budget.select_on}, {best.flash_bytes:,} B")
        return Choice(best, why, True)
    # Nothing meets everything: the closest miss. Fitting matters first for "accurate", the floor
    # first for "smallest"; then the smaller shortfall.
    def shortfall(c: Candidate) -> tuple:
        over = max(0, c.flash_bytes - budget.flash_bytes) / budget.flash_bytes + (
            1.0 if c.ram_bytes is None else max(0, c.ram_bytes - budget.ram_bytes) / budget.ram_bytes)
        under = 0.0 if c.keeps_floor(budget) else budget.floor - c.accuracy
        return (over, under) if budget.goal == "accurate" else (under, over)

    best = min(candidates, key=shortfall)
    return Choice(best, f"no candidate meets {where}: the closest, {best.name}, "
                        f"{_describe_miss(best, budget)}", False)
