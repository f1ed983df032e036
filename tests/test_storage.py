import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

import torchhpo as th
from torchhpo import cli
from torchhpo.settings import describe, rebuild
from torchhpo.storage import SQLiteStorage, make_storage
from torchhpo.testing import check_storage


def test_memory_contract():
    check_storage(th.MemoryStorage)


def test_sqlite_contract(tmp_path):
    path = tmp_path / "s.db"
    check_storage(lambda: SQLiteStorage(path), reopen=lambda: SQLiteStorage(path))


def test_sqlite_is_wal_with_schema_version(tmp_path):
    store = SQLiteStorage(tmp_path / "a" / "b.db")  # folders are created
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == 2


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "s.db"
    SQLiteStorage(path)._db.execute("PRAGMA user_version=99")
    with pytest.raises(ValueError, match="schema version 99"):
        SQLiteStorage(path)


def test_make_storage():
    assert isinstance(make_storage(None), th.MemoryStorage)
    with pytest.raises(TypeError, match="storage must be"):
        make_storage(3)


def test_reopen_with_other_space_or_mode_is_a_clear_error(tmp_path):
    path = tmp_path / "s.db"
    th.Study(th.Space({"x": th.Float(0, 1)}), storage=path, mode="min")
    with pytest.raises(ValueError, match="was created with Space"):
        th.Study(th.Space({"x": th.Float(0, 2)}), storage=path, mode="min")
    with pytest.raises(ValueError, match="mode='min'"):
        th.Study(th.Space({"x": th.Float(0, 1)}), storage=path, mode="max")
    other = th.Study(th.Space({"x": th.Float(0, 2)}), storage=path, name="other")  # another name is fine
    assert other.trials == []


CHILD = textwrap.dedent("""
    import json, sys, time
    import torchhpo as th

    space = th.Space({"x": th.Float(-3.0, 3.0), "k": th.Int(1, 5), "c": th.Choice(["a", "b"])})
    study = th.Study(space, mode="min", storage=sys.argv[1], seed=0)
    study.enqueue({"x": 0.5, "k": 2, "c": "b"})
    while True:
        trial = study.ask()
        for epoch in range(3):
            trial.report(trial.config["x"] ** 2 + epoch)
            time.sleep(0.01)
        value = trial.config["x"] ** 2 + trial.config["k"]
        study.tell(trial, value)
        print(json.dumps({"number": trial.number, "config": trial.config, "value": value}), flush=True)
""")


def test_sigkill_mid_study_loses_no_finished_trial(tmp_path):
    """A real driver process is SIGKILLed mid-study; re-opened, the file has every finished trial, identical."""
    path = tmp_path / "killed.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True,
                             cwd=os.getcwd(), env={**os.environ, "PYTHONPATH": os.getcwd()})
    seen = []
    try:
        while len(seen) < 8:
            line = child.stdout.readline()
            assert line, "the child died before finishing 8 trials"
            seen.append(json.loads(line))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    study = th.Study.load(path)
    assert not [t for t in study.trials if t.status is th.Status.FAILED], "loading fails nothing by itself"
    study.fail_stale_trials()  # the killed driver's process is gone: its running trial is interrupted
    by_number = {t.number: t for t in study.trials}
    for s in seen:  # everything the child saw finished is there, bit for bit
        t = by_number[s["number"]]
        assert t.status is th.Status.COMPLETED and t.config == s["config"] and t.value == s["value"]
        assert t.reports == {1: s["config"]["x"] ** 2, 2: s["config"]["x"] ** 2 + 1, 3: s["config"]["x"] ** 2 + 2}
    assert study.trials[0].config == {"x": 0.5, "k": 2, "c": "b"}  # the enqueued config ran first
    done = [t for t in study.trials if t.status is th.Status.COMPLETED]
    assert all(t.value == t.config["x"] ** 2 + t.config["k"] for t in done)
    interrupted = [t for t in study.trials if t.status is th.Status.FAILED]
    assert len(done) + len(interrupted) == len(study.trials) and len(interrupted) <= 1
    assert all("interrupted" in t.reason for t in interrupted)
    # the study goes on where it stopped: new numbers, and the searcher does not repeat itself
    n = len(study.trials)
    study.optimize(lambda c, t: c["x"] ** 2, n_trials=3, progress=False)
    assert [t.number for t in study.trials[n:]] == [n, n + 1, n + 2]
    configs = [json.dumps(t.config, sort_keys=True) for t in study.trials]
    assert len(set(configs)) == len(configs)


