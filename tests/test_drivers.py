"""Several drivers on one study: processes sharing a SQLite file, threads sharing a Study, and what one driver
may and may not do to another's trials."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import torchhpo as th
from torchhpo import cli

SPACE = th.Space({"x": th.Float(0.0, 1.0), "k": th.Int(1, 4)})

DRIVER = textwrap.dedent("""
    import sys, time
    import torchhpo as th

    def train(config, trial):
        for epoch in trial.epochs():
            time.sleep(0.002)
            trial.report((config["x"] - 0.3) ** 2 + 1.0 / (epoch + 1))
        return (config["x"] - 0.3) ** 2 + config["k"] * 1e-3

    if __name__ == "__main__":
        path, seed, scheduler = sys.argv[1], int(sys.argv[2]), sys.argv[3]
        space = th.Space({"x": th.Float(0.0, 1.0), "k": th.Int(1, 4)})
        study = th.Study(space, storage=path, seed=seed, max_epochs=9,
                         scheduler=None if scheduler == "none" else scheduler)
        study.optimize(train, n_trials=int(sys.argv[4]), progress=False)
        study.close()
""")


def _drivers(tmp_path, scheduler: str, n: int, k: int = 2) -> list[subprocess.CompletedProcess]:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "shared.db"), str(seed), scheduler, str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for seed in range(k)]
    return [(p, *p.communicate(timeout=240)) for p in procs]


@pytest.mark.parametrize("scheduler", ["none", "asha", "hyperband"])
def test_two_processes_on_one_sqlite_study_lose_nothing(tmp_path, scheduler):
    """Optuna's everyday way to use two GPUs: two driver processes on one file. Every trial of both is there,
    numbered without a gap or collision, and every one ended (pruning decided on the shared records)."""
    n = 24
    for proc, _out, err in _drivers(tmp_path, scheduler, n):
        assert proc.returncode == 0, err[-3000:]
        assert "IntegrityError" not in err
    study = th.Study.load(tmp_path / "shared.db", readonly=True)
    trials = study.trials
    assert [t.number for t in trials] == list(range(2 * n))
    assert all(t.status.is_final for t in trials), [(t.number, t.status) for t in trials if not t.status.is_final]
    assert not [t for t in trials if t.status is th.Status.FAILED], [t.reason for t in trials if t.reason]
    owners = {t.attrs.get("source") for t in trials}
    assert owners == {"RandomSearch"}
    if scheduler != "none":
        assert any(t.status is th.Status.PRUNED for t in trials)


def test_a_driver_sees_the_other_drivers_running_trials_as_pending(tmp_path):
    """Two drivers (two connections) on one file: the second one's grid search skips the config the first one
    is running, and its scheduler sees the first one's reports."""
    path = tmp_path / "g.db"
    space = th.Space({"k": th.Int(1, 4)})
    a = th.Study(space, searcher=th.GridSearch(), storage=path)
    b = th.Study(space, searcher=th.GridSearch(), storage=path)
    ta = a.ask()
    ta.report(0.5)
    tb = b.ask()
    assert (ta.number, tb.number) == (0, 1) and ta.config != tb.config
    assert b.trials[0].reports == {1: 0.5} and b.trials[0].status is th.Status.RUNNING
    a.tell(ta, 1.0)
    assert b.best.number == 0  # the other driver's result counts


@pytest.mark.parametrize("storage", ["memory", "sqlite"])
def test_ask_and_tell_from_many_threads_loses_no_trial(tmp_path, storage):
    study = th.Study(SPACE, storage=None if storage == "memory" else tmp_path / "t.db", seed=0)
    per, errors = 150, []

    def work() -> None:
        try:
            for _ in range(per):
                trial = study.ask()
                trial.report(trial.config["x"])
                study.tell(trial, trial.config["x"])
        except Exception as e:  # pragma: no cover - the failure is the assertion below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    trials = study.trials
    assert [t.number for t in trials] == list(range(8 * per))
    assert all(t.status is th.Status.COMPLETED and t.reports == {1: t.value} for t in trials)
    if storage == "sqlite":
        stored = th.Study.load(tmp_path / "t.db", readonly=True).trials
        assert [(t.number, t.value) for t in stored] == [(t.number, t.value) for t in trials]


HOLDER = textwrap.dedent("""
    import sys, time
    import torchhpo as th
    study = th.Study(th.Space({"x": th.Float(0.0, 1.0)}), storage=sys.argv[1], seed=0)
    trial = study.ask()
    trial.report(0.5)
    print("running", trial.number, flush=True)
    time.sleep(120)
""")


