"""``tinyfarm diff``: every layer of an int8 CNN against the host references, the float model and
another int8 model; a layer whose weights were changed in the flatbuffer is the first that departs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from device_harness.layer_diff import Op, match_float
from tinyfarm.cli import cli


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    """A tiny random tf-keras CNN as int8 and float32 .tflite files, and 6 inputs as .npy."""
    from pipeline.export import convert
    from pipeline.keras_env import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(12, activation="relu"),
        keras.layers.Dense(5),
        keras.layers.Softmax(),
    ])
    rng = np.random.default_rng(0)
    rep = rng.uniform(0, 1, (32, 8, 8, 1)).astype(np.float32)
    d = tmp_path_factory.mktemp("cnn")
    (d / "int8.tflite").write_bytes(convert(model, "int8", rep))
    (d / "float.tflite").write_bytes(convert(model, "float32"))
    np.save(d / "x.npy", rep[:6])
    return d


def _perturb(model: bytes, nth: int = 2) -> tuple[bytes, int]:
    """``model`` with the weights of its ``nth`` CONV_2D/FULLY_CONNECTED op changed (each int8
    weight moved by 40, wrapping), and that op's index."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in m.operatorCodes]
    weighted = {schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.FULLY_CONNECTED}
    sg = m.subgraphs[0]
    found = [i for i, op in enumerate(sg.operators) if codes[op.opcodeIndex] in weighted]
    index = found[nth - 1]
    buf = m.buffers[sg.tensors[sg.operators[index].inputs[1]].buffer]
    w = np.asarray(buf.data, dtype=np.uint8).view(np.int8)
    buf.data = (w.astype(np.int16) + 40).astype(np.int8).view(np.uint8)
    builder = flatbuffers.Builder(1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), index


def _diff(*args: str):
    return CliRunner().invoke(cli, ["diff", *args], catch_exceptions=False)


def test_diff_lists_every_layer(cnn, tmp_path):
    res = _diff(str(cnn / "int8.tflite"), "--float", str(cnn / "float.tflite"), "-i", str(cnn / "x.npy"),
                "--json", "--plot", str(tmp_path / "err.png"))
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    types = [row["type"] for row in out["layers"]]
    assert types == ["CONV_2D", "MAX_POOL_2D", "CONV_2D", "RESHAPE", "FULLY_CONNECTED",
                     "FULLY_CONNECTED", "SOFTMAX"]
    assert [row["op"] for row in out["layers"]] == list(range(7)) and out["samples"] == 6
    assert out["under_test"] == "host-tflm" and out["references"] == ["litert-reference", "float"]
    assert out["first_departure"]["litert-reference"] is None        # TFLM == LiteRT reference kernels
    assert out["float_matched"] == 7                                  # every op paired with its float op
    for row in out["layers"]:
        assert row["float_op"]["type"] == row["type"]
        assert row["metrics"]["float"]["cosine"] > 0.9
    assert (tmp_path / "err.png").read_bytes()[:4] == b"\x89PNG"
    text = _diff(str(cnn / "int8.tflite"), "-i", str(cnn / "x.npy"), "--no-tflm", "--float",
                 str(cnn / "float.tflite"))
    assert text.exit_code == 0 and "FULLY_CONNECTED" in text.stdout
    assert "first layer departing from float: none" in text.stdout and "host TFLM not used" in text.stdout


def test_perturbed_layer_is_the_first_that_departs(cnn, tmp_path):
    original = (cnn / "int8.tflite").read_bytes()
    changed, index = _perturb(original)
    assert index == 2
    path = tmp_path / "changed.tflite"
    path.write_bytes(changed)
    res = _diff(str(path), "--reference", str(cnn / "int8.tflite"), "-i", str(cnn / "x.npy"), "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    first = out["first_departure"]["reference-model"]
    assert first == {"op": 2, "type": "CONV_2D", "shape": out["layers"][2]["shape"]}
    for row in out["layers"][:2]:                                  # before it: the same values
        assert row["metrics"]["reference-model"]["max_steps"] == 0.0
    assert out["first_departure"]["litert-reference"] is None
    text = _diff(str(path), "--reference", str(cnn / "int8.tflite"), "-i", str(cnn / "x.npy"))
    assert "first layer departing from reference-model: op 2 CONV_2D" in text.stdout


@pytest.mark.parametrize("args, message", [
    (["--reference", "{sine}"], "mismatched models"),
    (["-i", "{bad_x}"], "input of shape [3, 5]"),
    (["-i", "{int_x}"], "int32 values, the model's input is int8"),
])
def test_bad_input_is_one_line(cnn, tmp_path, suite_models, args, message):
    np.save(tmp_path / "bad.npy", np.zeros((3, 5), np.float32))
    np.save(tmp_path / "int.npy", np.zeros((1, 8, 8, 1), np.int32))
    paths = {"sine": str(suite_models / "sine_int8.tflite"), "bad_x": str(tmp_path / "bad.npy"),
             "int_x": str(tmp_path / "int.npy")}
    res = CliRunner().invoke(cli, ["diff", str(cnn / "int8.tflite"), *[a.format(**paths) for a in args]])
    assert res.exit_code != 0
    assert res.stderr.startswith("error: ") and message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_float_matching_by_type_and_shape():
    def op(i, name, shape):
        return Op(i, name, i, shape, "int8", 1.0, 0)

    ops = [op(0, "QUANTIZE", (1, 4)), op(1, "CONV_2D", (1, 4)), op(2, "MAX_POOL_2D", (1, 2)),
           op(3, "CONV_2D", (1, 4)), op(4, "CONV_2D", (1, 9))]
    flt = [op(0, "CONV_2D", (1, 4)), op(1, "MAX_POOL_2D", (1, 2)), op(2, "CONV_2D", (1, 4)),
           op(3, "MAX_POOL_2D", (1, 4))]
    assert match_float(ops, flt) == {1: 0, 2: 1, 3: 2}
