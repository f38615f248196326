"""Wrong kinds of data files get a correct one-line message: a CSV or text file as
``dataset.path`` is not "pickled data", and ``bench -i``/``invoke -i`` with a bad ``.npy`` is one
line before any device is started."""

from __future__ import annotations

import numpy as np
import pytest

from safety_helpers import assert_one_error_line, run_cli

NOT_AN_NPZ = "as a data .npz (np.savez with x_train, y_train, x_test, y_test)"


def _write(path, kind):
    if kind == "csv":
        path.write_text("x0,x1,label\n0.1,0.2,1\n")
    elif kind == "text":
        path.write_text("hello, I am not data\n")
    elif kind == "npy":
        np.save(path, np.zeros((4, 2)))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "pickle":
        import pickle
        path.write_bytes(pickle.dumps({"x_train": [1]}))
    elif kind == "object_npz":
        np.savez(path, x_train=np.array([{}, 1], dtype=object), y_train=np.zeros(2),
                 x_test=np.zeros((1, 2)), y_test=np.zeros(1))
    return path


@pytest.mark.parametrize("name, kind, fragment", [
    ("data.csv", "csv", f"{NOT_AN_NPZ}: it is a text file (CSV?)"),
    ("data.npz", "text", f"{NOT_AN_NPZ}: it is a text file (CSV?)"),
    ("data.npy", "npy", f"{NOT_AN_NPZ}: it is a .npy array"),
    ("data.npz", "empty", f"{NOT_AN_NPZ}: it is an empty file"),
    ("data.pkl", "pickle", "it is a Python pickle (never loaded: it can run code)"),
    ("data.npz", "object_npz", "holds Python objects (an object array)"),
])
def test_dataset_path_of_the_wrong_kind(tmp_path, name, kind, fragment):
    _write(tmp_path / name, kind)
    (tmp_path / "c.yaml").write_text(f"dataset:\n  path: {name}\n")
    result, lines = run_cli(["run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "out")])
    line = assert_one_error_line(result, lines, fragment)
    assert "pickled data" not in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["bench", "invoke"])
@pytest.mark.parametrize("kind, fragment", [
    ("csv", "as a .npy array (np.save): it is a text file (CSV?)"),
    ("pickle", "it is a Python pickle"),
    ("object", "holds Python objects (an object array)"),
    ("truncated", "damaged .npy file"),
])
def test_bad_npy_input_is_one_line_before_any_device(tmp_path, command, kind, fragment):
    from device_harness.farm.synthetic import write_standard_models

    model = write_standard_models(tmp_path / "models")[0]
    bad = tmp_path / "in.npy"
    if kind == "object":
        np.save(bad, np.array([{}, 1], dtype=object), allow_pickle=True)
    elif kind == "truncated":
        np.save(bad, np.zeros((100, 100), np.float32))
        bad.write_bytes(bad.read_bytes()[:300])
    else:
        _write(bad, kind)
    args = [command, str(model), "-i", str(bad), "--device", "twin"]
    if command == "invoke":
        args += ["-o", str(tmp_path / "outs")]
    result, lines = run_cli(args)
    assert_one_error_line(result, lines, str(bad), fragment)
