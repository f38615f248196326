"""A user's Keras 3 ``.keras`` (or ``.h5``) file rebuilt as a tf-keras model, running no code from it.

The pipeline trains with tf-keras (TF-MOT needs it), but most users save with Keras 3, the
default ``keras`` of TensorFlow >= 2.16. A Keras 3 ``.keras`` zip holds ``config.json`` (the
layers and how they connect), ``metadata.json`` (the Keras version) and ``model.weights.h5``
(``layers/<object name>/vars/0..n``). :func:`import_user_model` reads them itself (json, h5py):
each layer config becomes the tf-keras layer of the same class (:data:`LAYERS`), its config
translated (dtype policies, ``batch_shape``, initializer configs with ``module``...), the graph
is rewired from ``inbound_nodes``, and the weights are set layer by layer. Keras 3 only loads the
file afterwards, in safe mode and once :mod:`pipeline.model_files` passed it, to check that the
rebuilt model's float outputs equal the original's. A nested Sequential is inlined (TF-MOT
refuses nested models). A layer without a tf-keras counterpart (a custom class, a Lambda, a nested
Functional model) is refused in one line that names it. A Keras 3 ``.h5`` file (legacy format)
is rebuilt the same way, its weights read from ``model_weights/<layer name>``. A Keras 3
``model.export()`` SavedModel has no layer config: it is refused, asking for a ``.keras`` file.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.keras_env import keras
from pipeline.model_files import model_configs, refuse_model_code, sniff_model_file
from tinyfarm.errors import ModelError, short

# Keras 3 layer classes rebuilt as the tf-keras class of the same name.
LAYERS = frozenset({
    "InputLayer", "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv1D", "DepthwiseConv2D",
    "SeparableConv1D", "SeparableConv2D", "Conv1DTranspose", "Conv2DTranspose", "Dense",
    "BatchNormalization", "LayerNormalization", "MaxPooling1D", "MaxPooling2D", "AveragePooling1D",
    "AveragePooling2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D",
    "GlobalMaxPooling2D", "Flatten", "Reshape", "Permute", "Dropout", "SpatialDropout1D",
    "SpatialDropout2D", "GaussianNoise", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "ZeroPadding1D",
    "ZeroPadding2D", "Cropping1D", "Cropping2D", "UpSampling1D", "UpSampling2D", "Rescaling",
    "Normalization", "Embedding", "Identity"})
# Config keys renamed between Keras 3 and tf-keras.
RENAMED = {"LeakyReLU": {"negative_slope": "alpha"}, "InputLayer": {"batch_shape": "batch_input_shape"}}
# Keras 3 options tf-keras does not have; dropped when they hold the value that changes nothing.
NEUTRAL = {"optional": False, "quantization_config": None, "lora_rank": None, "lora_alpha": None,
           "lora_enabled": False, "synchronized": False, "input_axes": None, "output_axes": None}
KERNEL_ARGS = ("initializer", "regularizer", "constraint")


def keras3_version(path: str | Path) -> str | None:
    """The Keras version a ``.keras`` zip or an ``.h5`` file was saved with, if it is 3.x; else None
    (a tf-keras file, a folder). Reads only ``metadata.json`` or the HDF5 root attributes."""
    path = Path(path)
    if path.is_dir() or not path.is_file():
        return None
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                meta = json.loads(zf.read("metadata.json"))
        else:
            import h5py

            with h5py.File(path, "r") as f:
                meta = {"keras_version": f.attrs.get("keras_version")}
            if isinstance(meta["keras_version"], bytes):
                meta["keras_version"] = meta["keras_version"].decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - not a Keras 3 file; the tf-keras checks say what it is
        return None
    version = meta.get("keras_version") if isinstance(meta, dict) else None
    return version if isinstance(version, str) and version.startswith("3.") else None


def import_user_model(path: str | Path, x_check: np.ndarray | None = None,
                      trust_code: bool = False) -> tuple[keras.Model, dict]:
    """A user's model file as a tf-keras model, and what was done to get it.

    A tf-keras file (``.keras``, ``.h5``, SavedModel with ``keras_metadata.pb``) loads as before:
    ``info = {"source": "tf-keras"}``. A Keras 3 ``.keras`` or ``.h5`` file is rebuilt (see the module doc) and
    checked: both models run on ``x_check`` (the test split; 64 seeded random samples if None), and
    ``info`` holds ``source="keras3"``, ``keras_version``, ``layers`` (not counting inputs), ``checked_samples``,
    ``max_abs_diff`` and ``output_scale`` (max |original output|). Outputs that differ by more
    than ``1e-4 * max(1, output_scale)`` are a one-line :class:`ModelError`.
    """
    path = Path(path)
    version = keras3_version(path)
    if version is None:
        return _load_tf_keras(path, trust_code), {"source": "tf-keras"}
    sniff_model_file(path, trust_code=True)  # exists, readable, a zip; the code checks follow
    config, weights = _read_file(path)
    if not isinstance(config, dict) or config.get("class_name") not in ("Functional", "Sequential", "Model"):
        raise ModelError(f"cannot load {path} as a Keras 3 model: its config is not a Functional "
                         "or Sequential model")
    chains = _chains(config, path)
    leaves = [leaf for _, chain in chains for leaf, _ in chain]
    if not trust_code and any(leaf["class_name"] == "Lambda" for leaf in leaves):
        refuse_model_code(path)  # the safety check speaks first: a Lambda carries code
    missing = [f"{short(leaf.get('name') or '?')} ({short(leaf['class_name'])})"
               for leaf in leaves if leaf["class_name"] not in LAYERS]
    if missing:
        raise ModelError(f"{path}: Keras 3 layers without a tf-keras counterpart cannot be carried "
                         f"over: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}; "
                         "rebuild the model from built-in layers (nested Sequential models are "
                         "fine, nested Functional ones are not)")
    if not trust_code:
        refuse_model_code(path)  # no module to import anywhere (initializers, regularizers, ...)
    model = _rebuild(config, chains, path)
    _set_weights(model, chains, weights, path)
    info = {"source": "keras3", "keras_version": version,
            "layers": sum(leaf["class_name"] != "InputLayer" for leaf in leaves)}
    info.update(_check_outputs(model, path, x_check))
    return model, info


def _read_file(path: Path) -> tuple[Any, bytes | None]:
    """The model config, and ``model.weights.h5`` of a ``.keras`` zip (None: an ``.h5`` file)."""
    if not zipfile.is_zipfile(path):
        return next(model_configs(path))[0], None
    with zipfile.ZipFile(path) as zf:
        try:
            return json.loads(zf.read("config.json")), zf.read("model.weights.h5")
        except KeyError as exc:
            raise ModelError(f"cannot load {path} as a Keras 3 model: no {exc.args[0]} in the "
                             ".keras file") from None
        except (ValueError, RecursionError):
            raise ModelError(f"cannot load {path} as a Keras 3 model: config.json is not valid "
                             "JSON") from None


def _layer_configs(config: dict, path: Path) -> list[dict]:
    inner = config.get("config")
    layers = inner.get("layers") if isinstance(inner, dict) else None
    if not isinstance(layers, list) or not all(
            isinstance(x, dict) and isinstance(x.get("class_name"), str) and isinstance(x.get("config"), dict)
            for x in layers):
        raise ModelError(f"cannot load {path} as a Keras 3 model: its config has no layer list")
    for layer in layers:
        layer.setdefault("name", layer["config"].get("name"))
    return layers


def _chains(config: dict, path: Path, prefix: str = "layers") -> list[tuple[dict, list]]:
    """Each layer of the model with the leaf layers it stands for, each with the h5 group of its
    weights: Keras 3 stores ``model.layers`` (a Sequential's without its InputLayer) in order under
    ``<prefix>/<snake_case class name>[_n]``. A nested Sequential is inlined (its layers in
    order), so pruning and QAT, which refuse nested models, see one flat model."""
    sequential = config["class_name"] == "Sequential"
    used: dict[str, int] = {}
    chains = []
    for layer in _layer_configs(config, path):
        if sequential and layer["class_name"] == "InputLayer":
            chains.append((layer, [(layer, None)]))  # not saved: it holds no weights
            continue
        key = _snake(layer["class_name"])
        used[key] = used.get(key, -1) + 1
        key = f"{key}_{used[key]}" if used[key] else key
        if layer["class_name"] == "Sequential" and isinstance(layer["config"].get("layers"), list):
            inner = _chains(layer, path, f"{prefix}/{key}/layers")
            chains.append((layer, [leaf for entry, chain in inner
                                   if entry["class_name"] != "InputLayer" for leaf in chain]))
        else:
            chains.append((layer, [(layer, f"{prefix}/{key}/vars")]))
    return chains


def _translate(value: Any, where: str) -> Any:
    """A Keras 3 config value as tf-keras reads it: dtype policies as their name, serialized
    objects (initializers, regularizers, constraints) as ``{"class_name", "config"}``."""
    if isinstance(value, list):
        return [_translate(v, where) for v in value]
    if not isinstance(value, dict):
        return value
    cls = value.get("class_name")
    if cls == "function" and isinstance(value.get("config"), str):  # a built-in activation
        return value["config"]
    if cls in ("DTypePolicy", "FloatDTypePolicy") and isinstance(value.get("config"), dict):
        return value["config"].get("name", "float32")
    if isinstance(cls, str) and isinstance(value.get("config"), dict):
        inner = {k: _translate(v, where) for k, v in value["config"].items()
                 if not (k in NEUTRAL and v == NEUTRAL[k])}
        return {"class_name": cls, "config": inner}
    if isinstance(cls, str):
        raise ModelError(f"{where}: the Keras 3 value {short(cls)} has no tf-keras counterpart")
    return {k: _translate(v, where) for k, v in value.items()}


def _make_layer(layer: dict, path: Path) -> Any:
    cls_name, name = layer["class_name"], layer.get("name")
    where = f"{path}: layer {short(name or '?')} ({cls_name})"
    renames = RENAMED.get(cls_name, {})
    config = {}
    for key, value in layer["config"].items():
        if key in NEUTRAL and value == NEUTRAL[key]:
            continue
        config[renames.get(key, key)] = _translate(value, where)
    if cls_name == "InputLayer":
        config.pop("batch_size", None)
        config.pop("input_shape", None)
    cls = getattr(keras.layers, cls_name, None)
    if not isinstance(cls, type):
        raise ModelError(f"{where} has no tf-keras counterpart")
    try:
        return cls.from_config(config)
    except Exception as exc:  # noqa: BLE001 - any tf-keras refusal of the config, in one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{where} cannot be carried over to tf-keras: {first[:160]}") from None


def _rebuild(config: dict, chains: list[tuple[dict, list]], path: Path) -> keras.Model:
    """The tf-keras model: a Sequential stays one, a Functional graph is rewired node by node."""
    made = [[_make_layer(leaf, path) for leaf, _ in chain] for _, chain in chains]
    name = config["config"].get("name")
    try:
        if config["class_name"] == "Sequential":
            made = [obj for chain in made for obj in chain]
            if not made or not isinstance(made[0], keras.layers.InputLayer):
                shape = config["config"].get("build_input_shape") or config.get("build_config", {}).get("input_shape")
                if not shape:
                    raise ModelError(f"cannot load {path} as a Keras 3 model: a Sequential model "
                                     "without an input shape")
                made.insert(0, keras.layers.InputLayer(batch_input_shape=tuple(shape)))
            return keras.Sequential(made, name=name)
        return _functional(config["config"], [layer for layer, _ in chains], made, name, path)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - a graph tf-keras cannot wire: the user's file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot rebuild {path} as a tf-keras model: {first[:200]}") from None


def _functional(inner: dict, layers: list[dict], made: list, name: str | None, path: Path) -> keras.Model:
    by_name = {layer["name"]: (layer, obj) for layer, obj in zip(layers, made)}
    outputs: dict[tuple[str, int], list] = {}

    def tensor(history: Any) -> Any:
        key = (history[0], int(history[1]))
        if key not in outputs:
            raise KeyError(key)
        return outputs[key][int(history[2]) if len(history) > 2 else 0]

    def resolve(arg: Any) -> Any:
        if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__":
            return tensor(arg["config"]["keras_history"])
        if isinstance(arg, list):
            return [resolve(a) for a in arg]
        if isinstance(arg, dict):
            return {k: resolve(v) for k, v in arg.items()}
        return arg

    pending = [(layer["name"], i, node) for layer in layers
               for i, node in enumerate(layer.get("inbound_nodes") or [])]
    for layer, chain in zip(layers, made):
        if len(chain) == 1 and isinstance(chain[0], keras.layers.InputLayer):
            outputs[(layer["name"], 0)] = [chain[0].output]
    while pending:
        left = []
        for layer_name, index, node in pending:
            try:
                args = resolve(node.get("args", []) if isinstance(node, dict) else node)
                kwargs = {k: v for k, v in resolve(node.get("kwargs") or {}).items() if v is not None}
            except KeyError:
                left.append((layer_name, index, node))
                continue
            chain = by_name[layer_name][1]
            out = chain[0](*args, **kwargs)
            for obj in chain[1:]:
                out = obj(out)
            outputs[(layer_name, index)] = list(out) if isinstance(out, (list, tuple)) else [out]
        if len(left) == len(pending):
            raise ModelError(f"cannot rebuild {path} as a tf-keras model: the layers "
                             f"{short(', '.join(sorted({p[0] for p in left})))} cannot be connected")
        pending = left

    def ends(key: str) -> list:
        spec = inner.get(key) or []
        spec = [spec] if spec and isinstance(spec[0], str) else spec
        return [tensor(h) for h in spec]

    ins, outs = ends("input_layers"), ends("output_layers")
    return keras.Model(ins[0] if len(ins) == 1 else ins, outs[0] if len(outs) == 1 else outs, name=name)


def _snake(name: str) -> str:
    """Keras 3's ``naming.to_snake_case``: how a layer's weights group in the h5 file is named."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _set_weights(model: keras.Model, chains: list[tuple[dict, list]], data: bytes | None,
                 path: Path) -> None:
    """Weights from ``model.weights.h5`` (``<group>/vars/<i>``) or, in an ``.h5`` file, from
    ``model_weights/<layer name>`` (``weight_names``, a nested Sequential's in one list), in the
    order tf-keras lists them too."""
    import h5py

    def arrays_of(f: Any, entry: dict, chain: list) -> Iterator[tuple[dict, list]]:
        chain = [(layer, group) for layer, group in chain if group is not None]  # no Sequential input
        if data is not None:
            for layer, group in chain:
                found = f.get(group)
                yield layer, ([np.asarray(found[k]) for k in sorted(found.keys(), key=int)]
                               if found is not None else [])
            return
        found = f["model_weights"].get(entry["name"]) if "model_weights" in f else None
        names = [n.decode() if isinstance(n, bytes) else str(n)
                 for n in (found.attrs.get("weight_names", []) if found is not None else [])]
        pool = [np.asarray(found[n]) for n in names]
        for layer, _ in chain:
            count = len(model.get_layer(layer["name"]).weights)
            yield layer, pool[:count]
            pool = pool[count:]

    try:
        with h5py.File(io.BytesIO(data) if data is not None else path, "r") as f:
            for layer, arrays in (pair for entry, chain in chains for pair in arrays_of(f, entry, chain)):
                target = model.get_layer(layer["name"])
                want = target.weights
                if len(arrays) != len(want) or any(a.shape != tuple(w.shape) for a, w in zip(arrays, want)):
                    raise ModelError(
                        f"cannot load the weights of {path}: layer {short(layer['name'])} has "
                        f"{[a.shape for a in arrays]} in the file, tf-keras expects "
                        f"{[tuple(w.shape) for w in want]}")
                if arrays:
                    target.set_weights(arrays)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged weights file, in one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load the weights of {path}: {first[:200]}") from None


