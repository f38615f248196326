"""The budget and the choice among candidates (pure functions: no training)."""

from __future__ import annotations

import pytest

from pipeline.budget import Budget, Candidate, choose, goal_decided, resolve_budget
from pipeline.config import parse_config
from tinyfarm.errors import ConfigError


def budget(goal: str = "smallest", flash: int = 16384, ram: int = 65536, floor: float | None = 0.99) -> Budget:
    return Budget(board="b", flash_bytes=flash, ram_bytes=ram, floor=floor, goal=goal, select_on="val")


LADDER = [Candidate("ptq", 61904, 5696, 0.995), Candidate("w100", 20000, 7000, 0.994),
          Candidate("w50", 9000, 4000, 0.992), Candidate("w25", 4000, 3000, 0.985)]


def test_resolve_budget_from_board_and_overrides():
    cfg = parse_config({"target": {"board": "stm32f4-discovery", "flash_bytes": 16384, "max_drop": 0.01}})
    b = resolve_budget(cfg.target, 0.995)
    assert b.flash_bytes == 16384
    assert b.ram_bytes == 65536  # the board profile's arena
    assert b.floor == pytest.approx(0.985)
    both = parse_config({"target": {"min_accuracy": 0.99, "max_drop": 0.02}}).target
    assert resolve_budget(both, 0.995).floor == pytest.approx(0.99)  # the stricter floor wins
    assert resolve_budget(parse_config({"target": {"max_drop": None}}).target, 0.9).floor is None


def test_unknown_board_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown board"):
        resolve_budget(parse_config({"target": {"board": "no-such-board"}}).target, None)


def test_bad_target_values_are_refused():
    with pytest.raises(ConfigError, match="target.flash_bytes"):
        parse_config({"target": {"flash_bytes": -5}})
    with pytest.raises(ConfigError, match="target.goal"):
        parse_config({"target": {"goal": "fastest"}})
    with pytest.raises(ConfigError, match="same step twice"):
        parse_config({"search": {"steps": [{"width": 0.5}, {"width": 0.5}]}})


def test_smallest_keeps_the_floor():
    c = choose(LADDER, budget("smallest"))
    assert c.met and c.chosen.name == "w50"  # w25 is smaller but under the floor
    assert "smallest" in c.why


def test_accurate_is_the_most_accurate_that_fits():
    c = choose(LADDER, budget("accurate", floor=None))
    assert c.met and c.chosen.name == "w50"  # ptq and w100 are more accurate but too large
    c = choose(LADDER, budget("accurate", flash=1 << 20, floor=None))
    assert c.chosen.name == "ptq"


def test_ram_counts_and_unallocatable_never_fits():
    assert not Candidate("x", 100, 70000, 1.0).fits(budget())
    assert not Candidate("x", 100, None, 1.0).fits(budget())


def test_nothing_fits_names_the_gap():
    c = choose(LADDER, budget("smallest", flash=2048))
    assert not c.met
    assert c.chosen.name == "w50"  # keeps the floor, the smallest overshoot
    assert "6,952 B over the flash budget" in c.why
    c = choose(LADDER, budget("accurate", flash=2048, floor=None))
    assert not c.met and c.chosen.name == "w25" and "1,952 B over" in c.why


def test_goal_decided_stops_the_ladder():
    assert not goal_decided([], budget())
    assert goal_decided(LADDER[:3], budget("accurate"))  # w50 fits: smaller ones cannot be more accurate
    assert not goal_decided(LADDER[:2], budget("accurate"))
    assert goal_decided(LADDER, budget("smallest"))  # w25 crossed the floor
    assert not goal_decided(LADDER[:3], budget("smallest"))
    assert not goal_decided(LADDER, budget("smallest"), patience=2)  # one miss in a row only
    assert goal_decided(LADDER + [Candidate("w18", 3000, 2000, 0.97)], budget("smallest"), patience=2)
