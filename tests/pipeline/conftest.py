"""Small data and tiny models so every stage can be exercised in seconds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def small_digits():
    """A few hundred digits: enough to train a tiny CNN above chance in a couple of epochs."""
    from tinyfarm_datasets import load_dataset

    return load_dataset("digits", val_fraction=0.1, seed=0).subset(train=400, test=120)


@pytest.fixture(scope="session")
def trained_tiny(small_digits):
    """A tiny 2-D CNN trained for a few epochs (shared by the stage tests; do not mutate)."""
    from pipeline.keras_env import set_seed
    from pipeline.keras_models import build_cnn
    from pipeline.train import fit_classifier

    set_seed(0)
    model = build_cnn(small_digits.input_shape, small_digits.num_classes, width=8, depth=2,
                      dense_units=16)
    fit_classifier(model, small_digits, epochs=4, batch_size=32, learning_rate=5e-3, label="tiny")
    return model


@pytest.fixture(scope="session")
def tiny_tflite(small_digits, trained_tiny):
    """``tiny_tflite(kind)``: ``trained_tiny`` converted to ``kind`` (int8/int16x8 calibrated on 50
    train samples), each kind converted once per session (the converter costs seconds a call).
    The bytes are what ``convert`` returns; the tests that check ``convert`` itself call it here."""
    from pipeline.export import convert, representative_samples

    rep = representative_samples(small_digits.x_train, 50)
    cache: dict[str, bytes] = {}

    def get(kind: str) -> bytes:
        if kind not in cache:
            cache[kind] = convert(trained_tiny, kind, rep)
        return cache[kind]

    return get


def digits_short_config() -> dict:
    """configs/digits.yaml (the default pipeline) with fewer epochs and one search rung."""
    config = yaml.safe_load((REPO / "configs" / "digits.yaml").read_text())
    config["baseline"]["epochs"] = 4
    config["prune"]["epochs"] = 3
    config["quantize"]["epochs"] = 1
    config["search"].update(fine_tune_epochs=3, prune_epochs=2, cluster_epochs=1, qat_epochs=1,
                            steps=config["search"]["steps"][1:2])  # w50_c16: fits 16 KB
    config["target"]["max_drop"] = 0.05  # a shortened run: the floor is not what this test is about
    return config


@pytest.fixture(scope="session")
def digits_short_run(tmp_path_factory):
    """``tinyfarm run`` as a real process on :func:`digits_short_config`, once per session:
    ``(completed process, run folder, config)``. A test that runs again into the folder copies it
    first (its stages and trained search candidates are then reused where the inputs match)."""
    config = digits_short_config()
    folder = tmp_path_factory.mktemp("digits_short")
    path = folder / "digits_short.yaml"
    path.write_text(yaml.safe_dump(config))
    out = folder / "run"
    proc = subprocess.run([sys.executable, "-m", "tinyfarm.cli", "run", str(path), "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    return proc, out, config
