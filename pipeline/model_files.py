"""Checks of a user's model file that need no TensorFlow (so bad input fails fast, in one line)."""

from __future__ import annotations

from pathlib import Path

from tinyfarm.errors import ModelError


def sniff_model_file(path: str | Path) -> None:
    """Cheap checks of a tf-keras model file, before TensorFlow is imported: exists, readable, and
    looks like a ``.keras`` (zip), ``.h5`` (HDF5) or SavedModel folder."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file() and not (path / "keras_metadata.pb").is_file():
            raise ModelError(f"{path} is a folder but not a SavedModel (no saved_model.pb)")
        return
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    if head[:4] != b"PK\x03\x04" and head != b"\x89HDF\r\n\x1a\n":
        raise ModelError(f"cannot load {path} as a tf-keras model: not a .keras (zip) or .h5 (HDF5) file")
