"""``--db`` naming someone else's SQLite file: refused in one line, the file left byte for byte
as it was. A store tinyfarm creates is stamped as ours; one made before the stamp is still ours."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from device_harness.farm.store import APPLICATION_ID, ResultsStore
from safety_helpers import assert_one_error_line, run_cli


def _foreign(path):
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
    db.execute("INSERT INTO contacts VALUES ('ada', '123')")
    db.commit()
    db.close()
    return path


def _fingerprint(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


@pytest.fixture
def farm_inputs(tmp_path, monkeypatch):
    from device_harness.farm.synthetic import write_standard_models

    monkeypatch.setenv("TINYFARM_LOCK_DIR", str(tmp_path / "locks"))
    (tmp_path / "farm.yaml").write_text("devices:\n  - {name: d0, backend: twin}\n")
    models = write_standard_models(tmp_path / "models")
    return tmp_path / "farm.yaml", models[0]


@pytest.mark.parametrize("command", ["run", "report"])
def test_someone_elses_sqlite_file_is_refused_untouched(tmp_path, farm_inputs, command):
    folder = tmp_path / "theirs"
    folder.mkdir()
    db = _foreign(folder / "app.db")
    before = _fingerprint(folder)
    farm, model = farm_inputs
    args = (["farm", "run", "--farm", str(farm), "--models", str(model), "--db", str(db)]
            if command == "run" else ["farm", "report", "--db", str(db), "--out", str(tmp_path / "r.html")])
    result, lines = run_cli(args)
    assert_one_error_line(result, lines, "is not a tinyfarm results store", "contacts",
                          "left untouched")
    assert _fingerprint(folder) == before  # same bytes, and no -wal/-shm/.lock beside it


@pytest.mark.parametrize("content, fragment", [
    (b"name,phone\nada,123\n", "is not a SQLite database"),
    (b"SQLite format 3\x00" + bytes(52) + (0x12345678).to_bytes(4, "big") + bytes(28) + bytes(3996),
     "belongs to another application"),
])
def test_not_sqlite_or_another_application_id(tmp_path, content, fragment):
    db = tmp_path / "x.db"
    db.write_bytes(content)
    result, lines = run_cli(["farm", "report", "--db", str(db)])
    assert_one_error_line(result, lines, fragment)
    assert db.read_bytes() == content


def test_new_store_is_stamped_and_an_older_store_is_still_ours(tmp_path):
    ResultsStore(tmp_path / "new.sqlite").close()
    con = sqlite3.connect(tmp_path / "new.sqlite")
    assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    # a store from before the stamp: our tables, application_id 0
    con.execute("PRAGMA application_id = 0")
    con.commit()
    con.close()
    store = ResultsStore(tmp_path / "new.sqlite")
    store.close()
    con = sqlite3.connect(tmp_path / "new.sqlite")
    assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    con.close()