def test_resume_gives_same_trials_as_one_uninterrupted_run(tmp_path):
    """Resume is correct from history alone: 5 + 5 trials over two processes' worth of studies equal 10 in one."""
    space = th.Space({"x": th.Float(-1.0, 1.0)})
    f = lambda c, t: c["x"] ** 2  # noqa: E731
    whole = th.Study(space, searcher="sobol", seed=7).optimize(f, n_trials=10, progress=False)
    th.Study(space, searcher="sobol", seed=7, storage=tmp_path / "r.db").optimize(f, n_trials=5, progress=False)
    resumed = th.Study.load(tmp_path / "r.db", searcher="sobol", seed=7).optimize(f, n_trials=5, progress=False)
    assert [t.config for t in resumed.trials] == [t.config for t in whole.trials]


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such study file"):
        th.Study.load(tmp_path / "missing.db")
    path = tmp_path / "two.db"
    th.Study(th.Space({"x": th.Float(0, 1)}), storage=path, name="a")
    th.Study(th.Space({"x": th.Float(0, 1)}), storage=path, name="b")
    with pytest.raises(ValueError, match=r"holds studies \['a', 'b'\]; choose one with name="):
        th.Study.load(path)
    with pytest.raises(ValueError, match="has no study 'c'"):
        th.Study.load(path, name="c")
    assert th.Study.load(path, name="b").name == "b"


def test_sqlite_write_is_visible_to_another_connection_at_once(tmp_path):
    path = tmp_path / "live.db"
    study = th.Study(th.Space({"x": th.Float(0, 1)}), storage=path)
    trial = study.ask()
    trial.report(0.5)
    peek = SQLiteStorage(path)
    peek._study = 1
    assert peek.trials()[0].reports == {1: 0.5} and peek.trials()[0].status is th.Status.RUNNING
    study.tell(trial, 0.25)
    time.sleep(0.01)
    assert peek.trials()[0].value == 0.25


V1_SCHEMA = """
CREATE TABLE studies (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, space TEXT NOT NULL, mode TEXT NOT NULL,
    created REAL NOT NULL);
CREATE TABLE trials (study INTEGER NOT NULL, number INTEGER NOT NULL, config TEXT NOT NULL, status TEXT NOT NULL,
    value REAL, reason TEXT, started REAL NOT NULL, finished REAL, attrs TEXT NOT NULL, PRIMARY KEY (study, number));
CREATE TABLE reports (study INTEGER NOT NULL, number INTEGER NOT NULL, step INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (study, number, step));
CREATE TABLE queue (id INTEGER PRIMARY KEY AUTOINCREMENT, study INTEGER NOT NULL, config TEXT NOT NULL);
PRAGMA user_version=1;
"""


def _v1_file(path):
    space = th.Space({"x": th.Float(0.0, 1.0)})
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    db.execute("INSERT INTO studies VALUES (1, 'old', ?, 'min', 0.0)", (json.dumps(space.to_dict()),))
    db.execute("""INSERT INTO trials VALUES (1, 0, '{"x": 0.25}', 'completed', 0.5, NULL, 0.0, 1.0, '{}')""")
    db.execute("""INSERT INTO trials VALUES (1, 1, '{"x": 0.75}', 'running', NULL, NULL, 0.0, NULL, '{}')""")
    db.execute("INSERT INTO reports VALUES (1, 0, 1, 0.5)")
    db.commit()
    db.close()


def test_a_version_1_file_is_read_and_upgraded_in_place(tmp_path):
    path = tmp_path / "v1.db"
    _v1_file(path)
    ro = th.Study.load(path, readonly=True)  # read as it is, not upgraded
    assert [(t.number, t.status) for t in ro.trials] == [(0, th.Status.COMPLETED), (1, th.Status.RUNNING)]
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 1
    study = th.Study.load(path)
    assert study.trials[0].reports == {1: 0.5} and study.best.config == {"x": 0.25}
    assert study.fail_stale_trials() == [1], "a version-1 row has no owner: its driver is gone"
    study.optimize(lambda c, t: c["x"], n_trials=2, progress=False)
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 2