def test_reading_or_driving_a_study_never_fails_a_live_drivers_trial(tmp_path):
    """Another process holds a RUNNING trial: Study.load, `torchhpo show` and a second driver's optimize leave
    it RUNNING and change nothing of it; once that process is killed, the next driver fails it as interrupted."""
    path = tmp_path / "live.db"
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    holder = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert holder.stdout.readline().split() == ["running", "0"]
        before = _dump(path)
        assert cli.main(["show", str(path)]) == 0
        loaded = th.Study.load(path)
        assert loaded.trials[0].status is th.Status.RUNNING
        assert _dump(path) == before, "reading a study wrote to it"
        loaded.optimize(lambda c, t: c["x"], n_trials=2, progress=False)
        assert loaded.trials[0].status is th.Status.RUNNING and loaded.trials[0].reports == {1: 0.5}
        assert [t.status for t in loaded.trials[1:]] == [th.Status.COMPLETED] * 2
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert loaded.fail_stale_trials() == [0]
    assert loaded.trials[0].status is th.Status.FAILED and "interrupted" in loaded.trials[0].reason


def _dump(path) -> str:
    import sqlite3

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return json.dumps([db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
                           for t in ("studies", "trials", "reports", "queue")])
    finally:
        db.close()


def test_a_remote_driver_counts_as_gone_once_its_heartbeat_is_old(tmp_path):
    """A driver on another machine cannot be checked by pid: its trials are stale once it stops beating."""
    path = tmp_path / "remote.db"
    a = th.Study(SPACE, storage=path)
    trial = a.ask()
    a.storage._db.execute("UPDATE trials SET owner = 'elsewhere:123:abc', heartbeat = ?", (time.time() - 30,))
    b = th.Study.load(path)
    assert b.fail_stale_trials() == [], "30 s without a heartbeat is not stale yet (stale_after = 120 s)"
    b.stale_after = 10.0
    assert b.fail_stale_trials() == [trial.number]
    assert "stopped beating" in b.trials[0].reason


def test_a_live_driver_keeps_beating_while_its_trial_runs_without_reports(tmp_path):
    """A long trial that never reports is not taken for dead: the driver's heartbeat thread keeps it fresh."""
    path = tmp_path / "beat.db"
    a = th.Study(SPACE, storage=path)
    a.heartbeat_interval = 0.1
    trial = a.ask()
    first = a.storage._db.execute("SELECT heartbeat FROM trials").fetchone()[0]
    time.sleep(0.6)
    assert a.storage._db.execute("SELECT heartbeat FROM trials").fetchone()[0] > first + 0.3
    b = th.Study.load(path)  # this process is alive: only the heartbeat can tell
    b.stale_after = 0.5
    time.sleep(0.6)
    assert b.fail_stale_trials() == []
    a.close()  # the heartbeat stops with the study
    time.sleep(0.8)
    assert b.fail_stale_trials() == [trial.number]


# --- regressions found in review --------------------------------------------------------------------------------
def _paused_asha_study(path, **kwargs):
    """An ASHA study with trials 0, 1, 2 PAUSED at rung 1, trial 0 (the best there) promotable."""
    study = th.Study(SPACE, scheduler=th.ASHA(1, 9), max_epochs=9, storage=path, seed=0, **kwargs)
    for value in (0.5, 0.9, 0.7):
        trial = study.ask()
        with pytest.raises(th.TrialPaused):
            trial.report(value)
        study.tell(trial, status=th.Status.PAUSED)
    return study


def test_a_resumed_trial_is_kept_alive_by_its_drivers_heartbeat(tmp_path):
    path = tmp_path / "r.db"
    _paused_asha_study(path).close()
    b = th.Study.load(path)
    b.heartbeat_interval = 0.1
    trial = b.ask()
    assert trial.resumed and trial.number == 0
    c = th.Study.load(path)
    c.stale_after = 0.5
    time.sleep(1.0)
    assert c.fail_stale_trials() == [], "the driver that resumed the trial is alive and beating"
    b.tell(trial, 0.1)
    assert th.Study.load(path, readonly=True).trials[0].status is th.Status.COMPLETED


class _Two(th.Inline):
    slots = 2  # two trials per turn (run one after the other): a promoted trial and a new one


