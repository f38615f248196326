"""Config validation: defaults, the shipped configs, and one-line errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import PipelineConfig, load_config, parse_config
from tinyfarm.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_no_config_is_the_digits_default_and_digits_yaml_spells_it_out():
    default = load_config(None)
    assert default.dataset.name == "digits"
    assert load_config(REPO / "configs" / "digits.yaml") == default


def test_mnist1d_config_is_valid():
    cfg = load_config(REPO / "configs" / "mnist1d.yaml")
    assert cfg.dataset.name == "mnist1d" and cfg.baseline.family == "cnn1d"


@pytest.mark.parametrize("data, fragment", [
    ({"baseline": {"widht": 8}}, "baseline.widht: unknown field"),
    ({"nonsense": 1}, "nonsense: unknown field"),
    ({"prune": {"target_sparsity": 1.5}}, "prune.target_sparsity: Input should be less than 1"),
    ({"baseline": {"epochs": 0}}, "baseline.epochs: Input should be greater than or equal to 1"),
    ({"export": {"baseline_kinds": ["int4"]}}, "export.baseline_kinds.0: Input should be"),
    ({"prune": {"m_by_n": [4, 2]}}, "prune.m_by_n: Value error, m_by_n must be [m, n] with 0 < m < n"),
    ({"baseline": {"train": False}}, "needs baseline.model_path"),
    ({"seed": "abc"}, "seed: Input should be a valid integer"),
])
def test_invalid_fields_are_named_in_one_line(data, fragment):
    with pytest.raises(ConfigError) as err:
        parse_config(data, source="my.yaml")
    assert fragment in str(err.value)
    assert str(err.value).startswith("my.yaml: ")
    assert "\n" not in str(err.value)


def test_malformed_yaml_reports_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("baseline:\n  width: 8\n  depth: [1, 2\n")
    with pytest.raises(ConfigError, match=r"malformed YAML at line \d+"):
        load_config(path)


def test_top_level_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "c.yaml"
    path.write_text("dataset:\n  path: data.npz\nbaseline:\n  model_path: ../m.keras\n")
    cfg = load_config(path)
    assert cfg.dataset.path == (tmp_path / "sub" / "data.npz").resolve()
    assert cfg.baseline.model_path == (tmp_path / "m.keras").resolve()


def test_empty_file_is_the_default(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path) == PipelineConfig()
