"""Bad input through ``tinyfarm run``: one line ``error: ...``, a non-zero exit, no traceback."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from tinyfarm.cli import cli


def _run(args):
    result = CliRunner().invoke(cli, args)
    text = result.output
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return result, lines


def _assert_one_error_line(result, lines, fragment):
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]


def _config(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


def test_unknown_dataset(tmp_path):
    result, lines = _run(["run", _config(tmp_path, "dataset:\n  name: cifar99\n"), "--out", str(tmp_path / "o")])
    _assert_one_error_line(result, lines, "unknown data set 'cifar99'")
    assert not (tmp_path / "o").exists()


def test_malformed_yaml(tmp_path):
    result, lines = _run(["run", _config(tmp_path, "baseline: {width: 8\n"), "--out", str(tmp_path / "o")])
    _assert_one_error_line(result, lines, "malformed YAML")


def test_invalid_config_field(tmp_path):
    result, lines = _run(["run", _config(tmp_path, "prune:\n  target_sparsty: 0.5\n"), "--out", str(tmp_path / "o")])
    _assert_one_error_line(result, lines, "prune.target_sparsty: unknown field")


def test_missing_config_file(tmp_path):
    result, lines = _run(["run", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")])
    _assert_one_error_line(result, lines, "config file not found")


def test_unreadable_model_file(tmp_path):
    (tmp_path / "model.keras").write_bytes(b"this is not a keras model")
    cfg = _config(tmp_path, "baseline:\n  model_path: model.keras\n")
    result, lines = _run(["run", cfg, "--out", str(tmp_path / "o")])
    _assert_one_error_line(result, lines, "cannot load")


def test_missing_model_file(tmp_path):
    cfg = _config(tmp_path, "baseline:\n  model_path: absent.h5\n")
    result, lines = _run(["run", cfg, "--out", str(tmp_path / "o")])
    _assert_one_error_line(result, lines, "model file not found")


@pytest.mark.parametrize("arrays, fragment", [
    (dict(x_train=np.zeros((10, 4)), y_train=np.zeros(10, int), x_test=np.zeros((5, 4))), "missing key(s) y_test"),
    (dict(x_train=np.zeros((10, 4)), y_train=np.zeros(10, int), x_test=np.zeros((5, 3)),
          y_test=np.zeros(5, int)), "x_train samples have shape (4,) but x_test samples have (3,)"),
    (dict(x_train=np.zeros((10, 4)), y_train=np.zeros(9, int), x_test=np.zeros((5, 4)),
          y_test=np.zeros(5, int)), "x_train has 10 samples but y_train has 9"),
])
def test_bad_npz(tmp_path, arrays, fragment):
    np.savez(tmp_path / "d.npz", **arrays)
    cfg = _config(tmp_path, "dataset:\n  path: d.npz\n")
    result, lines = _run(["run", cfg, "--out", str(tmp_path / "o")])
    _assert_one_error_line(result, lines, fragment)


def test_user_model_that_does_not_fit_the_data(tmp_path):
    from pipeline.keras_env import keras

    inp = keras.Input((5,))
    keras.Model(inp, keras.layers.Dense(3)(inp)).save(tmp_path / "m.keras")
    cfg = _config(tmp_path, "baseline:\n  model_path: m.keras\n")
    result, lines = _run(["run", cfg, "--out", str(tmp_path / "o")])
    _assert_one_error_line(result, lines, "does not match")


def test_datasets_command_lists_builtins():
    result = CliRunner().invoke(cli, ["datasets"])
    assert result.exit_code == 0
    assert "digits" in result.output and "mnist1d" in result.output
