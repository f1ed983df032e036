"""Failures are visible: logged, counted, shown, and a study whose trials all fail the same way stops and says so."""

import logging
import re
import sqlite3

import pytest

import torchhpo as th
from torchhpo import cli

SPACE = th.Space({"x": th.Float(0.0, 1.0)})


def _broken(config, trial):
    return undefined_name * config["x"]  # noqa: F821 - the user's bug


def test_first_trials_failing_alike_stop_the_study_with_the_error(caplog):
    study = th.Study(SPACE, seed=0)
    with caplog.at_level(logging.WARNING, logger="torchhpo"), pytest.raises(th.FailingTrials) as err:
        study.optimize(_broken, n_trials=20, progress=False)
    message = str(err.value)
    assert "the first 3 trials all failed" in message and "NameError: name 'undefined_name'" in message
    assert "fail_fast=None" in message and "Traceback" in message
    assert len(study.trials) == 3 and all(t.status is th.Status.FAILED for t in study.trials)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and all(re.match(r"trial \d failed: NameError", m) for m in lines)
    assert "Traceback" in lines[0] and all("Traceback" not in m for m in lines[1:])  # the first one in full


def test_fail_fast_none_keeps_going_and_best_says_why_nothing_completed(caplog):
    study = th.Study(SPACE, seed=0)
    with caplog.at_level(logging.WARNING, logger="torchhpo"):
        study.optimize(_broken, n_trials=5, progress=False, fail_fast=None)
    assert len(study.trials) == 5 and len(caplog.records) == 5
    with pytest.raises(ValueError, match=r"no trial has completed yet; 5 failed, the first with: NameError"):
        _ = study.best


def test_fail_fast_needs_the_same_error_and_only_the_first_trials():
    def sometimes(config, trial):
        if trial.number % 2:
            raise RuntimeError(f"odd trial {trial.number}")  # a different message each time
        raise ValueError("even")

    study = th.Study(SPACE, seed=0)
    study.optimize(sometimes, n_trials=6, progress=False)  # no two first failures alike enough: goes on
    assert len(study.trials) == 6

    def later(config, trial):
        if trial.number >= 1:
            raise ValueError("breaks after the first trial")
        return 1.0

    study = th.Study(SPACE, seed=0)
    study.optimize(later, n_trials=6, progress=False)  # one trial worked: the rest may fail
    assert [t.status for t in study.trials].count(th.Status.FAILED) == 5
    with pytest.raises(ValueError, match="fail_fast must be a positive int or None"):
        study.optimize(later, n_trials=1, fail_fast=0)


def test_fail_fast_under_worker_processes():
    study = th.Study(SPACE, seed=0)
    with pytest.raises(th.FailingTrials, match="NameError"):
        study.optimize(_broken, n_trials=12, devices=["cpu"] * 2, progress=False)
    assert not [t for t in study.trials if not t.status.is_final]


def test_progress_bar_counts_pruned_and_failed_trials_to_the_end(capsys):
    def train(config, trial):
        if config["x"] > 0.9:
            raise RuntimeError("diverged")
        for epoch in trial.epochs():
            trial.report((config["x"] - 0.5) ** 2 + 1.0 / (epoch + 1))
        return (config["x"] - 0.5) ** 2

    study = th.Study(SPACE, scheduler="hyperband", max_epochs=9, seed=1)
    study.optimize(train, n_trials=20, progress=True)
    err = capsys.readouterr().err
    final = err.replace("\r", "\n").strip().splitlines()[-1]
    assert "20/20" in final, final
    pruned = sum(t.status is th.Status.PRUNED for t in study.trials)
    assert pruned and f"pruned={pruned}" in final


def test_a_report_after_tell_and_a_text_value_are_refused():
    study = th.Study(SPACE, seed=0)
    trial = study.ask()
    study.tell(trial, 1.0)
    with pytest.raises(ValueError, match="trial 0 is completed: it takes no more reports"):
        trial.report(0.5)
    assert study.trials[0].reports == {}
    with pytest.raises(TypeError, match=r"the value must be a number, got str .1\.5."):
        study.tell(study.ask(), "1.5")


def test_show_lists_failures_with_their_reason(tmp_path, capsys):
    path = tmp_path / "f.db"
    study = th.Study(SPACE, storage=path, seed=0)
    study.optimize(lambda c, t: 1.0 / 0.0 if c["x"] < 0.5 else c["x"], n_trials=6, progress=False)
    failed = sum(t.status is th.Status.FAILED for t in study.trials)
    assert 0 < failed < 6
    study.close()
    assert cli.main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "| reason |" in out and out.count("ZeroDivisionError: float division by zero") == failed
    assert f"{failed} failed" in out


def test_readonly_load_reads_and_refuses_writes(tmp_path):
    path = tmp_path / "r.db"
    with th.Study(SPACE, storage=path, seed=0) as study:
        study.optimize(lambda c, t: c["x"], n_trials=3, progress=False)
    ro = th.Study.load(path, readonly=True)
    assert len(ro.trials) == 3 and ro.best.value == min(t.value for t in ro.trials)
    with pytest.raises(PermissionError, match="opened read-only"):
        ro.ask()
    assert sqlite3.connect(path).execute("SELECT count(*) FROM trials").fetchone()[0] == 3


def test_progress_bar_counts_the_new_trials_n_trials_asks_for(capsys):
    flaky = set()

    def train(config, trial):
        if config["x"] not in flaky:
            flaky.add(config["x"])
            raise RuntimeError(f"flaky {config['x']}")
        return config["x"]

    th.Study(SPACE, seed=0).optimize(train, n_trials=3, retries=1, progress=True, fail_fast=None)
    final = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert "3/3" in final and "failed=3" in final, final
