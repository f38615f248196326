"""Offline distillation data: the teacher's logits computed once, stored next to the data, reused.

The data set is rewritten as ``{x_i, [z_1 ... z_k]}``: for every split, one row of teacher outputs
per sample, in sample order. We store **logits** (pre-softmax, float32), not probabilities: any
temperature ``T`` can then be applied at training time (``softmax(z / T)``), so one cache serves
every student, every ``T`` and every run. (Probabilities at a fixed ``T`` would pin ``T``, and
``log`` of rounded probabilities loses the small ones that carry the "dark knowledge".)

The file name carries a hash of the teacher (architecture + weights) and of the inputs (every
split's ``x``), so a changed teacher or data set never reads stale logits; the same hashes, the
shapes and the library versions are also stored inside the file as metadata.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
from filelock import FileLock

from pipeline.keras_env import keras
from tinyfarm.atomic_files import atomic_path
from tinyfarm.provenance import library_versions

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
SPLITS = ("train", "val", "test")


def default_cache_dir(dataset_path: Path | None = None) -> Path:
    """Next to a user ``.npz`` when there is one, else the user cache (``$XDG_CACHE_HOME``)."""
    if dataset_path is not None:
        return Path(dataset_path).resolve().parent
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "tinyfarm" / "teacher_logits"


def model_hash(model: keras.Model) -> str:
    """SHA-256 of a model's architecture (JSON) and every weight's bytes, in order."""
    digest = hashlib.sha256(model.to_json().encode())
    for w in model.get_weights():
        arr = np.ascontiguousarray(w)
        digest.update(str((arr.dtype.str, arr.shape)).encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def arrays_hash(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of named arrays (names, dtypes, shapes and bytes), independent of dict order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def teacher_logits(teacher: keras.Model, inputs: dict[str, np.ndarray], cache_dir: Path,
                   dataset_name: str = "data", batch_size: int = 256) -> tuple[dict[str, np.ndarray], dict]:
    """The teacher's logits for every named input array, from the cache or computed and stored.

    ``teacher`` must output logits (see :func:`pipeline.distill.as_logits_model`). Returns the
    logits per name and the metadata (including ``path`` and ``reused``). Concurrent runs that
    need the same file wait on a lock instead of computing it twice.
    """
    t_hash = model_hash(teacher)
    d_hash = arrays_hash(inputs)
    key = hashlib.sha256(f"{CACHE_FORMAT}:{t_hash}:{d_hash}".encode()).hexdigest()[:16]
    safe_name = "".join(c if c.isalnum() or c in "-_" else "_" for c in dataset_name)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{safe_name}.teacher-logits-{key}.npz"
    with FileLock(str(path) + ".lock"):
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    meta = json.loads(str(z["metadata"]))
                    logits = {name: z[f"logits_{name}"] for name in inputs}
                if (meta.get("teacher_sha256") == t_hash and meta.get("inputs_sha256") == d_hash
                        and all(len(logits[n]) == len(inputs[n]) for n in inputs)):
                    logger.debug("teacher logits: cache hit %s", path)
                    return logits, {**meta, "path": str(path), "reused": True}
                logger.info("teacher logits: %s does not match this teacher and data: recomputed", path)
            except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
                # damaged or foreign file: recompute below
                logger.info("teacher logits: cannot read %s (%s): recomputed", path, type(exc).__name__)
        else:
            logger.debug("teacher logits: cache miss %s", path)
        logits = {name: np.asarray(teacher.predict(x, batch_size=batch_size, verbose=0), np.float32)
                  for name, x in inputs.items()}
        meta = {"format": CACHE_FORMAT, "kind": "logits", "note": "pre-softmax teacher outputs; "
                "apply softmax(z / T) for any temperature T", "dataset": dataset_name,
                "teacher": teacher.name, "teacher_sha256": t_hash, "inputs_sha256": d_hash,
                "num_classes": int(next(iter(logits.values())).shape[-1]),
                "samples": {n: int(len(v)) for n, v in logits.items()}, "versions": library_versions()}
        with atomic_path(path) as tmp:
            np.savez(tmp, metadata=np.array(json.dumps(meta)), **{f"logits_{n}": v for n, v in logits.items()})
    return logits, {**meta, "path": str(path), "reused": False}
