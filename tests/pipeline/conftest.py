"""Small data and tiny models so every stage can be exercised in seconds."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tinyfarm import child_process

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def small_digits():
    """A few hundred digits: enough to train a tiny CNN above chance in a couple of epochs."""
    from tinyfarm_datasets import load_dataset

    return load_dataset("digits", val_fraction=0.1, seed=0).subset(train=400, test=120)


@pytest.fixture(scope="session")
def trained_tiny(small_digits):
    """A tiny 2-D CNN trained for a few epochs (shared by the stage tests; do not mutate)."""
    from pipeline.keras_env import set_seed
    from pipeline.keras_models import build_cnn
    from pipeline.train import fit_classifier

    set_seed(0)
    model = build_cnn(small_digits.input_shape, small_digits.num_classes, width=8, depth=2,
                      dense_units=16)
    fit_classifier(model, small_digits, epochs=4, batch_size=32, learning_rate=5e-3, label="tiny")
    return model


@pytest.fixture(scope="session")
def tiny_tflite(small_digits, trained_tiny):
    """``tiny_tflite(kind)``: ``trained_tiny`` converted to ``kind`` (int8/int16x8 calibrated on 50
    train samples), each kind converted once per session (the converter costs seconds a call).
    The bytes are what ``convert`` returns; the tests that check ``convert`` itself call it here."""
    from pipeline.export import convert, representative_samples

    rep = representative_samples(small_digits.x_train, 50)
    cache: dict[str, bytes] = {}

    def get(kind: str) -> bytes:
        if kind not in cache:
            cache[kind] = convert(trained_tiny, kind, rep)
        return cache[kind]

    return get


def digits_short_config() -> dict:
    """configs/digits.yaml (the default pipeline) with fewer epochs and one search rung."""
    config = yaml.safe_load((REPO / "configs" / "digits.yaml").read_text())
    config["baseline"]["epochs"] = 4
    config["prune"]["epochs"] = 3
    config["quantize"]["epochs"] = 1
    config["search"].update(fine_tune_epochs=3, prune_epochs=2, cluster_epochs=1, qat_epochs=1,
                            steps=config["search"]["steps"][1:2])  # w50_c16: fits 16 KB
    config["target"]["max_drop"] = 0.05  # a shortened run: the floor is not what this test is about
    return config


class RealRun:
    """``tinyfarm run`` on ``config`` as a real process into ``folder/run``, started at once; its
    output goes to files (a pipe could fill while nobody reads it)."""

    def __init__(self, folder: Path, config: dict) -> None:
        self.folder, self.config, self.out = folder, config, folder / "run"
        path = folder / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        self.args = [sys.executable, "-m", "tinyfarm.cli", "run", str(path), "--out", str(self.out)]
        self._logs = [open(folder / name, "w+") for name in ("stdout.txt", "stderr.txt")]  # noqa: SIM115
        # spawned like every tinyfarm child: it dies with the test session, even on SIGKILL
        self.proc = child_process.spawn(self.args, stdout=self._logs[0], stderr=self._logs[1],
                                        cwd=REPO)

    def result(self, timeout: float = 600) -> subprocess.CompletedProcess:
        try:
            code = self.proc.wait(timeout)
        finally:
            self.stop()
        out, err = ((self.folder / name).read_text() for name in ("stdout.txt", "stderr.txt"))
        return subprocess.CompletedProcess(self.args, code, out, err)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for log in self._logs:
            log.close()


def _tabular_config(folder: Path) -> dict:
    from test_mlp_family import tabular_config, write_breast_cancer_npz

    return tabular_config(write_breast_cancer_npz(folder / "breast_cancer.npz"))


#: fixture name -> the config of its real run, given the folder it runs in
REAL_RUNS = {"digits_short_run": lambda folder: digits_short_config(), "tabular_run": _tabular_config}
#: runs started when collection ended (see pytest_collection_finish), by fixture name
_EARLY: dict[str, RealRun] = {}


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the real runs that selected tests need now, in the background: they train on the
    second core while the tests before them run (under xdist each worker starts them on demand)."""
    config = session.config
    if config.option.collectonly or hasattr(config, "workerinput"):
        return
    for name, make_config in REAL_RUNS.items():
        if any(name in getattr(item, "fixturenames", ()) for item in session.items):
            folder = Path(tempfile.mkdtemp(prefix=f"tinyfarm-{name}-"))
            _EARLY[name] = RealRun(folder, make_config(folder))


def pytest_sessionfinish(session: pytest.Session) -> None:
    while _EARLY:
        run = _EARLY.popitem()[1]
        run.stop()
        shutil.rmtree(run.folder, ignore_errors=True)


def _real_run(name: str, tmp_path_factory) -> RealRun:
    run = _EARLY.get(name)
    if run is None:
        folder = tmp_path_factory.mktemp(name)
        run = RealRun(folder, REAL_RUNS[name](folder))
    return run


@pytest.fixture(scope="session")
def digits_short_run(tmp_path_factory):
    """``tinyfarm run`` as a real process on :func:`digits_short_config`, once per session:
    ``(completed process, run folder, config)``. Started when collection ends if a selected test
    needs it (else here). A test that runs again into the folder copies it first (its stages and
    trained search candidates are then reused where the inputs match)."""
    run = _real_run("digits_short_run", tmp_path_factory)
    return run.result(), run.out, run.config


@pytest.fixture(scope="session")
def tabular_run(tmp_path_factory):
    """``tinyfarm run`` as a real process on test_mlp_family's short tabular config (a .npz of
    scikit-learn's breast cancer data): ``(completed process, run folder)``, started like
    :func:`digits_short_run`."""
    run = _real_run("tabular_run", tmp_path_factory)
    return run.result(timeout=1800), run.out
