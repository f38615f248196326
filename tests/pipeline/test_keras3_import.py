"""A Keras 3 ``.keras`` file enters the pipeline as a rebuilt tf-keras model: same outputs on the
test split, and pruning, PQAT and int8 conversion apply; custom layers and Lambdas are refused in
one line, and a Lambda's code never runs."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tinyfarm.errors import ModelError

keras3 = pytest.importorskip("keras")
if not keras3.__version__.startswith("3"):
    pytest.skip("Keras 3 is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def digits():
    from tinyfarm_datasets import load_dataset

    return load_dataset("digits", val_fraction=0.1, seed=0).subset(train=400, test=120)


@pytest.fixture(scope="module")
def keras3_file(digits, tmp_path_factory):
    """A small CNN trained 2 epochs with Keras 3 (BatchNorm statistics are not trivial)."""
    env = os.environ.get("TF_USE_LEGACY_KERAS")
    keras3.utils.set_random_seed(0)
    layers = keras3.layers
    inp = keras3.Input(digits.input_shape)
    x = layers.Conv2D(8, 3, padding="same", kernel_regularizer=keras3.regularizers.L2(1e-4))(inp)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.1)(x)
    x = layers.Dense(digits.num_classes)(x)
    out = layers.Activation("softmax")(x)
    model = keras3.Model(inp, out)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(digits.x_train, digits.y_train, epochs=2, batch_size=32, verbose=0)
    path = tmp_path_factory.mktemp("k3") / "cnn.keras"
    model.save(path)
    assert os.environ.get("TF_USE_LEGACY_KERAS") == env  # the pipeline's tf-keras is untouched
    return path, model.predict(digits.x_test, verbose=0)


def test_rebuilt_model_matches_and_compresses(keras3_file, digits):
    from pipeline.export import convert, representative_samples
    from pipeline.keras3_import import import_user_model
    from pipeline.keras_env import keras
    from pipeline.prune import prune_model
    from pipeline.quantize import quantization_aware_training

    path, reference = keras3_file
    model, info = import_user_model(path, digits.x_test)
    assert isinstance(model, keras.Model) and keras.__name__ == "tf_keras"
    assert [type(layer).__module__.split(".")[0] for layer in model.layers] == ["tf_keras"] * 10
    assert info["source"] == "keras3" and info["keras_version"].startswith("3.")
    assert info["checked_samples"] == len(digits.x_test)
    assert info["max_abs_diff"] <= 1e-5
    got = model.predict(digits.x_test, verbose=0)
    assert np.max(np.abs(got - reference)) <= 1e-5
    assert model.get_layer("conv2d").kernel_regularizer is not None
    print(f"\nKeras 3 -> tf-keras on digits: max |diff| {info['max_abs_diff']:.3g}")

    pruned, _ = prune_model(model, digits, target_sparsity=0.5, epochs=1, batch_size=64)
    qat, _ = quantization_aware_training(pruned, digits, preserve_sparsity=True, epochs=1, batch_size=64)
    int8 = convert(qat, "int8", representative_samples(digits.x_train, 50))
    assert int8[4:8] == b"TFL3"


def test_sequential_and_other_layers_carry_over(tmp_path):
    from pipeline.keras_env import keras
    from pipeline.keras_models import load_user_model

    layers = keras3.layers
    keras3.utils.set_random_seed(1)
    inp = keras3.Input((8, 8, 2))
    a = layers.DepthwiseConv2D(3, padding="same")(inp)
    a = layers.BatchNormalization()(a)
    b = layers.SeparableConv2D(2, 3, padding="same")(inp)
    c = keras3.Sequential([layers.Conv2D(2, 1), layers.ReLU()], name="block")(inp)  # inlined
    x = layers.LeakyReLU(negative_slope=0.2)(layers.Add()([a, b, c]))
    x = layers.Concatenate()([x, layers.Rescaling(0.5, offset=0.1)(inp)])
    x = layers.AveragePooling2D(2)(layers.ZeroPadding2D(1)(x))
    x = layers.Reshape((-1,))(x)
    out = layers.Softmax()(layers.Dense(3)(x))
    functional = keras3.Model(inp, out)
    functional.layers[2].set_weights([np.full((2,), 0.5), np.full((2,), 0.1)] * 2)  # BN stats
    head = keras3.Sequential([layers.Flatten(), layers.Dense(5)], name="head")
    sequential = keras3.Sequential([keras3.Input((8, 8, 2)), layers.Conv2D(4, 3), layers.ELU(), head,
                                    layers.Dense(3, activation="softmax")])
    x_check = np.random.default_rng(0).standard_normal((32, 8, 8, 2)).astype(np.float32)
    for name, model in (("functional.keras", functional), ("sequential.keras", sequential),
                        ("functional.h5", functional), ("sequential.h5", sequential)):
        model.save(tmp_path / name)
        rebuilt = load_user_model(tmp_path / name, check_data=x_check)
        assert not any(isinstance(layer, keras.Model) for layer in rebuilt.layers)  # flat for TF-MOT
        np.testing.assert_allclose(rebuilt.predict(x_check, verbose=0), model.predict(x_check, verbose=0),
                                   atol=1e-5)


@keras3.saving.register_keras_serializable(package="tinyfarm_test")
class Scale(keras3.layers.Layer):
    def call(self, x):
        return x * 2.0


@pytest.mark.parametrize("trust", [False, True])
def test_custom_layer_is_refused_in_one_line(tmp_path, trust):
    from pipeline.keras_models import load_user_model

    inp = keras3.Input((4,))
    keras3.Model(inp, keras3.layers.Dense(2)(Scale(name="doubler")(inp))).save(tmp_path / "c.keras")
    with pytest.raises(ModelError) as err:
        load_user_model(tmp_path / "c.keras", trust_code=trust)
    message = str(err.value)
    assert "\n" not in message
    assert "cannot be carried over: 'doubler' ('Scale')" in message


def test_lambda_is_refused_and_does_not_run(tmp_path):
    from pipeline.keras_models import load_user_model
    from pipeline.model_files import ModelCodeRefused

    marker = tmp_path / "lambda_ran"
    namespace: dict = {}
    exec(f"def touch(x):\n    open({str(marker)!r}, 'w').write('ran')\n    return x\n", namespace)  # noqa: S102
    inp = keras3.Input((4,))
    out = keras3.layers.Dense(2)(keras3.layers.Lambda(namespace["touch"], name="sneaky")(inp))
    keras3.Model(inp, out).save(tmp_path / "l.keras")
    marker.unlink(missing_ok=True)  # building the model called the Lambda once
    with pytest.raises(ModelCodeRefused) as err:
        load_user_model(tmp_path / "l.keras")
    assert "it holds a Lambda layer 'sneaky'" in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


def test_keras3_export_folder_is_refused_with_a_hint(tmp_path):
    from pipeline.keras_models import load_user_model

    inp = keras3.Input((4,))
    keras3.Model(inp, keras3.layers.Dense(2)(inp)).export(tmp_path / "exported", verbose=False)
    for trust in (False, True):
        with pytest.raises(ModelError) as err:
            load_user_model(tmp_path / "exported", trust_code=trust)
        assert "save a .keras file instead" in str(err.value) and "\n" not in str(err.value)


def test_a_rebuild_that_differs_is_refused(keras3_file, digits, monkeypatch):
    import pipeline.keras3_import as k3

    monkeypatch.setattr(k3, "_set_weights", lambda *args: None)  # fresh weights: outputs differ
    with pytest.raises(ModelError, match=r"does not match the original: max \|diff\|") as err:
        k3.import_user_model(keras3_file[0], digits.x_test)
    assert "\n" not in str(err.value)


def test_the_baseline_stage_reports_the_rebuild(keras3_file, digits, tmp_path):
    """`baseline.model_path: model.keras` (Keras 3) enters the pipeline; the check is in its summary."""
    from pipeline.config import parse_config
    from pipeline.stages import run_pipeline

    cfg = parse_config({"baseline": {"model_path": str(keras3_file[0]), "train": False},
                        "prune": {"enabled": False}, "quantize": {"qat": False},
                        "export": {"baseline_kinds": ["int8"], "representative_samples": 20},
                        "search": {"enabled": False}, "tflm": {"enabled": False},
                        "deploy": {"enabled": False}, "report": {"plot": False}})
    results = run_pipeline(cfg, tmp_path / "run", splits=digits, log=lambda line: None)
    imported = results["baseline"].summary["import"]
    assert imported["source"] == "keras3" and imported["checked_samples"] == len(digits.x_test)
    assert imported["max_abs_diff"] <= 1e-5
