"""Reading a user's NumPy files (``.npy`` inputs, ``.npz`` data sets) with a correct one-line error.

``np.load`` takes any file that is neither ``.npy`` nor a zip for a pickle, so a CSV or a text file
given as data is reported as "pickled data". :func:`file_kind` looks at the first bytes instead,
and the messages say what the file is and what was expected. Pickles are never loaded.
"""

from __future__ import annotations

from pathlib import Path

from tinyfarm.errors import DataError

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"


def file_kind(path: str | Path) -> str:
    """What a file is, from its first bytes: ``npy``, ``npz``, ``empty``, ``pickle``, ``hdf5``,
    ``tflite``, ``text`` or ``binary``. Raises ``OSError`` if it cannot be read."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if not head:
        return "empty"
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith(ZIP_MAGIC) or head.startswith(b"PK\x05\x06"):
        return "npz"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head[4:8] == b"TFL3":
        return "tflite"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the 4096-byte boundary
            return "binary"
    return "text"


_DESCRIPTIONS = {"npy": "a .npy array", "npz": "a zip (.npz) archive", "empty": "an empty file",
                 "pickle": "a Python pickle (never loaded: it can run code)",
                 "hdf5": "an HDF5 (.h5) file", "tflite": "a .tflite model",
                 "text": "a text file (CSV?)", "binary": "not a NumPy file"}


def describe(kind: str) -> str:
    return _DESCRIPTIONS.get(kind, kind)


def check_kind(path: str | Path, expected: str, what: str) -> None:
    """One-line :class:`DataError` unless ``path`` exists and is a file of kind ``expected``;
    ``what`` says what the file should be (``"a data .npz with x_train, ..."``)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"file not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a folder, not {what}")
    try:
        kind = file_kind(path)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if kind != expected:
        raise DataError(f"cannot read {path} as {what}: it is {describe(kind)}")


def load_npy(path: str | Path):
    """A ``.npy`` array from a user's file, or one line saying why not."""
    import numpy as np

    check_kind(path, "npy", "a .npy array (np.save)")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(f"{path} holds Python objects (an object array), which tinyfarm does not "
                            "load: save a numeric array") from None
        raise DataError(f"{path}: damaged .npy file ({str(exc).splitlines()[0][:200]})") from None
    except (OSError, EOFError) as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc).strip() else "truncated"
        raise DataError(f"{path}: damaged .npy file ({detail})") from None

