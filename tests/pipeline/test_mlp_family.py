"""Issue #14: the built-in MLP family for feature vectors, end to end on a tabular .npz."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def write_breast_cancer_npz(path: Path) -> Path:
    """scikit-learn's breast cancer data (30 features, 2 classes), standardized on train, float32."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0) + 1e-8
    np.savez(path, x_train=((x_tr - mean) / std).astype(np.float32), y_train=y_tr.astype(np.int64),
             x_test=((x_te - mean) / std).astype(np.float32), y_test=y_te.astype(np.int64))
    return path


def tabular_config(data: Path, *, short: bool = True) -> dict:
    """family auto, no model file, a one-rung search ladder; ``short``: few epochs."""
    config: dict = {
        "dataset": {"path": str(data)},
        "baseline": {"family": "auto"},
        "target": {"flash_bytes": 65536, "max_drop": 0.05 if short else 0.01},
        "search": {"steps": [{"width": 0.5, "clusters": 16}]},
    }
    if short:
        config["baseline"].update(epochs=12)
        # the five PTQ kinds are test_end_to_end's and test_stages' business; two converts here
        config["export"] = {"baseline_kinds": ["float32", "int8"]}
        config["prune"] = {"epochs": 2}
        config["quantize"] = {"epochs": 1}
        config["search"].update(fine_tune_epochs=3, cluster_epochs=1, qat_epochs=1, stop_early=False)
        config["deploy"] = {"runs": 5, "warmup": 1}
    return config


def test_auto_picks_mlp_for_feature_vectors():
    from pipeline.keras_env import keras
    from pipeline.keras_models import build_cnn

    model = build_cnn((30,), 2, family="auto", width=8, depth=2, growth=0.5, dense_units=0)
    assert model.name == "mlp_w8_d2"
    weighted = [layer for layer in model.layers if layer.weights and
                not isinstance(layer, keras.layers.BatchNormalization)]
    assert all(isinstance(layer, keras.layers.Dense) for layer in weighted)
    assert [layer.units for layer in weighted] == [8, 4, 2]
    assert [layer.name for layer in model.layers[-2:]] == ["classifier", "softmax"]
    assert isinstance(model.layers[-1], keras.layers.Softmax)


def test_other_ranks_are_one_line_errors():
    from pipeline.keras_models import build_cnn, build_mlp
    from tinyfarm.errors import ModelError

    with pytest.raises(ModelError) as err:
        build_cnn((2, 3, 4, 5), 2)
    assert "\n" not in str(err.value) and "(features,)" in str(err.value)
    with pytest.raises(ModelError, match="mlp needs inputs of shape"):
        build_cnn((8, 8, 1), 2, family="mlp")
    with pytest.raises(ModelError):
        build_mlp((8, 1), 2)


def test_mlp_narrows_and_clusters():
    """structured_prune.narrow_model and TF-MOT clustering/QAT take the MLP as they take the CNNs."""
    import tensorflow_model_optimization as tfmot

    from pipeline.keras_models import build_mlp
    from pipeline.quantize import make_qat_model
    from pipeline.structured_prune import narrow_model, prunable_layers

    model = build_mlp((30,), 2, width=32, depth=2, growth=1.0, dense_units=16)
    assert prunable_layers(model) == ["dense0", "dense1", "hidden"]
    narrow, _ = narrow_model(model, 0.5)
    assert [narrow.get_layer(n).units for n in ("dense0", "dense1", "hidden", "classifier")] == [16, 16, 8, 2]
    x = np.random.default_rng(0).normal(size=(4, 30)).astype(np.float32)
    assert narrow(x).shape == (4, 2)
    qat = make_qat_model(narrow, preserve_sparsity=True)  # the pipeline's QAT wrapping
    assert qat(x).shape == (4, 2)
    clustered = tfmot.clustering.keras.cluster_weights(
        narrow, number_of_clusters=8,
        cluster_centroids_init=tfmot.clustering.keras.CentroidInitialization.KMEANS_PLUS_PLUS)
    assert clustered(x).shape == (4, 2)


def test_config_family_mlp():
    from pipeline.config import parse_config

    assert parse_config({"baseline": {"family": "mlp"}}).baseline.family == "mlp"


def run_tabular(tmp_path: Path, *, short: bool = True) -> tuple[subprocess.CompletedProcess, dict, float]:
    data = write_breast_cancer_npz(tmp_path / "breast_cancer.npz")
    path = tmp_path / "cancer.yaml"
    path.write_text(yaml.safe_dump(tabular_config(data, short=short)))
    out = tmp_path / "run"
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "tinyfarm.cli", "run", str(path), "--out", str(out)],
                          capture_output=True, text=True, timeout=1800, cwd=REPO)
    seconds = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads((out / "report.json").read_text()), seconds


@pytest.mark.slow
def test_tabular_npz_end_to_end(tabular_run):
    from pipeline.keras_env import keras

    proc, out = tabular_run  # the real process, started when collection ended (conftest.py)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"]["name"] == "breast_cancer"
    assert report["dataset"]["input_shape"] == [30] and report["dataset"]["num_classes"] == 2
    md = (out / "report.md").read_text()
    assert md.startswith("# tinyfarm report: breast_cancer") and "digits" not in md
    console = proc.stdout + proc.stderr  # rich writes to stderr
    assert "breast_cancer: variants" in console and "digits" not in console
    baseline = keras.models.load_model(out / "stages" / "baseline" / "model.keras",
                                       compile=False)
    weighted = [layer for layer in baseline.layers if layer.weights and
                not isinstance(layer, keras.layers.BatchNormalization)]
    assert weighted and all(isinstance(layer, keras.layers.Dense) for layer in weighted)
    accuracy = {v["name"]: v["accuracy"] for v in report["variants"]}
    assert accuracy["baseline_float32"] > 0.9, accuracy
    assert accuracy[report["deployable"]["copy_of"]] > 0.9, report["deployable"]
    assert report["deployable"]["tflm"]["ops"] == ["FULLY_CONNECTED", "SOFTMAX"]
    assert any(c["name"].startswith("search_w50") for c in report["search"]["candidates"])
