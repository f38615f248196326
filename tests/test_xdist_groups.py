"""``make test`` runs the suite on two pytest-xdist workers with ``--dist loadgroup``; the groups
(tests/conftest.py) keep a pipeline run, a module's fixtures and an emulator build on one worker.
pytest-xdist 3.8 on pytest 9.2 ignores them without a word (pytest-dev/pytest-xdist#1386): this
test fails if that happens again."""

from __future__ import annotations

import pytest


def test_the_loadgroup_groups_take_effect(request):
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not under pytest -n N --dist loadgroup (make test)")
    assert request.node.nodeid.endswith("@test_xdist_groups"), request.node.nodeid
