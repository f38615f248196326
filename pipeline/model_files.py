"""Checks of a user's model file that need no TensorFlow (so bad input fails fast, in one line).

A tf-keras model file can carry code: a ``Lambda`` layer holds marshalled Python bytecode, and a
``.keras`` config names modules Keras imports. tf-keras' HDF5 and SavedModel loaders run a
Lambda's bytecode whatever ``safe_mode`` says, and even in safe mode the ``.keras`` loader imports
any module a config names. So, unless the user trusts the file (``baseline.trust_model_code:
true``), :func:`refuse_model_code` reads the file's model config itself — the HDF5
``model_config`` attribute (h5py), ``config.json`` of a ``.keras`` zip, the layer metadata of a
SavedModel's ``keras_metadata.pb`` — and refuses it before Keras sees it.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator

from tinyfarm.errors import ModelError, short

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
TRUST_FLAG = "baseline.trust_model_code: true"
# Modules a .keras config may name: Keras' own (tf-keras maps ``keras.*`` to ``tf_keras.*``).
KERAS_MODULES = ("keras", "tf_keras")
# tf.* functions a TFOpLambda layer (``x + 1`` in a functional model) may call: maths only.
TF_OP_NAMESPACES = ("math", "nn", "linalg", "__operators__", "image", "signal", "bitwise", "dtypes")
TF_OP_UNSAFE = ("py_function", "numpy_function", "py_func", "print", "load_library",
                "load_op_library", "io", "debugging", "summary", "saved_model", "data", "compat")


class ModelCodeRefused(ModelError):
    """A model file that would run code from the file (or names code Keras would import)."""


def sniff_model_file(path: str | Path, trust_code: bool = False,
                     known_layer: Callable[[str], bool] | None = None) -> None:
    """Cheap checks of a tf-keras model file, before TensorFlow is imported: exists, readable,
    looks like a ``.keras`` (zip), ``.h5`` (HDF5) or SavedModel folder, and (unless
    ``trust_code``) carries no code (:func:`refuse_model_code`, with ``known_layer``)."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file() and not (path / "keras_metadata.pb").is_file():
            raise ModelError(f"{path} is a folder but not a SavedModel (no saved_model.pb)")
    else:
        try:
            with open(path, "rb") as fh:
                head = fh.read(8)
        except OSError as exc:
            raise ModelError(f"cannot read model file {path}: {exc.strerror or exc}") from None
        if head[:4] != ZIP_MAGIC and head != HDF5_MAGIC:
            raise ModelError(f"cannot load {path} as a tf-keras model: not a .keras (zip) or .h5 (HDF5) file")
    if not trust_code:
        refuse_model_code(path, known_layer)


def refuse_model_code(path: str | Path, known_layer: Callable[[str], bool] | None = None) -> None:
    """Raise :class:`ModelCodeRefused` if the model file holds code or a class Keras would import.

    ``known_layer(class_name)`` (given once TensorFlow is loaded) also refuses layers that are not
    tf-keras built-ins: a custom layer needs its Python class, or its traced TensorFlow graph."""
    path = Path(path)
    for config, layer_names in model_configs(path):
        reason = code_in_config(config)
        if reason is None and known_layer is not None:
            unknown = sorted({n for n in layer_names if not known_layer(n)})
            if unknown:
                reason = (f"it uses the layer class {short(unknown[0])}, not a tf-keras built-in "
                          "(its code, or its saved graph, would run)")
        if reason is not None:
            raise ModelCodeRefused(f"{path} is refused: {reason}; if you trust this file, set "
                                   f"{TRUST_FLAG} in the config")


def model_configs(path: Path) -> Iterator[tuple[Any, list[str]]]:
    """The model config(s) in the file, each with the class names of its layers."""
    if path.is_dir():
        yield from _saved_model_configs(path)
        return
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head == HDF5_MAGIC:
        config = _hdf5_config(path)
    else:
        try:
            with zipfile.ZipFile(path) as zf:
                text = zf.read("config.json")
        except KeyError:
            raise ModelError(f"cannot load {path} as a tf-keras model: no config.json in the "
                             ".keras file") from None
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ModelError(f"cannot load {path} as a tf-keras model: {exc}") from None
        config = _parse(text, path)
    yield config, list(_layer_classes(config))


def _parse(text: str | bytes, path: Path) -> Any:
    """The JSON config, without what a ``compile=False`` load never reads (losses, metrics)."""
    try:
        config = json.loads(text)
        if isinstance(config, dict):
            for unread in ("compile_config", "training_config"):
                config.pop(unread, None)
        return config
    except (ValueError, RecursionError):
        raise ModelError(f"cannot load {path} as a tf-keras model: its model config is not valid "
                         "JSON") from None


def _hdf5_config(path: Path) -> Any:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
    except Exception as exc:  # noqa: BLE001 - h5py's errors for a damaged file vary; one line
        detail = str(exc).splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load {path} as a tf-keras model: {detail}") from None
    if raw is None:
        raise ModelError(f"cannot load {path} as a tf-keras model: no model config in the .h5 file "
                         "(a weights-only file?)")
    return _parse(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw), path)