def test_a_copy_of_the_db_file_alone_holds_the_study(tmp_path):
    """Users back up and send x.db: at the end of optimize (the study still open) and after close, the file
    itself, without its -wal side file, holds every trial."""
    path = tmp_path / "live.db"
    study = th.Study(th.Space({"x": th.Float(0.0, 1.0)}), storage=path, seed=0)
    study.optimize(lambda c, t: c["x"], n_trials=5, progress=False)
    shutil.copy(path, tmp_path / "copy.db")
    assert len(th.Study.load(tmp_path / "copy.db").trials) == 5
    study.optimize(lambda c, t: c["x"], n_trials=2, progress=False)
    study.close()
    assert not (tmp_path / "live.db-wal").exists() or (tmp_path / "live.db-wal").stat().st_size == 0
    shutil.copy(path, tmp_path / "copy2.db")
    assert len(th.Study.load(tmp_path / "copy2.db").trials) == 7


def _pausing(config, trial):
    state = trial.load() or {"epoch": 0}
    for epoch in trial.epochs():
        trial.save({"epoch": epoch + 1})
        trial.report((config["x"] - 0.3) ** 2 + 1.0 / (epoch + 1))
    return (config["x"] - 0.3) ** 2 + 0 * state["epoch"]


def _interrupted_hyperband(path):
    """A Hyperband study stopped (Ctrl-C) while trials wait PAUSED at their first rung."""
    calls = []

    def train(config, trial):
        calls.append(trial.number)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return _pausing(config, trial)

    study = th.Study(th.Space({"x": th.Float(0.0, 1.0)}), scheduler="hyperband", searcher="tpe", max_epochs=9,
                     storage=path, seed=3)
    with pytest.raises(KeyboardInterrupt):
        study.optimize(train, n_trials=12, progress=False)
    study.close()
    return [t.number for t in th.Study.load(path).trials if t.status is th.Status.PAUSED]


def test_load_restores_how_the_study_was_run(tmp_path):
    path = tmp_path / "hb.db"
    paused = _interrupted_hyperband(path)
    assert len(paused) == 4
    study = th.Study.load(path)
    assert type(study.searcher).__name__ == "TPE" and type(study.scheduler).__name__ == "Hyperband"
    assert study.max_epochs == 9 and study.scheduler.brackets == th.Hyperband(1, 9).brackets
    assert study.searcher.seed == 3
    study.optimize(_pausing, n_trials=4, progress=False)
    assert all(t.status.is_final for t in study.trials), "the paused trials were resumed or pruned"
    assert any(t.status is th.Status.COMPLETED and t.number in paused for t in study.trials)


@pytest.mark.parametrize("change", [{"scheduler": None}, {"max_epochs": 27}, {"scheduler": "asha"}])
def test_reopening_paused_trials_with_another_scheduler_is_refused_at_once(tmp_path, change):
    path = tmp_path / "hb.db"
    paused = _interrupted_hyperband(path)
    study = th.Study.load(path, **change)
    with pytest.raises(ValueError, match=r"trials \[.*\] are PAUSED at a rung of torchhpo.schedulers:Hyperband"):
        study.optimize(_pausing, n_trials=2, progress=False)
    assert [t.number for t in study.trials if t.status is th.Status.PAUSED] == paused  # nothing was touched


def test_cli_run_resumes_to_the_same_total(tmp_path, capsys):
    path = tmp_path / "cnn.db"
    args = ["run", "--trials", "3", "--storage", str(path), "--max-epochs", "2", "--scheduler", "none",
            "--searcher", "random", "--no-progress"]
    assert cli.main(args) == 0
    assert cli.main(args) == 0
    assert len(th.Study.load(path).trials) == 3
    assert "3 of 3 trials already ran" in capsys.readouterr().out


