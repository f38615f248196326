"""The results store: every farm run, device, model and measurement, in one SQLite file.

SQLite (stdlib) in WAL mode: readers (a report, ``farm status``) never block the runner, several
runs can write one file, and each measurement is its own committed transaction — a run killed
with ``kill -9`` keeps everything it had measured. A run that never reached its end stays
``status='running'`` with no ``finished_at`` until the store is next opened on its host after its
process is gone: it is then marked ``interrupted``.

The file is ours only: a new store is stamped with ``PRAGMA application_id`` (:data:`APPLICATION_ID`)
and ``user_version``; an existing file that is not a tinyfarm store (another application's
SQLite file given as ``--db``) is refused before anything is written to it. A write the disk
refuses (full, quota, read-only) is one :class:`~tinyfarm.errors.StorageError` line.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from filelock import FileLock, Timeout

from tinyfarm import child_process
from tinyfarm.errors import ConfigError, StorageError, storage_error
from tinyfarm.provenance import library_versions, sha256_file

DEFAULT_DB = Path(".tinyfarm/results.sqlite")
SCHEMA_VERSION = 1
APPLICATION_ID = 0x54664D31  # "TfM1" in the SQLite header: this file is a tinyfarm results store
OUR_TABLES = {"meta", "runs", "versions", "devices", "models", "measurements", "device_sessions"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at REAL NOT NULL,
    finished_at REAL,
    status TEXT NOT NULL DEFAULT 'running',      -- running | finished | interrupted | failed
    kind TEXT NOT NULL DEFAULT 'farm',           -- farm | pytest
    farm TEXT,
    farm_path TEXT,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    command TEXT,
    config_json TEXT
);
CREATE TABLE IF NOT EXISTS versions (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    package TEXT NOT NULL,
    version TEXT NOT NULL,
    PRIMARY KEY (run_id, package)
);
CREATE TABLE IF NOT EXISTS devices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    backend TEXT NOT NULL,
    board TEXT NOT NULL DEFAULT '',
    identity TEXT NOT NULL,                      -- the lock key: port or farm file + name
    labels_json TEXT NOT NULL DEFAULT '[]',
    UNIQUE (name, backend, board, identity)
);
CREATE TABLE IF NOT EXISTS models (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sha256 TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    path TEXT
);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    device_id INTEGER NOT NULL REFERENCES devices(id),
    model_id INTEGER NOT NULL REFERENCES models(id),
    status TEXT NOT NULL,                        -- ok | failed
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,
    started_at REAL NOT NULL,
    finished_at REAL NOT NULL,
    upload_s REAL,
    upload_bytes_per_s REAL,
    arena_used INTEGER,
    arena_capacity INTEGER,
    bench_runs INTEGER,
    bench_warmup INTEGER,
    tick_hz REAL,
    ticks_median REAL, ticks_p90 REAL, ticks_min REAL, ticks_max REAL,
    latency_us_median REAL, latency_us_p90 REAL, latency_us_min REAL, latency_us_max REAL,
    latency_us_mean REAL,
    accuracy REAL,
    dataset TEXT,
    samples INTEGER,
    firmware_version TEXT,
    tflm_version TEXT,
    test_id TEXT,                                -- pytest node id when recorded by the plugin
    extra_json TEXT
);
CREATE INDEX IF NOT EXISTS measurements_run ON measurements(run_id);
CREATE TABLE IF NOT EXISTS device_sessions (  -- when a run really held a device's lock
    run_id INTEGER NOT NULL REFERENCES runs(id),
    device_id INTEGER NOT NULL REFERENCES devices(id),
    pid INTEGER NOT NULL,
    acquired_at REAL NOT NULL,
    released_at REAL
);
"""

MEASUREMENT_FIELDS = (
    "status", "reason", "attempts", "started_at", "finished_at", "upload_s", "upload_bytes_per_s",
    "arena_used", "arena_capacity", "bench_runs", "bench_warmup", "tick_hz", "ticks_median",
    "ticks_p90", "ticks_min", "ticks_max", "latency_us_median", "latency_us_p90", "latency_us_min",
    "latency_us_max", "latency_us_mean", "accuracy", "dataset", "samples", "firmware_version",
    "tflm_version", "test_id",
)


