"""Bad files for ``hostile_inputs.py``: made once per run, in one folder, only when a case needs them.

Everything is small and made here (no download): models from the repository's test data, broken
copies of them, arrays and archives with the wrong shape, dtype or contents, YAML that expands to
billions of nodes, SQLite files that are not tinyfarm's, and (with TensorFlow, only for the full
run) tiny tf-keras models: one holding a Lambda layer whose code would create a marker file.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from functools import cached_property
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_MODELS = Path(os.environ.get("TINYFARM_SHARED_MODELS", REPO.parent / "shared" / "models"))
#: int8 LSTM in the repository: input int8 (1, 8, 4), output int8 (1, 3); 4.4 KB
REPO_MODEL = REPO / "tests" / "harness" / "data" / "lstm_int8.tflite"

#: a pipeline config that gets past every check fast: no pruning, no QAT, no device
TINY_CONFIG = {
    "seed": 0,
    "dataset": {"name": "digits"},
    "baseline": {"width": 4, "depth": 1, "dense_units": 0, "epochs": 1},
    "prune": {"enabled": False},
    "quantize": {"qat": False},
    "export": {"baseline_kinds": ["int8"], "pruned_kinds": [], "c_array": False,
               "representative_samples": 16},
    "evaluate": {"max_test_samples": 32},
    "tflm": {"enabled": False},
    "deploy": {"enabled": False},
    "search": {"enabled": False},
    "report": {"plot": False},
}

# "billion laughs": 9 levels of 9 aliases, 9**9 nodes once expanded
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


class _Hostile:
    """Pickled inside an object array: unpickling it would create ``path`` (must never happen)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class Fixtures:
    """Lazily made files under ``root`` (one attribute per file)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        return self.root / name

    def write(self, name: str, data: bytes | str) -> Path:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)
        return path

    def yaml(self, name: str, data) -> Path:
        import yaml

        return self.write(name, yaml.safe_dump(data, sort_keys=False))

    def config(self, name: str, **sections) -> Path:
        """TINY_CONFIG with ``sections`` merged in (a section given as None is dropped)."""
        cfg = {k: dict(v) if isinstance(v, dict) else v for k, v in TINY_CONFIG.items()}
        for key, value in sections.items():
            if value is None:
                cfg.pop(key, None)
            elif isinstance(value, dict) and isinstance(cfg.get(key), dict):
                cfg[key].update(value)
            else:
                cfg[key] = value
        return self.yaml(name, cfg)

    # ---- models ---------------------------------------------------------------------------------
    @cached_property
    def model(self) -> Path:
        shared = SHARED_MODELS / "hello_world_int8.tflite"
        return Path(shutil.copy(shared if shared.is_file() else REPO_MODEL, self._path("model.tflite")))

    @cached_property
    def model_input_shape(self) -> tuple[int, ...]:
        return (1, 1) if (SHARED_MODELS / "hello_world_int8.tflite").is_file() else (1, 8, 4)

    @cached_property
    def padded_model(self) -> Path:
        """A valid model with 200 KB of padding after its flatbuffer: more than a board's buffer."""
        return self.write("padded.tflite", self.model.read_bytes() + bytes(200_000))

    @cached_property
    def truncated_model(self) -> Path:
        return self.write("truncated.tflite", self.model.read_bytes()[:600])

    @cached_property
    def text_as_model(self) -> Path:
        return self.write("notes.tflite", "this is not a flatbuffer\n" * 20)

    @cached_property
    def empty_model(self) -> Path:
        return self.write("empty.tflite", b"")

    @cached_property
    def model_dir(self) -> Path:
        path = self._path("folder.tflite")
        path.mkdir(exist_ok=True)
        return path

    # ---- arrays -----------------------------------------------------------------------------------
    def _npy(self, name: str, arr: np.ndarray, allow_pickle: bool = False) -> Path:
        path = self._path(name)
        np.save(path, arr, allow_pickle=allow_pickle)
        return path

    @cached_property
    def npy_good(self) -> Path:
        return self._npy("good.npy", np.zeros(self.model_input_shape, np.int8))

    @cached_property
    def npy_wrong_shape(self) -> Path:
        return self._npy("wrong_shape.npy", np.zeros((3, 5, 7), np.int8))

    @cached_property
    def npy_wrong_dtype(self) -> Path:
        return self._npy("wrong_dtype.npy", np.zeros(self.model_input_shape, np.float64))

    @cached_property
    def pickle_marker(self) -> Path:
        return self._path("pickle_ran")

    @cached_property
    def npy_pickled(self) -> Path:
        arr = np.empty(1, dtype=object)
        arr[0] = _Hostile(str(self.pickle_marker))  # pickled as open(marker, "w"): no class needed
        return self._npy("pickled.npy", arr, allow_pickle=True)

    @cached_property
    def npy_text(self) -> Path:
        return self.write("text.npy", "1,2,3\n4,5,6\n")

    @cached_property
    def npz_as_input(self) -> Path:
        path = self._path("inputs.npz")
        np.savez(path, x=np.zeros(self.model_input_shape, np.int8))
        return path

    # ---- data sets ------------------------------------------------------------------------------
    @cached_property
    def csv_data(self) -> Path:
        return self.write("data.csv", "x0,x1,label\n" + "0.1,0.2,1\n" * 50)

    @cached_property
    def empty_npz(self) -> Path:
        path = self._path("empty.npz")
        np.savez(path)
        return path

    def _data_npz(self, name: str, n_train: int = 40, n_test: int = 20, y_train_len: int | None = None,
                  nan: bool = False, shape: tuple[int, ...] = (8, 8, 1)) -> Path:
        rng = np.random.default_rng(0)
        x_train = rng.random((n_train, *shape), np.float32)
        if nan:
            x_train[::3] = np.nan
        path = self._path(name)
        np.savez(path, x_train=x_train, y_train=rng.integers(0, 10, y_train_len or n_train),
                 x_test=rng.random((n_test, *shape), np.float32), y_test=rng.integers(0, 10, n_test))
        return path

    @cached_property
    def mismatched_npz(self) -> Path:
        return self._data_npz("mismatched.npz", y_train_len=33)

    @cached_property
    def nan_npz(self) -> Path:
        return self._data_npz("nan.npz", nan=True)

    @cached_property
    def nan_for_model(self) -> Path:
        """NaNs in a data set shaped for the model's input (so the NaNs, not the shape, are the issue)."""
        return self._data_npz("nan_for_model.npz", nan=True, shape=self.model_input_shape[1:])

    # ---- YAML -----------------------------------------------------------------------------------
    @cached_property
    def bomb_config(self) -> Path:
        return self.write("bomb_config.yaml", ALIAS_BOMB + "seed: 0\n")

    @cached_property
    def bomb_farm(self) -> Path:
        return self.write("bomb_farm.yaml", ALIAS_BOMB + "devices: [{name: t, backend: twin}]\n")

    def farm(self, name: str, device: str) -> Path:
        return self.write(name, f"devices:\n  - {device}\n")

    # ---- databases ------------------------------------------------------------------------------
    @cached_property
    def foreign_sqlite(self) -> Path:
        path = self._path("foreign.sqlite")
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE IF NOT EXISTS recipes (name TEXT, minutes INTEGER)")
            db.execute("INSERT INTO recipes VALUES ('bread', 180)")
        return path

    @cached_property
    def empty_store(self) -> Path:
        """A tinyfarm results store with no run in it."""
        sys.path.insert(0, str(REPO))
        from device_harness.farm.store import ResultsStore

        path = self._path("empty_store.sqlite")
        ResultsStore(path).close()
        return path

    @cached_property
    def text_as_sqlite(self) -> Path:
        return self.write("results.sqlite", "not a database\n" * 100)

    # ---- tf-keras models (TensorFlow: full run only) -------------------------------------------
    @cached_property
    def lambda_marker(self) -> Path:
        return self._path("lambda_ran")

    @cached_property
    def keras_models(self) -> dict[str, Path]:
        """``lambda.h5`` (its Lambda would create :attr:`lambda_marker`) and ``small_input.h5``
        (input (4, 4, 1), which no built-in data set has)."""
        script = textwrap.dedent(f"""
            import os
            os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            from pipeline.keras_env import keras
            ns = {{}}
            exec("def touch(x):\\n    open({str(self.lambda_marker)!r}, 'w').write('ran')\\n    return x\\n", ns)
            inp = keras.Input((8, 8, 1))
            x = keras.layers.Lambda(ns["touch"])(inp)
            out = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(x))
            keras.Model(inp, out).save({str(self._path("lambda.h5"))!r})
            os.unlink({str(self.lambda_marker)!r})
            inp = keras.Input((4, 4, 1))
            out = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inp))
            keras.Model(inp, out).save({str(self._path("small_input.h5"))!r})
        """)
        subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, capture_output=True,
                       timeout=300)
        return {"lambda": self._path("lambda.h5"), "small_input": self._path("small_input.h5")}

    # ---- emulator ---------------------------------------------------------------------------------
    @cached_property
    def paused_qemu_path(self) -> str | None:
        """A PATH whose ``qemu-system-arm`` is the real one started paused (``-S``): tinyfarm waits
        for a HELLO that never comes while a real QEMU runs; None without QEMU or a firmware build."""
        real = shutil.which("qemu-system-arm")
        sys.path.insert(0, str(REPO))
        from device_harness.firmware_builds import device_elf

        if real is None or device_elf("qemu") is None:
            return None
        wrapper = self.write("bin/qemu-system-arm", f'#!/bin/sh\nexec {real} "$@" -S\n')
        wrapper.chmod(0o755)
        return str(wrapper.parent) + os.pathsep + os.environ.get("PATH", "")