def _check_outputs(model: keras.Model, path: Path, x_check: np.ndarray | None) -> dict:
    """Run the original (Keras 3, safe mode: the file was checked already) and the rebuilt model."""
    try:
        import keras as keras3
    except ImportError:
        keras3 = None
    if keras3 is None or not keras3.__version__.startswith("3"):
        raise ModelError(f"cannot check the tf-keras rebuild of {path}: Keras 3 is not installed "
                         "(pip install 'keras>=3')")
    if x_check is None:
        rng = np.random.default_rng(0)
        shapes = model.input_shape if isinstance(model.input_shape, list) else [model.input_shape]
        x_check = [rng.standard_normal((64, *shape[1:])).astype(np.float32) for shape in shapes]
        x_check = x_check[0] if len(x_check) == 1 else x_check
    count = len(x_check[0] if isinstance(x_check, list) else x_check)
    try:
        original = keras3.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras 3's own failure on the user's file, one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot check the tf-keras rebuild of {path}: Keras 3 cannot load it: "
                         f"{first[:160]}") from None
    def run(m: Any) -> np.ndarray:  # several outputs: side by side, one row per sample
        out = m.predict(x_check, batch_size=256, verbose=0)
        out = out if isinstance(out, (list, tuple)) else [out]
        return np.concatenate([np.reshape(np.asarray(o, np.float64), (count, -1)) for o in out], axis=1)

    want, got = run(original), run(model)
    if want.shape != got.shape:
        raise ModelError(f"the tf-keras rebuild of {path} does not match the original: output shape "
                         f"{got.shape} instead of {want.shape}")
    diff = float(np.max(np.abs(want - got))) if want.size else 0.0
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    if not np.isfinite(diff) or diff > 1e-4 * max(1.0, scale):
        raise ModelError(f"the tf-keras rebuild of {path} does not match the original: max |diff| "
                         f"{diff:.3g} on {count} samples (outputs up to {scale:.3g})")
    return {"checked_samples": count, "max_abs_diff": diff, "output_scale": scale}


