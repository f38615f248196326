"""Farm tests: every test gets its own lock folder, so runs of the suite never contend."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def private_lock_dir(tmp_path, monkeypatch):
    locks = tmp_path / "locks"
    monkeypatch.setenv("TINYFARM_LOCK_DIR", str(locks))
    return locks


# pytester is enabled for the whole suite in pyproject.toml (addopts: -p pytester)
