"""What was run, with what, on what: recorded next to every artifact so results can be reproduced."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import sys
from pathlib import Path
from typing import Any

from tinyfarm import atomic_files

# The packages whose versions change results; recorded with every stage and every device run.
TRACKED_PACKAGES = (
    "tinyfarm", "tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert",
    "tflite-micro", "numpy", "scikit-learn", "mnist1d", "pyserial",
)


def library_versions() -> dict[str, str]:
    """Installed versions of the packages that affect results (``"absent"`` when not installed)."""
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def canonical_hash(obj: Any) -> str:
    """Hash of a JSON-serialisable object, independent of key order."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, default=str).encode())


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (:mod:`tinyfarm.atomic_files`): a killed run never leaves half a file."""
    atomic_files.write_json(path, obj)


def command_line() -> str:
    return " ".join(sys.argv)
