"""HIL examples run in CI against the twins of farm.example.yaml.

Pass your own ``--farm FILE [--device NAME|label]`` to run them on real boards; without any, this
folder defaults to the example farm (three twins), so CI exercises the plugin end to end.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from device_harness.farm.synthetic import write_standard_models

EXAMPLE_FARM = Path(__file__).resolve().parents[2] / "farm.example.yaml"


def pytest_configure(config):
    if not config.getoption("tinyfarm_farm") and not config.getoption("tinyfarm_device"):
        config.option.tinyfarm_farm = str(EXAMPLE_FARM)
    if not config.getoption("tinyfarm_db") and not os.environ.get("TINYFARM_DB"):
        # a file of their own under .tinyfarm/ (git-ignored): example runs stay out of the
        # results of a user's real farm runs; --farm-db overrides
        base = Path(str(config.rootpath)) / ".tinyfarm"
        config.option.tinyfarm_db = str(base / "hil-results.sqlite")


@pytest.fixture(scope="session")
def synthetic_models(tmp_path_factory):
    return write_standard_models(tmp_path_factory.mktemp("synthetic"))
