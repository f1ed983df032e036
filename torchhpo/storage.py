"""Where trials live: in memory, or in one SQLite file that survives crashes.

Storage is coarse: ``open`` a study, ``create_trial``, ``add_report``, ``write``, ``trials``, a queue of enqueued
configs, and what several drivers of one study need (``changes``, ``claim``, ``fail_stale``, ``beat``). Each
study keeps an in-memory mirror, so the hot path (a report per epoch) writes, and reads only what other
drivers changed (nothing, with one driver: SQLite's ``data_version`` says so without a query of the tables).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sqlite3
import threading
import time
import urllib.parse
import uuid
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from torchhpo.space import Config, Space
from torchhpo.trial import Status, TrialRecord

__all__ = ["Heartbeat", "MemoryStorage", "SQLiteStorage", "Storage", "make_storage"]

log = logging.getLogger("torchhpo")

SCHEMA_VERSION = 2
INTERRUPTED = "interrupted: the study stopped while this trial was running"


class _Lost(Exception):
    """A conditional write found the trial in another state (another driver changed it first)."""


def _patiently(step: Any, seconds: float = 60.0) -> Any:
    """Run ``step`` (a SQLite statement), retrying while another connection holds a lock it needs: switching a
    new file to WAL does not wait on the busy timeout, so two drivers starting together can meet there."""
    end = time.monotonic() + seconds
    while True:
        try:
            return step()
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > end:
                raise
            time.sleep(0.05)


def _owner() -> str:
    """This driver's identity in the ``owner`` column: host, pid and a random tag (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _dead(owner: str | None, heartbeat: float | None, stale_after: float, now: float) -> str | None:
    """Why a RUNNING trial of ``owner`` is stale (its driver is gone), or ``None`` while it may still run.

    A driver on this host is gone when its process is; any driver is, once its heartbeat is ``stale_after``
    seconds old (another machine's pid cannot be checked)."""
    if not owner:
        return INTERRUPTED
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return f"interrupted: its driver (process {pid} on this host) ended while the trial was running"
        except PermissionError:  # alive, another user's
            pass
    if heartbeat is None or now - heartbeat > stale_after:
        age = "never" if heartbeat is None else f"{now - heartbeat:.0f} s ago"
        return f"interrupted: its driver ({host}, pid {pid}) stopped beating (last heartbeat {age})"
    return None


@runtime_checkable
class Storage(Protocol):
    """The contract every storage passes (see ``torchhpo.testing.check_storage``).

    Opening and reading never write. Several drivers (threads or processes) may share one study: the storage
    numbers trials (``create_trial`` returns the number), records who runs each one, and tells each driver what
    the others changed (``changes``).
    """

    def open(self, name: str, space: Space, mode: str) -> list[TrialRecord]:
        """Create the study, or re-open it (same space and mode) and return its trials as they are."""

    def create_trial(self, record: TrialRecord) -> int:
        """Store a new trial owned by this handle; its number is the next free one, returned (and set on
        ``record``)."""

    def add_report(self, number: int, step: int, value: float) -> None: ...

    def write(self, record: TrialRecord, *, only_if: Status | None = None) -> bool:
        """Write the record's status, value, reason, finish time and attrs (any status: RUNNING, PAUSED too);
        with ``only_if``, only while the stored status is that one. Returns whether it was written."""

    def trials(self) -> list[TrialRecord]: ...

    def changes(self) -> tuple[list[TrialRecord], list[tuple[int, int, float]]]:
        """What other handles changed since the last ``open``/``changes``: whole trials written, and new reports
        ``(number, step, value)``; ``([], [])`` when nothing changed."""

    def claim(self, number: int) -> bool:
        """Make PAUSED trial ``number`` RUNNING under this handle; ``False`` when another driver was first."""

    def fail_stale(self, stale_after: float) -> dict[int, str]:
        """Mark FAILED the RUNNING trials of other drivers that are gone; return ``{number: reason}``."""

    def beat(self) -> None:
        """Tell the others that this handle's RUNNING trials are alive (a heartbeat)."""

    def settings(self) -> dict[str, Any] | None:
        """How the study was run (searcher, scheduler, budgets), as ``save_settings`` stored it."""

    def save_settings(self, settings: dict[str, Any]) -> None: ...

    def enqueue(self, config: Config) -> None: ...

    def dequeue(self) -> Config | None:
        """Remove and return the oldest enqueued config, or ``None``."""

    def flush(self) -> bool:
        """Make the stored study complete on disk (nothing pending in side files); ``False`` if it could not."""

    def close(self) -> None: ...


