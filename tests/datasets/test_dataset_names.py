"""Issue #14: a user's data set is called after its file (or ``dataset.name``), never "digits"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.config import PipelineConfig, load_config, parse_config
from tinyfarm_datasets import dataset_label, load_dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny_npz(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "sensor_readings.npz"
    np.savez(path, x_train=rng.normal(size=(40, 5)).astype(np.float32), y_train=np.arange(40) % 2,
             x_test=rng.normal(size=(10, 5)).astype(np.float32), y_test=np.arange(10) % 2)
    return path


def test_default_and_digits_yaml_are_digits():
    assert PipelineConfig().dataset.name == "digits"
    assert load_config(REPO / "configs" / "digits.yaml").dataset == PipelineConfig().dataset
    assert parse_config({"dataset": {"name": None}}).dataset.name == "digits"
    assert parse_config({"dataset": {"name": "mnist1d"}}).dataset.name == "mnist1d"


def test_a_path_names_the_data_set_after_its_file(tiny_npz):
    cfg = parse_config({"dataset": {"path": str(tiny_npz)}})
    assert cfg.dataset.name == "sensor_readings"
    assert parse_config({"dataset": {"path": str(tiny_npz), "name": None}}).dataset.name == "sensor_readings"
    # relative paths resolve against the config's folder; the stem is the same
    cfg = parse_config({"dataset": {"path": "sub/trial.npz"}}, base_dir=tiny_npz.parent)
    assert cfg.dataset.name == "trial" and cfg.dataset.path.is_absolute()


def test_an_explicit_name_wins_unless_it_is_a_builtin(tiny_npz):
    cfg = parse_config({"dataset": {"path": str(tiny_npz), "name": "bearing faults"}})
    assert cfg.dataset.name == "bearing faults"
    # a copy of configs/digits.yaml with the path filled in: not "digits"
    for builtin in ("digits", "mnist1d"):
        cfg = parse_config({"dataset": {"path": str(tiny_npz), "name": builtin}})
        assert cfg.dataset.name == "sensor_readings"
    cfg = load_config(REPO / "configs" / "digits.yaml")
    cfg.dataset.path = tiny_npz
    assert cfg.dataset.name == "sensor_readings"


def test_path_set_later_renames_an_unnamed_data_set(tiny_npz):
    cfg = PipelineConfig()
    cfg.dataset.path = tiny_npz
    assert cfg.dataset.name == "sensor_readings"
    cfg.dataset.name = "mine"
    cfg.dataset.path = tiny_npz.with_name("other.npz")
    assert cfg.dataset.name == "mine"


def test_loader_labels_user_data_by_its_stem(tiny_npz):
    assert load_dataset(None, path=tiny_npz).name == "sensor_readings"
    assert load_dataset(str(tiny_npz)).name == "sensor_readings"
    assert load_dataset("label", path=tiny_npz).name == "label"
    assert load_dataset("digits", path=tiny_npz).name == "sensor_readings"
    assert dataset_label(None, None) == "digits" and dataset_label("", "a/b.npz") == "b"


def test_report_and_console_use_the_name(tiny_npz):
    """report.md's title and the console's summary table take the name from report.json."""
    from pipeline.report import render_markdown

    splits = load_dataset(None, path=tiny_npz)
    report = {"dataset": {**splits.summary(), "description": splits.description}, "variants": [], "stages": {},
              "seed": 0}
    md = render_markdown(report, None)
    assert md.startswith("# tinyfarm report: sensor_readings") and "digits" not in md

    from rich.console import Console

    from pipeline.commands import _print_summary

    console = Console(record=True, width=200)
    _print_summary(report, tiny_npz.parent, console)
    shown = console.export_text()
    assert "sensor_readings: variants" in shown and "digits" not in shown
