"""A user model file never runs its own code: Lambda layers, lambdas and modules to import are
refused before Keras reads the file (``.h5``, ``.keras``, SavedModel), unless the config says
``baseline.trust_model_code: true``."""

from __future__ import annotations

import json
import zipfile

import pytest

from safety_helpers import assert_one_error_line, run_cli


def _marker_lambda(marker):
    """A function whose body creates ``marker``: marshalled into the file by a Lambda layer."""
    namespace: dict = {}
    exec(f"def touch(x):\n    open({str(marker)!r}, 'w').write('ran')\n    return x\n", namespace)
    return namespace["touch"]


def _save_lambda_model(path, marker, **save_kwargs):
    from pipeline.keras_env import keras

    inp = keras.Input((4,))
    out = keras.layers.Dense(3)(keras.layers.Lambda(_marker_lambda(marker))(inp))
    keras.Model(inp, out).save(path, **save_kwargs)
    marker.unlink()  # building the model called the Lambda once; only loading may call it now
    return path


def _config(tmp_path, model_name, extra=""):
    path = tmp_path / "c.yaml"
    path.write_text(f"baseline:\n  model_path: {model_name}\n{extra}")
    return str(path)


@pytest.mark.parametrize("name, kwargs", [("model.h5", {}), ("model.keras", {}),
                                          ("saved", {"save_format": "tf"})])
def test_lambda_model_is_refused_and_its_code_does_not_run(tmp_path, name, kwargs):
    marker = tmp_path / "lambda_ran"
    _save_lambda_model(tmp_path / name, marker, **kwargs)
    result, lines = run_cli(["run", _config(tmp_path, name), "--out", str(tmp_path / "out")])
    assert_one_error_line(result, lines, f"{name} is refused: it holds a Lambda layer",
                          "baseline.trust_model_code: true")
    assert not marker.exists(), "the Lambda's code ran while the model was checked"
    assert not (tmp_path / "out").exists()


def test_trusted_model_loads_as_before(tmp_path):
    """The control: with the flag the .h5 loads as tf-keras loads it (and its Lambda runs)."""
    marker = tmp_path / "lambda_ran"
    _save_lambda_model(tmp_path / "model.h5", marker)
    cfg = _config(tmp_path, "model.h5", "  trust_model_code: true\n")
    result, lines = run_cli(["run", cfg, "--out", str(tmp_path / "out")])
    assert_one_error_line(result, lines, "does not match")  # it loaded: the shapes are checked next
    assert marker.exists()


def test_keras_config_naming_a_module_is_refused(tmp_path, monkeypatch):
    """tf-keras imports any module a .keras config names, even in safe mode."""
    from pipeline.keras_env import keras

    marker = tmp_path / "module_ran"
    (tmp_path / "tinyfarm_probe_mod.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    inp = keras.Input((4,))
    keras.Model(inp, keras.layers.Dense(3)(inp)).save(tmp_path / "plain.keras")
    with zipfile.ZipFile(tmp_path / "plain.keras") as src, \
            zipfile.ZipFile(tmp_path / "evil.keras", "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                config["config"]["layers"][1]["module"] = "tinyfarm_probe_mod"
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    result, lines = run_cli(["run", _config(tmp_path, "evil.keras"), "--out", str(tmp_path / "out")])
    assert_one_error_line(result, lines, "names the module 'tinyfarm_probe_mod'")
    assert not marker.exists()


@pytest.mark.parametrize("config, fragment", [
    ({"class_name": "Functional", "config": {"layers": [
        {"class_name": "TFOpLambda", "config": {"function": "io.write_file"}}]}}, "tf.io.write_file"),
    ({"class_name": "RNN", "config": {"cell": {"class_name": "ResidualWrapper", "config": {
        "residual_fn": ["AAAA", None, None], "residual_fn_type": "lambda"}}}}, "residual_fn_type"),
    ({"class_name": "Functional", "module": "os", "config": {}}, "names the module 'os'"),
])
def test_other_code_in_configs_is_found(config, fragment):
    from pipeline.model_files import code_in_config

    assert fragment in (code_in_config(config) or "")


def test_maths_and_builtin_layers_pass():
    from pipeline.model_files import code_in_config

    config = {"module": "tf_keras.src.engine.functional", "class_name": "Functional", "config": {
        "layers": [{"module": "keras.layers", "class_name": "Dense", "config": {}},
                   {"class_name": "TFOpLambda", "config": {"function": "__operators__.add"}},
                   {"class_name": "TFOpLambda", "config": {"function": "math.reduce_mean"}}]}}
    assert code_in_config(config) is None