def _check_same(name: str, space: Space, mode: str, stored_space: Space, stored_mode: str) -> None:
    if stored_space != space:
        raise ValueError(f"study '{name}' was created with {stored_space}, not {space}; "
                         "open it with its own space (Study.load(path) reads it), or use another study name")
    if stored_mode != mode:
        raise ValueError(f"study '{name}' was created with mode='{stored_mode}', not '{mode}'; use mode='{stored_mode}'")


class MemoryStorage:
    """Keeps a study in this process only; gone when it ends. Threads of one study may share it; a second
    ``Study`` opened on it takes over (the first one's RUNNING trials count as stale)."""

    def __init__(self) -> None:
        self._meta: tuple[str, Space, str] | None = None
        self._trials: dict[int, TrialRecord] = {}
        self._owners: dict[int, str] = {}
        self._queue: list[Config] = []
        self._settings: dict[str, Any] | None = None
        self._lock = threading.RLock()
        self.owner = _owner()

    def open(self, name: str, space: Space, mode: str) -> list[TrialRecord]:
        if self._meta is None:
            self._meta = (name, space, mode)
        else:
            _check_same(name, space, mode, self._meta[1], self._meta[2])
        self.owner = _owner()  # a new driver: trials left RUNNING by the previous one are stale
        return self.trials()

    def create_trial(self, record: TrialRecord) -> int:
        with self._lock:
            record.number = len(self._trials)
            self._trials[record.number] = record.copy()
            self._owners[record.number] = self.owner
            return record.number

    def add_report(self, number: int, step: int, value: float) -> None:
        self._trials[number].reports[step] = value

    def write(self, record: TrialRecord, *, only_if: Status | None = None) -> bool:
        with self._lock:
            kept = self._trials[record.number]
            if only_if is not None and kept.status is not only_if:
                return False
            kept.status, kept.value, kept.reason, kept.finished = (record.status, record.value, record.reason,
                                                                   record.finished)
            kept.attrs = dict(record.attrs)
            return True

    def trials(self) -> list[TrialRecord]:
        with self._lock:
            return [r.copy() for r in sorted(self._trials.values(), key=lambda r: r.number)]

    def changes(self) -> tuple[list[TrialRecord], list[tuple[int, int, float]]]:
        return [], []  # one driver writes a memory study: its mirror is the truth

    def claim(self, number: int) -> bool:
        with self._lock:
            if self._trials[number].status is not Status.PAUSED:
                return False
            self._trials[number].status, self._owners[number] = Status.RUNNING, self.owner
            return True

    def fail_stale(self, stale_after: float) -> dict[int, str]:
        with self._lock:
            stale = [r for r in self._trials.values()
                     if r.status is Status.RUNNING and self._owners.get(r.number) != self.owner]
            for r in stale:
                r.status, r.reason, r.finished = Status.FAILED, INTERRUPTED, time.time()
            return {r.number: INTERRUPTED for r in stale}

    def beat(self) -> None:
        pass

    def settings(self) -> dict[str, Any] | None:
        return self._settings

    def save_settings(self, settings: dict[str, Any]) -> None:
        self._settings = dict(settings)

    def enqueue(self, config: Config) -> None:
        with self._lock:
            self._queue.append(dict(config))

    def dequeue(self) -> Config | None:
        with self._lock:
            return self._queue.pop(0) if self._queue else None

    def flush(self) -> bool:
        return True

    def close(self) -> None:
        pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, space TEXT NOT NULL,
    mode TEXT NOT NULL, created REAL NOT NULL, seq INTEGER NOT NULL DEFAULT 0, settings TEXT);
CREATE TABLE IF NOT EXISTS trials (study INTEGER NOT NULL, number INTEGER NOT NULL, config TEXT NOT NULL,
    status TEXT NOT NULL, value REAL, reason TEXT, started REAL NOT NULL, finished REAL, attrs TEXT NOT NULL,
    owner TEXT, heartbeat REAL, seq INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (study, number));
CREATE TABLE IF NOT EXISTS reports (study INTEGER NOT NULL, number INTEGER NOT NULL, step INTEGER NOT NULL,
    value REAL NOT NULL, PRIMARY KEY (study, number, step));
