"""Where trials live: in memory, or in one SQLite file that survives crashes.

Storage is coarse and has one writer (the study's driver): ``open`` a study, ``create_trial``, ``add_report``,
``finish``, ``trials``, and a queue of enqueued configs. The study keeps an in-memory mirror, so the hot path
(a report per epoch) writes but never reads.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from torchhpo.space import Config, Space
from torchhpo.trial import Status, TrialRecord

__all__ = ["MemoryStorage", "SQLiteStorage", "Storage", "make_storage"]

SCHEMA_VERSION = 1
INTERRUPTED = "interrupted: the study stopped while this trial was running"


@runtime_checkable
class Storage(Protocol):
    """The contract every storage passes (see ``torchhpo.testing.check_storage``)."""

    def open(self, name: str, space: Space, mode: str) -> list[TrialRecord]:
        """Create the study, or re-open it (same space and mode) and return its trials, RUNNING ones marked FAILED."""

    def create_trial(self, record: TrialRecord) -> None: ...

    def add_report(self, number: int, step: int, value: float) -> None: ...

    def finish(self, record: TrialRecord) -> None:
        """Write the record's final status, value, reason, finish time and attrs."""

    def trials(self) -> list[TrialRecord]: ...

    def enqueue(self, config: Config) -> None: ...

    def dequeue(self) -> Config | None:
        """Remove and return the oldest enqueued config, or ``None``."""


def _check_same(name: str, space: Space, mode: str, stored_space: Space, stored_mode: str) -> None:
    if stored_space != space:
        raise ValueError(f"study '{name}' was created with {stored_space}, not {space}; "
                         "open it with its own space (Study.load(path) reads it), or use another study name")
    if stored_mode != mode:
        raise ValueError(f"study '{name}' was created with mode='{stored_mode}', not '{mode}'; use mode='{stored_mode}'")


class MemoryStorage:
    """Keeps a study in this process only; gone when it ends."""

    def __init__(self) -> None:
        self._meta: tuple[str, Space, str] | None = None
        self._trials: dict[int, TrialRecord] = {}
        self._queue: list[Config] = []

    def open(self, name: str, space: Space, mode: str) -> list[TrialRecord]:
        if self._meta is None:
            self._meta = (name, space, mode)
        else:
            _check_same(name, space, mode, self._meta[1], self._meta[2])
        for r in self._trials.values():
            if r.status is Status.RUNNING:
                r.status, r.reason, r.finished = Status.FAILED, INTERRUPTED, time.time()
        return self.trials()

    def create_trial(self, record: TrialRecord) -> None:
        self._trials[record.number] = record.copy()

    def add_report(self, number: int, step: int, value: float) -> None:
        self._trials[number].reports[step] = value

    def finish(self, record: TrialRecord) -> None:
        kept = self._trials[record.number]
        kept.status, kept.value, kept.reason, kept.finished = record.status, record.value, record.reason, record.finished
        kept.attrs = dict(record.attrs)

    def trials(self) -> list[TrialRecord]:
        return [r.copy() for r in sorted(self._trials.values(), key=lambda r: r.number)]

    def enqueue(self, config: Config) -> None:
        self._queue.append(dict(config))

    def dequeue(self) -> Config | None:
        return self._queue.pop(0) if self._queue else None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, space TEXT NOT NULL,
    mode TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS trials (study INTEGER NOT NULL, number INTEGER NOT NULL, config TEXT NOT NULL,
    status TEXT NOT NULL, value REAL, reason TEXT, started REAL NOT NULL, finished REAL, attrs TEXT NOT NULL,
    PRIMARY KEY (study, number));
CREATE TABLE IF NOT EXISTS reports (study INTEGER NOT NULL, number INTEGER NOT NULL, step INTEGER NOT NULL,
    value REAL NOT NULL, PRIMARY KEY (study, number, step));