# Layer classes a model config may name besides ``keras.layers.*``: models, and the layers the
# functional API makes of ``tf.*`` calls (checked by model_files to call maths only).
_MODEL_CLASSES = frozenset({"Functional", "Sequential", "Model", "TFOpLambda", "SlicingOpLambda"})


def _builtin_layer(name: str) -> bool:
    return name in _MODEL_CLASSES or isinstance(getattr(keras.layers, name, None), type)


def _load_tf_keras(path: Path, trust_code: bool) -> keras.Model:
    """A tf-keras file, loaded as before: checked first, ``.keras`` in safe mode unless trusted."""
    sniff_model_file(path, trust_code=trust_code, known_layer=_builtin_layer)
    exported = path.is_dir() and not (path / "keras_metadata.pb").is_file()
    hint = ("; a SavedModel without keras_metadata.pb (such as Keras 3's model.export()) has no "
            "layers to rebuild: save a .keras file instead (keras.saving.save_model(model, 'model.keras'))")
    try:
        model = keras.models.load_model(path, compile=False, safe_mode=not trust_code)
    except Exception as exc:  # noqa: BLE001 - any loader failure is the user's file, say so in one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load {path} as a tf-keras model: {first[:200]}"
                         f"{hint if exported else ''}") from None
    if not isinstance(model, keras.Model):
        raise ModelError(f"{path} is not a tf-keras model{hint if exported else ''}")
    return model
