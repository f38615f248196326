"""Bad distillation configs end with one clear ``error: ...`` line and a non-zero exit."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.config import parse_config
from tinyfarm.cli import cli
from tinyfarm.errors import ConfigError


def _run(tmp_path, body: str):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(body)
    result = CliRunner().invoke(cli, ["run", str(cfg), "--out", str(tmp_path / "out")])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    return result.exit_code, lines


@pytest.mark.parametrize("body, needle", [
    ("distill: {enabled: true, teacher: baseline, temperature: 0}", "distill.temperature"),
    ("distill: {enabled: true, teacher: baseline, temperature: -2}", "distill.temperature"),
    ("distill: {enabled: true, teacher: baseline, alpha: 1.5}", "distill.alpha"),
    ("distill: {enabled: true, teacher: baseline, alpha: -0.1}", "distill.alpha"),
    ("distill: {enabled: true}", "teacher is missing"),
    ("distill: {enabled: true, teacher: ''}", "distill.teacher"),
    ("distill: {enabled: true, teacher: no_such_teacher.keras}", "model file not found"),
    ("distill: {enabled: true, teacher: baseline, student: {model_path: nope.h5}}", "model file not found"),
    ("distill: {enabled: true, teacher: baseline, mode: sometimes}", "distill.mode"),
    ("distill: {enabled: true, teacher: baseline, temprature: 3}", "unknown field"),
    ("distill: {enabled: true, teacher: baseline, mixup: 0.4}", "mixup needs mode: online"),
])
def test_bad_config_is_one_line_and_nonzero_exit(tmp_path, body, needle):
    code, lines = _run(tmp_path, body)
    assert code != 0
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines


def test_defaults_keep_the_stage_off_and_paths_resolve(tmp_path):
    assert parse_config({}).distill.enabled is False
    (tmp_path / "t.keras").write_text("x")
    cfg = parse_config({"distill": {"enabled": True, "teacher": "t.keras", "teacher_cache": "cache"}},
                       base_dir=tmp_path)
    assert cfg.distill.teacher_path() == (tmp_path / "t.keras").resolve()
    assert cfg.distill.teacher_cache == (tmp_path / "cache").resolve()
    with pytest.raises(ConfigError, match="teacher is missing"):
        parse_config({"distill": {"enabled": True}})


def _save(model, path):
    model.save(path)
    return path


def test_teacher_and_student_with_different_output_sizes(tmp_path):
    """Only known once the models are loaded: still one line and a non-zero exit, no traceback."""
    from pipeline.keras_env import keras

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "tiny.npz", x_train=rng.normal(size=(60, 8, 1)).astype(np.float32),
             y_train=np.arange(60) % 3, x_test=rng.normal(size=(15, 8, 1)).astype(np.float32),
             y_test=np.arange(15) % 3)

    def mlp(outputs):
        inp = keras.Input((8, 1))
        return keras.Model(inp, keras.layers.Dense(outputs)(keras.layers.Flatten()(inp)))

    _save(mlp(3), tmp_path / "teacher.keras")
    _save(mlp(4), tmp_path / "student.keras")
    code, lines = _run(tmp_path, """
dataset: {name: tiny, path: tiny.npz}
baseline: {model_path: teacher.keras, train: false}
prune: {enabled: false}
quantize: {qat: false}
export: {baseline_kinds: [float32], c_array: false}
tflm: {enabled: false}
distill: {enabled: true, teacher: baseline, student: {model_path: student.keras}, epochs: 1}
""")
    assert code != 0
    assert lines[-1].startswith("error: ") and "3 outputs but the student has 4" in lines[-1], lines
    assert not any("Traceback" in ln for ln in lines)