def _saved_model_configs(path: Path) -> Iterator[tuple[Any, list[str]]]:
    meta = path / "keras_metadata.pb"
    if not meta.is_file():
        raise ModelCodeRefused(
            f"{path} is refused: a SavedModel without Keras metadata (keras_metadata.pb) runs "
            "TensorFlow graphs that cannot be checked and has no layers to rebuild (a Keras 3 "
            "model.export() folder: save a .keras file instead, keras.saving.save_model(model, 'model.keras'))")
    for identifier, text in _saved_metadata(meta.read_bytes(), meta):
        config = _parse(text, meta)
        names = list(_layer_classes(config))
        if identifier.startswith(("_tf_keras_layer", "_tf_keras_rnn_layer", "_tf_keras_input_layer",
                                  "_tf_keras_network", "_tf_keras_model", "_tf_keras_sequential")):
            if isinstance(config, dict) and isinstance(config.get("class_name"), str):
                names.append(config["class_name"])
        yield config, names


def _varint(data: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def _fields(data: bytes) -> Iterator[tuple[int, Any]]:
    """(field number, value) of a protobuf message: varints as ints, length-delimited as bytes."""
    i = 0
    while i < len(data):
        tag, i = _varint(data, i)
        kind = tag & 7
        if kind == 0:
            value, i = _varint(data, i)
        elif kind == 2:
            size, i = _varint(data, i)
            value, i = data[i:i + size], i + size
        elif kind in (1, 5):
            value, i = data[i:i + (8 if kind == 1 else 4)], i + (8 if kind == 1 else 4)
        else:
            raise ValueError(f"wire type {kind}")
        yield tag >> 3, value


def _saved_metadata(data: bytes, meta: Path) -> Iterator[tuple[str, bytes]]:
    """(identifier, metadata JSON) of each node of a ``SavedMetadata`` message (tf-keras'
    ``saved_metadata.proto``: ``repeated SavedObject nodes = 1``, identifier 4, metadata 5)."""
    try:
        nodes = [dict(_fields(v)) for n, v in _fields(data) if n == 1 and isinstance(v, bytes)]
    except (ValueError, IndexError):
        raise ModelError(f"cannot load {meta.parent} as a tf-keras model: {meta.name} is "
                         "damaged") from None
    for node in nodes:
        identifier = node.get(4, b"")
        identifier = identifier.decode("utf-8", "replace") if isinstance(identifier, bytes) else ""
        yield identifier, node.get(5, b"{}")


def _layer_classes(config: Any) -> Iterator[str]:
    """Class names of the layers of a Functional/Sequential config, nested models and wrappers included."""
    stack = [config]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        inner = node.get("config")
        if isinstance(inner, dict):
            for layer in inner.get("layers", []) if isinstance(inner.get("layers"), list) else []:
                if isinstance(layer, dict) and isinstance(layer.get("class_name"), str):
                    yield layer["class_name"]
                    stack.append(layer)
            for key in ("layer", "backward_layer", "forward_layer", "cell"):
                if isinstance(inner.get(key), dict) and isinstance(inner[key].get("class_name"), str):
                    yield inner[key]["class_name"]
                    stack.append(inner[key])


def code_in_config(config: Any) -> str | None:
    """What in a (parsed) Keras config would run code from the file or import a module, else None."""
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        cls = node.get("class_name")
        if cls in ("Lambda", "__lambda__"):
            inner = node.get("config")
            name = inner.get("name") if isinstance(inner, dict) else None
            return (f"it holds a Lambda layer{f' {short(name)}' if name else ''}, whose Python code "
                    "would run while it loads")
        for key, value in node.items():
            if isinstance(key, str) and key.endswith("_type") and value == "lambda":
                return f"it holds a Python lambda ({short(key)}), which would run while it loads"
        module = node.get("module")
        if isinstance(cls, str) and isinstance(module, str) and module != "builtins" and not any(
                module == m or module.startswith(m + ".") for m in KERAS_MODULES):
            return (f"its class {short(cls)} names the module {short(module)}, which Keras would "
                    "import (and run) while it loads")
        if isinstance(cls, str) and module is not None and not isinstance(module, str):
            return f"its class {short(cls)} names a malformed module"
        if cls in ("TFOpLambda", "SlicingOpLambda"):
            inner = node.get("config")
            function = inner.get("function") if isinstance(inner, dict) else None
            if not _safe_tf_op(function):
                return f"a layer calls tf.{str(function)[:60]}, which is not a maths operation"
        stack.extend(node.values())
    return None


def _safe_tf_op(function: Any) -> bool:
    if not isinstance(function, str) or not function:
        return False
    parts = function.split(".")
    if parts[0] in TF_OP_UNSAFE or any(p in TF_OP_UNSAFE for p in parts):
        return False
    return len(parts) == 1 or parts[0] in TF_OP_NAMESPACES