class _BreaksAfter:
    def __init__(self, n):
        self.n, self.inner = n, th.RandomSearch(seed=0)

    def ask(self, space, trials, n=1):
        self.n -= 1
        if self.n < 0:
            raise RuntimeError("the searcher broke")
        return self.inner.ask(space, trials, n)


def test_a_promoted_trial_is_not_left_running_when_the_next_ask_fails(tmp_path):
    study = _paused_asha_study(tmp_path / "o.db", searcher=_BreaksAfter(3))
    with pytest.raises(RuntimeError, match="the searcher broke"):
        study.optimize(lambda c, t: 0.1, n_trials=5, executor=_Two("cpu"), progress=False)
    assert not [t.number for t in study.trials if t.status is th.Status.RUNNING]
    assert study.trials[0].status is th.Status.FAILED and "interrupted" in study.trials[0].reason


def test_pruning_a_paused_trial_never_overwrites_another_drivers_claim(tmp_path):
    path = tmp_path / "p.db"
    a = _paused_asha_study(path)
    b = th.Study.load(path)
    resumed = b.ask()  # b claims trial 0 ...
    stale = a.trials[0].copy()
    stale.status = th.Status.PRUNED
    assert a.storage.write(stale, only_if=th.Status.PAUSED) is False  # ... so a's prune of it loses
    b.tell(resumed, 0.05)
    assert [t.status for t in th.Study.load(path, readonly=True).trials][:1] == [th.Status.COMPLETED]


def test_opening_a_study_commits_nothing(tmp_path):
    """Not even the schema: another connection's data_version (which counts the others' commits) stays put."""
    path = tmp_path / "quiet.db"
    th.Study(SPACE, storage=path).optimize(lambda c, t: c["x"], n_trials=2, progress=False)
    import sqlite3

    watcher = sqlite3.connect(path)
    version = watcher.execute("PRAGMA data_version").fetchone()[0]
    assert len(th.Study.load(path).trials) == 2
    assert th.Study(SPACE, storage=path).best.number in (0, 1)
    cli.main(["show", str(path)])
    assert watcher.execute("PRAGMA data_version").fetchone()[0] == version


def test_tell_keeps_the_trial_running_when_the_storage_refuses_the_write(tmp_path):
    import sqlite3

    path = tmp_path / "busy.db"
    study = th.Study(SPACE, storage=path)
    trial = study.ask()
    study.storage._db.execute("PRAGMA busy_timeout = 200")  # not a minute: another connection holds the lock
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            study.tell(trial, 0.123)
        assert study.trials[0].status is th.Status.RUNNING  # the mirror agrees with the file
    finally:
        blocker.execute("ROLLBACK")
    study.tell(trial, 0.123)  # and the result can still be told
    assert th.Study.load(path, readonly=True).trials[0].value == 0.123


def test_one_storage_object_serves_one_study(tmp_path):
    storage = th.SQLiteStorage(tmp_path / "s.db")
    th.Study(SPACE, storage=storage, name="a")
    with pytest.raises(ValueError, match="already serves a study"):
        th.Study(SPACE, storage=storage, name="b")


def test_load_with_a_seed_reseeds_the_restored_searcher_and_scheduler(tmp_path):
    path = tmp_path / "seed.db"
    th.Study(SPACE, storage=path, searcher="random", scheduler="asha", max_epochs=9, seed=0).optimize(
        lambda c, t: c["x"], n_trials=1, progress=False)
    a, b = th.Study.load(path, seed=1), th.Study.load(path, seed=2)
    assert (a.searcher.seed, b.searcher.seed, a.scheduler.seed, b.scheduler.seed) == (1, 2, 1, 2)
    assert a.ask().config != b.ask().config
    assert th.Study.load(path).searcher.seed == 2  # the settings of the last driver that started a trial


def test_stale_after_set_on_the_study_class_holds_for_every_study(tmp_path, monkeypatch):
    """docs/storage.md: ``Study.stale_after`` may be set on the class (every study of the process) or the object."""
    path = tmp_path / "cls.db"
    a = th.Study(SPACE, storage=path)
    trial = a.ask()
    a.storage._db.execute("UPDATE trials SET owner = 'elsewhere:123:abc', heartbeat = ?", (time.time() - 30,))
    monkeypatch.setattr(th.Study, "stale_after", 10.0)
    b = th.Study.load(path)
    assert b.stale_after == 10.0
    assert b.fail_stale_trials() == [trial.number]
    with pytest.raises(ValueError, match="stale_after must be a positive number"):
        b.stale_after = 0
        b.fail_stale_trials()
