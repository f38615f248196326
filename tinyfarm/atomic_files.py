"""Every result file goes through here: written whole under its final name, or not at all.

:func:`atomic_path` hands out a temporary path in a fresh private folder (``mkdtemp``: mode 0700,
a random name, created by us) beside the final file, so nothing planted beforehand — a symlink at
a fixed ``<name>.tmp`` — is ever opened or followed. Once the caller has written it, the file is
fsynced and ``os.replace``\\ d onto the final name (a rename: a symlink at the final name is
replaced, not followed), and the folder goes away. A write that fails (disk full, quota,
read-only) leaves the previous file untouched and raises one line,
:class:`~tinyfarm.errors.StorageError`: ``no space left on device writing PATH``.

The temporary file has the final file's name, so libraries that choose a format by the suffix
(Keras' ``model.save``, matplotlib's ``savefig``, ``np.savez``) write the right one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from tinyfarm.errors import storage_error


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, durable: bool = True) -> Iterator[Path]:
    """``with atomic_path(final) as tmp: write(tmp)`` — then ``tmp`` replaces ``final``.

    ``durable=False`` skips the fsyncs (a file that only matters while the process lives)."""
    final = Path(path)
    tmp_dir = None
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = tempfile.mkdtemp(prefix=f".{final.name[:40]}.", suffix=".tmp", dir=final.parent)
        tmp = Path(tmp_dir) / final.name
        yield tmp
        if not tmp.is_file() or tmp.is_symlink():
            raise RuntimeError(f"nothing was written to the temporary file for {final}")
        if durable:
            _fsync(tmp)
        os.replace(tmp, final)
        if durable:
            try:
                _fsync(final.parent, directory=True)
            except OSError:  # some file systems cannot fsync a folder; the rename is done
                pass
    except OSError as exc:
        err = storage_error(exc, final, writing=True)
        if err is None:
            raise
        raise err from None
    finally:
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)


def write_bytes(path: str | os.PathLike[str], data: bytes, *, durable: bool = True) -> Path:
    with atomic_path(path, durable=durable) as tmp, open(tmp, "xb") as fh:
        fh.write(data)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str, *, durable: bool = True) -> Path:
    return write_bytes(path, text.encode("utf-8"), durable=durable)


def write_json(path: str | os.PathLike[str], obj: Any, *, durable: bool = True) -> Path:
    """JSON (indented, one trailing newline), atomically."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n",
                      durable=durable)