@pytest.mark.parametrize("make", [
    lambda: th.RandomSearch(seed=3), lambda: th.Sobol(), lambda: th.GridSearch({"x": 5}, shuffle=True),
    lambda: th.TPE(n_candidates=12, seed=2), lambda: th.GP(acquisition="ucb", beta=1.5, seed=1),
    lambda: th.GP(options=th.GPOptions(num_restarts=3)), lambda: th.SuccessiveHalving(1, 9, n=5),
    lambda: th.Hyperband(3, 27, eta=2), lambda: th.ASHA(1, 27, brackets=2, seed=4), lambda: th.MedianStopping(2, 3),
    lambda: th.Patience(4, min_delta=0.01), lambda: th.Schedulers([th.Patience(3), th.ASHA(1, 9)]),
])
def test_every_builtin_is_stored_and_rebuilt_by_class_and_arguments(make):
    original = make()
    described = describe(original)
    assert described["args"] is not None, described
    again = rebuild(json.loads(json.dumps(described)))
    assert type(again) is type(original) and describe(again) == described
    if hasattr(original, "seed"):
        assert again.seed == original.seed  # a seed drawn when none was given is stored, not drawn again


def test_a_users_plugin_is_stored_by_name_and_asked_for_again(tmp_path, caplog):
    class Mine:
        def ask(self, space, trials, n=1):
            return space.sample(n, seed=len(trials))

    path = tmp_path / "p.db"
    th.Study(th.Space({"x": th.Float(0.0, 1.0)}), searcher=Mine(), storage=path).optimize(
        lambda c, t: c["x"], n_trials=2, progress=False)
    with caplog.at_level(logging.WARNING, logger="torchhpo"):
        study = th.Study.load(path)
    assert "cannot be rebuilt" in caplog.text and "pass searcher= to Study.load" in caplog.text
    assert type(study.searcher).__name__ == "RandomSearch"
    assert type(th.Study.load(path, searcher=Mine()).searcher) is Mine


def test_a_file_cannot_make_load_call_anything_but_a_searcher_or_scheduler(tmp_path):
    """A stored description names a class and arguments: only torchhpo's searchers, schedulers and their options
    dataclasses are built from it, never another callable of the package."""
    for bad in ({"class": "torchhpo.executors.processes:_kill_group", "args": {"leader": 1}},
                {"class": "torchhpo.storage:SQLiteStorage", "args": {"path": str(tmp_path / "evil.db")}},
                {"class": "os:system", "args": {"command": "true"}},
                {"class": "torchhpo.gp:GP", "args": {"options": {"__dataclass__": "torchhpo.storage:Heartbeat",
                                                                  "fields": {}}}}):
        with pytest.raises(ValueError, match="not a torchhpo"):
            rebuild(bad)
    assert not (tmp_path / "evil.db").exists()


def test_flush_says_when_a_reader_keeps_the_log_open(tmp_path):
    path = tmp_path / "f.db"
    study = th.Study(th.Space({"x": th.Float(0.0, 1.0)}), storage=path)
    study.optimize(lambda c, t: c["x"], n_trials=3, progress=False)
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM trials").fetchone()  # a read transaction pins the log
    study.optimize(lambda c, t: c["x"], n_trials=2, progress=False)
    start = time.monotonic()
    assert study.storage.flush() is False and time.monotonic() - start < 10
    reader.execute("COMMIT")
    assert study.storage.flush() is True
    shutil.copy(path, tmp_path / "copy.db")
    assert len(th.Study.load(tmp_path / "copy.db").trials) == 5


def test_a_composite_schedulers_paused_trials_resume_from_a_file_that_names_it_schedulers(tmp_path):
    """A composite is stored by its public class, ``torchhpo.schedulers:Schedulers`` (as files written before
    ``Schedulers`` picked a subclass say): re-opening such a file resumes its paused trials."""
    path = tmp_path / "mix.db"
    study = th.Study(th.Space({"x": th.Float(0.0, 1.0)}), scheduler=[th.Patience(3), th.ASHA(1, 9)],
                     max_epochs=9, storage=path, seed=3)
    for x in (0.5, 0.1, 0.9):
        study.enqueue({"x": x})
    for _ in range(3):
        trial = study.ask()
        with pytest.raises(th.TrialPaused):
            trial.report(trial.config["x"])
        study.tell(trial, status=th.Status.PAUSED)
    assert study.storage.settings()["scheduler"]["class"] == "torchhpo.schedulers:Schedulers"
    study.close()
    again = th.Study.load(path)
    again.optimize(_pausing, n_trials=1, progress=False)
    assert all(t.status.is_final for t in again.trials), "the paused trials were resumed or pruned"