CREATE TABLE IF NOT EXISTS queue (id INTEGER PRIMARY KEY AUTOINCREMENT, study INTEGER NOT NULL, config TEXT NOT NULL);
"""


class SQLiteStorage:
    """One SQLite file (WAL mode) holding any number of studies by name.

    Every write is committed at once, so a process killed at any point (even by SIGKILL) loses at most the
    write in flight; re-opening marks the trials that were RUNNING as FAILED ("interrupted").

    Args:
        path: the database file; its folder is created when missing.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise ValueError(f"{self.path}: schema version {version}, this torchhpo reads {SCHEMA_VERSION}; "
                             "upgrade torchhpo or start a new file")
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._study: int | None = None
        self._sign = 1

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("SQLiteStorage holds a live connection and is not pickled; pass its path instead")

    def close(self) -> None:
        self._db.close()

    def studies(self) -> list[tuple[str, Space, str]]:
        """``(name, space, mode)`` of every study in the file."""
        rows = self._db.execute("SELECT name, space, mode FROM studies ORDER BY id").fetchall()
        return [(n, Space.from_dict(json.loads(s)), m) for n, s, m in rows]

    def open(self, name: str, space: Space, mode: str) -> list[TrialRecord]:
        row = self._db.execute("SELECT id, space, mode FROM studies WHERE name = ?", (name,)).fetchone()
        if row is None:
            cur = self._db.execute("INSERT INTO studies (name, space, mode, created) VALUES (?, ?, ?, ?)",
                                   (name, json.dumps(space.to_dict()), mode, time.time()))
            self._study = cur.lastrowid
        else:
            _check_same(name, space, mode, Space.from_dict(json.loads(row[1])), row[2])
            self._study = row[0]
            self._db.execute("UPDATE trials SET status = ?, reason = ?, finished = ? WHERE study = ? AND status = ?",
                             (Status.FAILED.value, INTERRUPTED, time.time(), self._study, Status.RUNNING.value))
        self._sign = 1 if mode == "max" else -1
        return self.trials()

    def _id(self) -> int:
        if self._study is None:
            raise RuntimeError("SQLiteStorage: open(name, space, mode) a study first")
        return self._study

    def create_trial(self, record: TrialRecord) -> None:
        self._db.execute("INSERT INTO trials VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (self._id(), record.number, json.dumps(record.config), record.status.value, record.value,
                          record.reason, record.started, record.finished, json.dumps(record.attrs)))

    def add_report(self, number: int, step: int, value: float) -> None:
        self._db.execute("INSERT OR REPLACE INTO reports VALUES (?, ?, ?, ?)", (self._id(), number, step, value))

    def finish(self, record: TrialRecord) -> None:
        self._db.execute("UPDATE trials SET status = ?, value = ?, reason = ?, finished = ?, attrs = ? "
                         "WHERE study = ? AND number = ?",
                         (record.status.value, record.value, record.reason, record.finished,
                          json.dumps(record.attrs), self._id(), record.number))

    def trials(self) -> list[TrialRecord]:
        sid = self._id()
        reports: dict[int, dict[int, float]] = {}
        for number, step, value in self._db.execute(
                "SELECT number, step, value FROM reports WHERE study = ? ORDER BY number, step", (sid,)):
            reports.setdefault(number, {})[step] = value
        rows = self._db.execute("SELECT number, config, status, value, reason, started, finished, attrs FROM trials "
                                "WHERE study = ? ORDER BY number", (sid,)).fetchall()
        return [TrialRecord(n, json.loads(c), Status(s), v, reports.get(n, {}), reason, st, fin, json.loads(a),
                            self._sign) for n, c, s, v, reason, st, fin, a in rows]

    def enqueue(self, config: Config) -> None:
        self._db.execute("INSERT INTO queue (study, config) VALUES (?, ?)", (self._id(), json.dumps(config)))

    def dequeue(self) -> Config | None:
        row = self._db.execute("SELECT id, config FROM queue WHERE study = ? ORDER BY id LIMIT 1",
                               (self._id(),)).fetchone()
        if row is None:
            return None
        self._db.execute("DELETE FROM queue WHERE id = ?", (row[0],))
        return json.loads(row[1])


def make_storage(storage: Storage | str | Path | None) -> Storage:
    """``None`` -> memory; a path (``"runs/x.db"``) -> SQLite; a ``Storage`` as it is."""
    if storage is None:
        return MemoryStorage()
    if isinstance(storage, (str, Path)):
        return SQLiteStorage(storage)
    if isinstance(storage, Storage):
        return storage
    raise TypeError(f"storage must be None, a path to a .db file or a Storage, got {type(storage).__name__}")