class ResultsStore:
    """Thread-safe handle on one results database (one connection, serialised by a lock)."""

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_DB):
        self.path = Path(path)
        try:
            check_ours(self.path)  # before anything (the lock file included) is created beside it
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Two runs opening one new database at once: switching it to WAL takes an exclusive
            # lock that SQLite's busy timeout does not always wait for, so set-up is serialised.
            with FileLock(f"{self.path}.init.lock", timeout=60):
                check_ours(self.path)
                self._db = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False,
                                           isolation_level=None)
                self._db.row_factory = sqlite3.Row
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")  # WAL+NORMAL: durable across process death
                self._db.execute("PRAGMA foreign_keys=ON")
                self._db.executescript(SCHEMA)
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                                 (str(SCHEMA_VERSION),))
                if self._db.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
                    self._db.execute(f"PRAGMA application_id = {APPLICATION_ID}")  # new, or older
                    self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except Timeout:
            raise ConfigError(f"results database {self.path} is being set up by another process "
                              f"that holds {self.path}.init.lock") from None
        except sqlite3.DatabaseError as exc:
            raise _storage_error(exc, self.path) or ConfigError(
                f"results database {self.path} is not usable: {exc}") from None
        except OSError as exc:
            raise storage_error(exc, self.path, writing=True) or ConfigError(
                f"cannot create results database {self.path}: {exc.strerror or exc}") from None
        self._lock = threading.Lock()
        self._mark_dead_runs()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "ResultsStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------------

    def _write(self, sql: str, params: Iterable[Any] = ()) -> int:
        with self._lock, self._writing():
            cur = self._db.execute(sql, tuple(params))  # autocommit: one statement, one commit
            return cur.lastrowid

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A write the disk refuses is one StorageError line naming the database."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            err = _storage_error(exc, self.path)
            if err is None:
                raise
            raise err from None

    def _mark_dead_runs(self) -> None:
        """Runs of this host left ``running`` by a process that is gone: ``interrupted``."""
        host = socket.gethostname()
        for row in self.query("SELECT id, pid FROM runs WHERE status='running' AND host=?", (host,)):
            if row["pid"] != os.getpid() and not child_process.pid_alive(row["pid"]):
                try:
                    self._write("UPDATE runs SET status='interrupted' WHERE id=? AND status='running'",
                                (row["id"],))
                except StorageError:
                    return  # still no room: the report shows it as interrupted anyway

    def begin_run(self, *, kind: str = "farm", farm: str | None = None,
                  farm_path: str | None = None, command: str | None = None,
                  config: dict[str, Any] | None = None) -> int:
        with self._lock, self._writing():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                run_id = self._db.execute(
                    "INSERT INTO runs (started_at, kind, farm, farm_path, host, pid, command, "
                    "config_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (time.time(), kind, farm, farm_path, socket.gethostname(), os.getpid(),
                     command, json.dumps(config or {}, default=str))).lastrowid
                self._db.executemany("INSERT INTO versions VALUES (?, ?, ?)",
                                     [(run_id, k, v) for k, v in library_versions().items()])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return run_id

    def finish_run(self, run_id: int, status: str = "finished") -> None:
        self._write("UPDATE runs SET finished_at = ?, status = ? WHERE id = ?",
                    (time.time(), status, run_id))

    def device_id(self, name: str, backend: str, board: str | None, identity: str,
                  labels: Iterable[str] = ()) -> int:
        with self._lock, self._writing():
            self._db.execute(
                "INSERT OR IGNORE INTO devices (name, backend, board, identity, labels_json) "
                "VALUES (?, ?, ?, ?, ?)", (name, backend, board or "", identity,
                                           json.dumps(sorted(labels))))
            row = self._db.execute(
                "SELECT id FROM devices WHERE name=? AND backend=? AND board=? AND identity=?",
                (name, backend, board or "", identity)).fetchone()
        return int(row["id"])

    def model_id(self, path: str | os.PathLike[str], sha256: str | None = None) -> int:
        path = Path(path)
        digest = sha256 or sha256_file(path)
        with self._lock, self._writing():
            self._db.execute("INSERT OR IGNORE INTO models (sha256, name, size_bytes, path) "
                             "VALUES (?, ?, ?, ?)",
                             (digest, path.stem, path.stat().st_size, str(path.resolve())))
            row = self._db.execute("SELECT id FROM models WHERE sha256=?", (digest,)).fetchone()
        return int(row["id"])

    def record(self, run_id: int, device_id: int, model_id: int, result: dict[str, Any]) -> int:
        """Store one job's outcome; committed before returning."""
        fields = [f for f in MEASUREMENT_FIELDS if f in result]
        extra = {k: v for k, v in result.items() if k not in MEASUREMENT_FIELDS}
        cols = ["run_id", "device_id", "model_id", *fields, "extra_json"]
        values = [run_id, device_id, model_id, *(result[f] for f in fields),
                  json.dumps(extra, default=str) if extra else None]
        return self._write(f"INSERT INTO measurements ({', '.join(cols)}) "
                           f"VALUES ({', '.join('?' * len(cols))})", values)

    def session_start(self, run_id: int, device_id: int, acquired_at: float) -> int:
        return self._write("INSERT INTO device_sessions (run_id, device_id, pid, acquired_at) "
                           "VALUES (?, ?, ?, ?)", (run_id, device_id, os.getpid(), acquired_at))

    def session_end(self, session_rowid: int, released_at: float) -> None:
        self._write("UPDATE device_sessions SET released_at=? WHERE rowid=?",
                    (released_at, session_rowid))

    # -- reading -------------------------------------------------------------------------------

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._db.execute(sql, tuple(params)).fetchall()]

    def runs(self) -> list[dict[str, Any]]:
        return self.query("SELECT r.*, (SELECT COUNT(*) FROM measurements m WHERE m.run_id=r.id) "
                          "AS jobs FROM runs r ORDER BY r.id")

    def run(self, run_id: int) -> dict[str, Any]:
        rows = self.query("SELECT * FROM runs WHERE id=?", (run_id,))
        if not rows:
            raise ConfigError(f"no run {run_id} in {self.path}")
        return rows[0]

    def latest_run_id(self, kind: str | None = None) -> int | None:
        rows = self.query("SELECT MAX(id) AS id FROM runs" + (" WHERE kind=?" if kind else ""),
                          (kind,) if kind else ())
        return rows[0]["id"]

    def measurements(self, run_id: int | None = None) -> list[dict[str, Any]]:
        """Measurements joined with their device and model names, oldest first."""
        sql = ("SELECT m.*, d.name AS device, d.backend, d.board, md.name AS model, "
               "md.sha256 AS model_sha256, md.size_bytes AS model_bytes "
               "FROM measurements m JOIN devices d ON d.id=m.device_id "
               "JOIN models md ON md.id=m.model_id")
        if run_id is not None:
            return self.query(sql + " WHERE m.run_id=? ORDER BY m.id", (run_id,))
        return self.query(sql + " ORDER BY m.id")

    def sessions(self, run_id: int | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT s.*, d.name AS device, d.identity FROM device_sessions s "
               "JOIN devices d ON d.id=s.device_id")
        return self.query(sql + (" WHERE s.run_id=?" if run_id is not None else "")
                          + " ORDER BY s.acquired_at", (run_id,) if run_id is not None else ())

    def versions(self, run_id: int) -> dict[str, str]:
        return {r["package"]: r["version"]
                for r in self.query("SELECT * FROM versions WHERE run_id=?", (run_id,))}


