"""Which models a farm run measures: folders, files and comma-separated lists, deduplicated by hash.

Two files with the same bytes are one model (measured once, named after the first path seen): a
copy under another name is not a second data point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tinyfarm.errors import ConfigError, ModelError
from tinyfarm.provenance import sha256_file
from tinyfarm.tflite_file import has_tflite_identifier

from .scheduler import ModelRef


def collect_models(specs: Iterable[str]) -> tuple[list[ModelRef], list[str]]:
    """Models from ``--models`` values; returns (models, notes about skipped duplicates)."""
    paths: list[Path] = []
    for spec in specs:
        for item in (s.strip() for s in spec.split(",")):
            if not item:
                continue
            path = Path(item).expanduser()
            if path.is_dir():
                found = sorted(path.glob("*.tflite"))
                if not found:
                    raise ConfigError(f"no .tflite model in folder {path}")
                paths.extend(found)
            elif path.is_file():
                paths.append(path)
            else:
                raise ConfigError(f"model not found: {path}")
    if not paths:
        raise ConfigError("no model given (--models DIR|FILE[,FILE...])")
    models: list[ModelRef] = []
    notes: list[str] = []
    by_hash: dict[str, ModelRef] = {}
    for path in paths:
        head = path.read_bytes()[:8]
        if not has_tflite_identifier(head):
            raise ModelError(f"{path} is not a .tflite model (no TFL3 identifier)")
        digest = sha256_file(path)
        if digest in by_hash:
            notes.append(f"{path} has the same bytes as {by_hash[digest].path}: measured once")
            continue
        ref = ModelRef(path=path.resolve(), sha256=digest, name=path.stem,
                       size_bytes=path.stat().st_size)
        by_hash[digest] = ref
        models.append(ref)
    names = [m.name for m in models]
    for m in list(models):
        if names.count(m.name) > 1:  # two different models with one file name: qualify
            idx = models.index(m)
            models[idx] = ModelRef(m.path, m.sha256, f"{m.name}@{m.sha256[:8]}", m.size_bytes)
    return models, notes