CREATE TABLE IF NOT EXISTS queue (id INTEGER PRIMARY KEY AUTOINCREMENT, study INTEGER NOT NULL, config TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS trials_seq ON trials (study, seq);
"""
_UPGRADE_1 = """
ALTER TABLE studies ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE studies ADD COLUMN settings TEXT;
ALTER TABLE trials ADD COLUMN owner TEXT;
ALTER TABLE trials ADD COLUMN heartbeat REAL;
ALTER TABLE trials ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
"""
_COLUMNS = "number, config, status, value, reason, started, finished, attrs"


class SQLiteStorage:
    """One SQLite file (WAL mode) holding any number of studies by name, shared by any number of drivers.

    Every write is committed at once, so a process killed at any point (even by SIGKILL) loses at most the
    write in flight. Trial numbers are taken inside a write transaction, so drivers in several processes (or
    machines sharing the file) never collide; each trial row records its driver (``owner``) and a heartbeat, so
    a driver fails only the RUNNING trials whose driver is gone (``fail_stale``), never another live one's.

    Args:
        path: the database file; its folder is created when missing.
        readonly: open without ever writing (what ``torchhpo show`` does); a file without write permission is
            opened this way by itself.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly or (self.path.exists() and not os.access(self.path, os.W_OK))
        self.owner = _owner()
        self._lock = threading.RLock()
        self._study: int | None = None
        self._cursor = (0, 0)  # (trials.seq, reports.rowid) seen so far
        self._version: int | None = None  # PRAGMA data_version at the last look
        if self.readonly:
            self._db = self._connect_readonly()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA synchronous=NORMAL")  # this connection's setting: nothing is written
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ValueError(f"{self.path}: schema version {version}, this torchhpo reads up to {SCHEMA_VERSION}; "
                             "upgrade torchhpo or start a new file")
        self._v1 = version == 1  # upgraded in place by this handle's first write, not by opening
        if version == 0 and not self.readonly:  # a new file: create it (opening an existing one writes nothing)
            _patiently(lambda: self._db.execute("PRAGMA journal_mode=WAL"))  # drivers may create it at once
            _patiently(self._create_schema)

    def _create_schema(self) -> None:
        with self._transaction():
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _upgrade(self) -> bool:
        """Inside a write transaction: bring a version-1 file to this schema (unless another driver did)."""
        if self._db.execute("PRAGMA user_version").fetchone()[0] == 1:
            for statement in filter(str.strip, _UPGRADE_1.split(";")):
                self._db.execute(statement)
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        return True

    def _connect_readonly(self) -> sqlite3.Connection:
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such study file")
        uri = "file:" + urllib.parse.quote(str(self.path.resolve()))
        db = sqlite3.connect(uri + "?mode=ro", uri=True, timeout=60.0, isolation_level=None, check_same_thread=False)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:  # WAL needs its -shm file, and the folder is read-only too
            db.close()
            db = sqlite3.connect(uri + "?immutable=1", uri=True, isolation_level=None, check_same_thread=False)
        return db

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("SQLiteStorage holds a live connection and is not pickled; pass its path instead")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction: taken at once (BEGIN IMMEDIATE, waiting for other writers), committed or undone."""
        if self.readonly:
            raise PermissionError(f"{self.path} was opened read-only (Study.load(..., readonly=True), or the file "
                                  "is not writable): nothing can be written to it")
        with self._lock:
            saved = self._cursor
            self._db.execute("BEGIN IMMEDIATE")
            try:
                upgraded = self._v1 and self._upgrade()
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                self._cursor = saved  # the change numbers this transaction took are undone too
                raise
            self._db.execute("COMMIT")
            if upgraded:
                self._v1 = False

    def _bump(self) -> int:
        """The study's next change number (inside a transaction): every trial write carries one. A handle's own
        writes move its cursor on, unless another handle wrote since its last look (``changes`` then reads both)."""
        seq = self._db.execute("UPDATE studies SET seq = seq + 1 WHERE id = ? RETURNING seq", (self._id(),)).fetchone()[0]
        if seq == self._cursor[0] + 1:
            self._cursor = (seq, self._cursor[1])
        return seq

    def flush(self) -> bool:
        """Copy the write-ahead log into the database file, so that ``x.db`` alone holds the whole study.
        Returns ``False`` when another connection (a reader, another driver) kept it from finishing within 2 s:
        then only a copy made with SQLite's backup is safe."""
        if self.readonly:
            return True
        with self._lock:
            self._db.execute("PRAGMA busy_timeout = 2000")
            try:
                busy = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            except sqlite3.OperationalError:
                busy = 1
            finally:
                self._db.execute("PRAGMA busy_timeout = 60000")
            return not busy

    def close(self) -> None:
        """Flush and close the connection (a close after another handle's is what leaves ``x.db`` whole)."""
        with self._lock:
            if not self.flush():
                log.info("%s: another connection is using the file, so its write-ahead log stays beside it; copy "
                         "the study with sqlite3's .backup, or once every driver has closed it", self.path)
            self._db.close()

    def studies(self) -> list[tuple[str, Space, str]]:
        """``(name, space, mode)`` of every study in the file."""
        rows = self._db.execute("SELECT name, space, mode FROM studies ORDER BY id").fetchall()
        return [(n, Space.from_dict(json.loads(s)), m) for n, s, m in rows]

    def open(self, name: str, space: Space, mode: str) -> list[TrialRecord]:
        if self._study is not None:
            raise ValueError(f"this SQLiteStorage of {self.path} already serves a study: give each Study its own, "
                             "e.g. pass the path (storage='x.db') rather than one storage object to several")
        with self._lock:
            row = self._db.execute("SELECT id, space, mode FROM studies WHERE name = ?", (name,)).fetchone()
            if row is None:
                with self._transaction():
                    row = self._db.execute("SELECT id, space, mode FROM studies WHERE name = ?", (name,)).fetchone()
                    if row is None:  # not created by another driver meanwhile
                        cur = self._db.execute("INSERT INTO studies (name, space, mode, created) VALUES (?, ?, ?, ?)",
                                               (name, json.dumps(space.to_dict()), mode, time.time()))
                        row = (cur.lastrowid, json.dumps(space.to_dict()), mode)
            _check_same(name, space, mode, Space.from_dict(json.loads(row[1])), row[2])
            self._study = row[0]
            self._db.execute("BEGIN")  # one snapshot: the trials and the cursor agree
            try:
                records = self.trials()
                self._cursor = self._top()
                self._version = self._db.execute("PRAGMA data_version").fetchone()[0]
            finally:
                self._db.execute("COMMIT")
            return records

    def _top(self) -> tuple[int, int]:
        seq = 0 if self._v1 else self._db.execute("SELECT seq FROM studies WHERE id = ?", (self._id(),)).fetchone()[0]
        rowid = self._db.execute("SELECT COALESCE(MAX(rowid), 0) FROM reports").fetchone()[0]
        return seq, rowid

    def _id(self) -> int:
        if self._study is None:
            raise RuntimeError("SQLiteStorage: open(name, space, mode) a study first")
        return self._study

    def create_trial(self, record: TrialRecord) -> int:
        with self._transaction():
            sid = self._id()
            record.number = self._db.execute("SELECT COALESCE(MAX(number) + 1, 0) FROM trials WHERE study = ?",
                                             (sid,)).fetchone()[0]
            self._db.execute("INSERT INTO trials VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (sid, record.number, json.dumps(record.config), record.status.value, record.value,
                              record.reason, record.started, record.finished, json.dumps(record.attrs), self.owner,
                              time.time(), self._bump()))
        return record.number

    def add_report(self, number: int, step: int, value: float) -> None:
        if self.readonly:
            raise PermissionError(f"{self.path} was opened read-only: nothing can be written to it")
        with self._lock:
            rowid = self._db.execute("INSERT OR REPLACE INTO reports VALUES (?, ?, ?, ?)",
                                     (self._id(), number, step, value)).lastrowid
            if rowid == self._cursor[1] + 1:  # nobody else reported since the last look
                self._cursor = (self._cursor[0], rowid)

    def write(self, record: TrialRecord, *, only_if: Status | None = None) -> bool:
        try:
            self._write(record, only_if)
        except _Lost:
            return False
        return True

    def _write(self, record: TrialRecord, only_if: Status | None) -> None:
        with self._transaction():
            where = "" if only_if is None else " AND status = ?"
            cur = self._db.execute("UPDATE trials SET status = ?, value = ?, reason = ?, finished = ?, attrs = ?, "
                                   f"seq = ? WHERE study = ? AND number = ?{where}",
                                   (record.status.value, record.value, record.reason, record.finished,
                                    json.dumps(record.attrs), self._bump(), self._id(), record.number,
                                    *(() if only_if is None else (only_if.value,))))
            if cur.rowcount == 0:
                raise _Lost  # undo the change number too

    def _records(self, where: str, args: tuple[Any, ...], reports: dict[int, dict[int, float]]) -> list[TrialRecord]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM trials WHERE study = ? {where} ORDER BY number",
                                (self._id(), *args)).fetchall()
        return [TrialRecord(n, json.loads(c), Status(s), v, reports.get(n, {}), reason, st, fin, json.loads(a))
                for n, c, s, v, reason, st, fin, a in rows]

    def trials(self) -> list[TrialRecord]:
        with self._lock:
            reports: dict[int, dict[int, float]] = {}
            for number, step, value in self._db.execute(
                    "SELECT number, step, value FROM reports WHERE study = ? ORDER BY number, step", (self._id(),)):
                reports.setdefault(number, {})[step] = value
            return self._records("", (), reports)

    def changes(self) -> tuple[list[TrialRecord], list[tuple[int, int, float]]]:
        with self._lock:
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if version == self._version or self._v1:  # no other connection committed anything
                return [], []
            self._version = version
            self._db.execute("BEGIN")
            try:
                seq, rowid = self._cursor
                reports = self._db.execute("SELECT number, step, value FROM reports WHERE rowid > ? AND study = ? "
                                           "ORDER BY rowid", (rowid, self._id())).fetchall()
                records = self._records("AND seq > ?", (seq,), {})
                self._cursor = self._top()
            finally:
                self._db.execute("COMMIT")
            return records, reports

    def claim(self, number: int) -> bool:
        with self._transaction():
            cur = self._db.execute("UPDATE trials SET status = ?, owner = ?, heartbeat = ?, seq = ? "
                                   "WHERE study = ? AND number = ? AND status = ?",
                                   (Status.RUNNING.value, self.owner, time.time(), self._bump(), self._id(), number,
                                    Status.PAUSED.value))
            return cur.rowcount == 1

    def fail_stale(self, stale_after: float) -> dict[int, str]:
        if self.readonly:
            return {}
        with self._transaction():
            now, failed = time.time(), {}
            for number, owner, heartbeat in self._db.execute(
                    "SELECT number, owner, heartbeat FROM trials WHERE study = ? AND status = ? "
                    "AND (owner IS NULL OR owner != ?) ORDER BY number",
                    (self._id(), Status.RUNNING.value, self.owner)).fetchall():
                reason = _dead(owner, heartbeat, stale_after, now)
                if reason is not None:
                    self._db.execute("UPDATE trials SET status = ?, reason = ?, finished = ?, seq = ? "
                                     "WHERE study = ? AND number = ? AND status = ?",
                                     (Status.FAILED.value, reason, now, self._bump(), self._id(), number,
                                      Status.RUNNING.value))
                    failed[number] = reason
        return failed

    def beat(self) -> None:
        if self.readonly or self._study is None:
            return
        with self._lock:
            self._db.execute("UPDATE trials SET heartbeat = ? WHERE study = ? AND owner = ? AND status = ?",
                             (time.time(), self._id(), self.owner, Status.RUNNING.value))

    def settings(self) -> dict[str, Any] | None:
        if self._v1:
            return None
        row = self._db.execute("SELECT settings FROM studies WHERE id = ?", (self._id(),)).fetchone()
        return None if row is None or row[0] is None else json.loads(row[0])

    def save_settings(self, settings: dict[str, Any]) -> None:
        with self._transaction():
            self._db.execute("UPDATE studies SET settings = ? WHERE id = ?", (json.dumps(settings), self._id()))

    def enqueue(self, config: Config) -> None:
        with self._transaction():
            self._db.execute("INSERT INTO queue (study, config) VALUES (?, ?)", (self._id(), json.dumps(config)))

    def dequeue(self) -> Config | None:
        with self._transaction():  # two drivers never take the same config
            row = self._db.execute("SELECT id, config FROM queue WHERE study = ? ORDER BY id LIMIT 1",
                                   (self._id(),)).fetchone()
            if row is None:
                return None
            self._db.execute("DELETE FROM queue WHERE id = ?", (row[0],))
        return json.loads(row[1])


class Heartbeat:
    """A daemon thread that tells the other drivers of a study, every ``interval`` seconds, that this driver's
    RUNNING trials are alive (the heartbeat ``fail_stale`` reads). It holds the storage weakly and ends with it."""

    def __init__(self, storage: Storage, interval: float) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=_beat, args=(weakref.ref(storage), interval, self._stop), daemon=True,
                                        name="torchhpo-heartbeat")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)


def _beat(storage: weakref.ref, interval: float, stop: threading.Event) -> None:
    while not stop.wait(interval):
        store = storage()
        if store is None:  # the study is gone
            return
        try:
            store.beat()
        except sqlite3.ProgrammingError:  # closed under us: nothing left to beat for
            return
        except sqlite3.Error:  # a busy file: beat again next time
            pass
        del store


def make_storage(storage: Storage | str | Path | None) -> Storage:
    """``None`` -> memory; a path (``"runs/x.db"``) -> SQLite; a ``Storage`` as it is."""
    if storage is None:
        return MemoryStorage()
    if isinstance(storage, (str, Path)):
        return SQLiteStorage(storage)
    if isinstance(storage, Storage):
        return storage
    raise TypeError(f"storage must be None, a path to a .db file or a Storage, got {type(storage).__name__}")