# -- whose file is it -------------------------------------------------------------------------------

SQLITE_MAGIC = b"SQLite format 3\x00"


def check_ours(path: Path) -> None:
    """Refuse, without writing to it, a file that is not a tinyfarm results store.

    Ours: missing or empty (created here), stamped with :data:`APPLICATION_ID`, or an unstamped
    store made before the stamp (our tables, nothing else). Anything else is another
    application's file, or no database at all."""
    try:
        if not path.exists() or path.stat().st_size == 0:
            return
        with open(path, "rb") as fh:
            header = fh.read(100)
    except OSError as exc:
        raise ConfigError(f"cannot read results database {path}: {exc.strerror or exc}") from None
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        raise ConfigError(f"{path} is not a SQLite database, so not a tinyfarm results store; it "
                          "was left untouched: give another --db")
    app_id = int.from_bytes(header[68:72], "big")
    if app_id == APPLICATION_ID:
        return
    if app_id != 0:
        raise ConfigError(f"{path} belongs to another application (SQLite application_id "
                          f"{app_id:#x}), not a tinyfarm results store; it was left untouched: "
                          "give another --db")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                               "AND name NOT LIKE 'sqlite_%'")}
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"results database {path} is not usable: {exc}") from None
    if tables and not ({"meta", "runs", "measurements"} <= tables and tables <= OUR_TABLES):
        names = ", ".join(sorted(tables - OUR_TABLES)[:5]) or ", ".join(sorted(tables)[:5])
        raise ConfigError(f"{path} is not a tinyfarm results store (it holds other tables: "
                          f"{names}); it was left untouched: give another --db")


def _storage_error(exc: sqlite3.DatabaseError, path: Path) -> StorageError | None:
    """SQLite's words for a disk that refuses a write, as one StorageError line."""
    text = str(exc).lower()
    if "disk is full" in text or "database or disk is full" in text:
        return StorageError(f"no space left on device writing {path}")
    if "readonly database" in text or "read-only" in text:
        return StorageError(f"cannot write {path}: read-only file system or file")
    if "disk i/o error" in text:
        return StorageError(f"I/O error writing {path} (disk full or failing?)")
    return None

