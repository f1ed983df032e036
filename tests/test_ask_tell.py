"""Driving a study through ask and tell under every scheduler, and the limits of optimize (budget, stop,
callbacks, target)."""

import re
import threading
from collections import Counter

import pytest
from support import ROOT

import torchhpo as th
from torchhpo import cli
from torchhpo.schedulers import ASHA, Hyperband, MedianStopping, SuccessiveHalving

SPACE = th.Space({"x": th.Float(0.0, 1.0)})
E = 9


def _curve(sign=1):
    """A learning curve whose early ranks mislead (as in the scheduler contract) and that flattens (so patience
    has plateaus to find), lower is better (``sign=-1``: the same curve to maximize)."""
    def loss(config, step):
        x = config["x"]
        return sign * ((x - 0.3) ** 2 + max(0.08, 0.5 * (1.0 + (17.0 * x) % 1.0) / (step + 1)))  # then flat
    return loss


_loss = _curve()


def _train(loss, log):
    def train(config, trial):
        state = trial.load() or {"epochs": 0}
        for epoch in trial.epochs():
            log.append((trial.number, epoch))
            state = {"epochs": epoch + 1}
            trial.save(state)
            trial.report(loss(config, epoch + 1))
        return loss(config, state["epochs"])
    return train


def _ask_tell(study, n, log, workers=1, loss=_loss):
    """The docs' loop: ask while the budget lasts, then settle; train each trial as far as the scheduler lets it."""
    def run(trial):
        state = trial.load() or {"epochs": 0}
        assert state["epochs"] == trial.last_step, "a resumed trial starts where it stopped"
        for epoch in trial.epochs():
            log.append((trial.number, epoch))
            state = {"epochs": epoch + 1}
            trial.save(state)
            try:
                trial.report(loss(trial.config, epoch + 1))
            except th.TrialPruned:
                return study.tell(trial, status=th.Status.PRUNED)
            except th.TrialPaused:
                return study.tell(trial, status=th.Status.PAUSED)
        return study.tell(trial, loss(trial.config, state["epochs"]))

    new = 0
    while new < n:
        trials = study.ask(min(workers, n - new))
        new += sum(not t.resumed for t in trials)
        for trial in trials:
            run(trial)
    while trials := study.settle(workers):
        for trial in trials:
            run(trial)


SCHEDULERS = {"sha": lambda: SuccessiveHalving(1, E), "hyperband": lambda: Hyperband(1, E),
              "asha": lambda: ASHA(1, E), "asha-3": lambda: ASHA(1, E, brackets=3, seed=1),
              "median": lambda: MedianStopping(warmup_epochs=1, min_trials=3),
              "patience": lambda: th.Patience(2), "patience+asha": lambda: th.Schedulers([th.Patience(2), ASHA(1, E)])}


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
@pytest.mark.parametrize("mode", ["min", "max"])
def test_ask_tell_under_every_scheduler_equals_optimize(name, mode):
    loss = _curve(1 if mode == "min" else -1)
    by_hand, log = th.Study(SPACE, mode=mode, scheduler=SCHEDULERS[name](), max_epochs=E, seed=0), []
    _ask_tell(by_hand, 20, log, loss=loss)
    reference, ref_log = th.Study(SPACE, mode=mode, scheduler=SCHEDULERS[name](), max_epochs=E, seed=0), []
    reference.optimize(_train(loss, ref_log), n_trials=20, progress=False)
    assert not [c for c, k in Counter(log).items() if k > 1], "an epoch was trained twice"
    assert all(t.status.is_final for t in by_hand.trials)
    assert [(t.number, t.config, t.status, t.value, t.reports) for t in by_hand.trials] == \
        [(t.number, t.config, t.status, t.value, t.reports) for t in reference.trials]
    assert sorted(log) == sorted(ref_log)
    if name not in ("median", "patience"):
        assert any(t.status is th.Status.PRUNED for t in by_hand.trials)
    if name.startswith("patience"):
        assert any(t.status is th.Status.COMPLETED and max(t.reports) < E for t in by_hand.trials)


@pytest.mark.parametrize("name", ["hyperband", "asha"])
def test_ask_n_for_several_workers_trains_no_epoch_twice(name):
    study, log = th.Study(SPACE, scheduler=SCHEDULERS[name](), max_epochs=E, seed=0), []
    _ask_tell(study, 24, log, workers=3)
    assert not [c for c, k in Counter(log).items() if k > 1]
    assert len(study.trials) == 24 and all(t.status.is_final for t in study.trials)
    assert any(t.status is th.Status.COMPLETED for t in study.trials)


def test_the_docs_example_runs():
    text = (ROOT / "docs" / "ask-tell.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    exec(compile(code, "docs/ask-tell.md", "exec"), {"__name__": "docs"})


def test_pausing_needs_a_rung_scheduler_and_a_running_trial():
    study = th.Study(SPACE, seed=0)
    trial = study.ask()
    with pytest.raises(ValueError, match="only a rung scheduler"):
        study.tell(trial, status=th.Status.PAUSED)


EXECUTORS = {"inline": lambda: None, "processes": lambda: th.Processes(["cpu"] * 2)}


def _slow(config, trial):
    for epoch in trial.epochs():
        trial.report(_loss(config, epoch + 1))
    return _loss(config, E)


@pytest.mark.parametrize("executor", sorted(EXECUTORS))
def test_epoch_budget_stops_starting_and_resuming(executor):
    study = th.Study(SPACE, scheduler="hyperband", max_epochs=E, seed=0)
    study.optimize(_slow, max_epochs_total=60, executor=EXECUTORS[executor](), progress=False)
    spent = sum(max(t.reports, default=0) for t in study.trials)
    assert 60 <= spent < 60 + 2 * E, spent  # running trials finish past it, nothing starts after
    assert not [t for t in study.trials if t.status is th.Status.RUNNING]
    again = study.optimize(_slow, max_epochs_total=90, executor=EXECUTORS[executor](), progress=False)
    assert 90 <= sum(max(t.reports, default=0) for t in again.trials) < 90 + 2 * E


@pytest.mark.parametrize("executor", sorted(EXECUTORS))
def test_callbacks_stop_and_target(executor):
    seen = []

    def callback(study, record):
        seen.append((record.number, record.status))
        if len(seen) == 5:
            study.stop()

    study = th.Study(SPACE, max_epochs=E, seed=0)
    study.optimize(_slow, n_trials=50, callbacks=[callback], executor=EXECUTORS[executor](), progress=False)
    assert 5 <= len(study.trials) <= 5 + 1  # the running ones finished, nothing new started
    assert sorted(n for n, _ in seen) == [t.number for t in study.trials]  # every end, once
    study = th.Study(SPACE, max_epochs=E, seed=0)
    study.optimize(_slow, n_trials=200, target=0.2, executor=EXECUTORS[executor](), progress=False)
    assert study.best.value <= 0.2 and len(study.trials) < 200


def test_stop_from_another_thread_and_from_the_training_function():
    study = th.Study(SPACE, seed=0)
    started = threading.Event()

    def train(config, trial):
        started.set()
        if trial.number == 3:
            study.stop()
        return config["x"]

    study.optimize(train, n_trials=100, progress=False)
    assert len(study.trials) == 4
    timer = threading.Timer(0.5, study.stop)
    timer.start()
    study.optimize(lambda c, t: __import__("time").sleep(0.01) or c["x"], timeout=60, progress=False)
    assert 4 < len(study.trials) < 4 + 200


def test_ray_honours_stop_budget_and_callbacks(ray_cluster):
    ended = []
    study = th.Study(SPACE, scheduler="asha", max_epochs=E, seed=0)
    study.optimize(_slow, max_epochs_total=40, executor=th.Ray(), callbacks=[lambda s, r: ended.append(r.number)],
                   progress=False)
    spent = sum(max(t.reports, default=0) for t in study.trials)
    assert 40 <= spent < 40 + 2 * E and ended
    assert sorted(ended) == sorted(t.number for t in study.trials if t.status.is_final)
    study = th.Study(SPACE, max_epochs=E, seed=0)
    study.optimize(_slow, n_trials=200, target=0.2, executor=th.Ray(), progress=False)
    assert study.best.value <= 0.2 and len(study.trials) < 200
    study = th.Study(SPACE, max_epochs=E, seed=0)
    study.optimize(_slow, n_trials=200, executor=th.Ray(), progress=False,
                   callbacks=[lambda s, r: s.stop() if r.number >= 3 else None])
    assert 4 <= len(study.trials) <= 4 + 2  # 2 slots: at most the running ones finish after the stop


def _with_attrs(config, trial):
    trial.set_attr("params", 1234)
    for epoch in trial.epochs():
        trial.set_attr("last_epoch", epoch)
        trial.report(_loss(config, epoch + 1))
    trial.set_attr("test_acc", 0.5 + config["x"] / 4)
    return _loss(config, E)


@pytest.mark.parametrize("executor", sorted(EXECUTORS))
def test_user_attributes_are_stored_and_shown(tmp_path, executor, capsys):
    path = tmp_path / "a.db"
    study = th.Study(SPACE, scheduler="asha", max_epochs=E, storage=path, seed=0)
    study.optimize(_with_attrs, n_trials=6, executor=EXECUTORS[executor](), progress=False)
    done = [t for t in study.trials if t.status is th.Status.COMPLETED]
    assert done and all(t.user_attrs == {"params": 1234, "last_epoch": E - 1, "test_acc": 0.5 + t.config["x"] / 4}
                        for t in done)
    pruned = [t for t in study.trials if t.status is th.Status.PRUNED]
    assert all(t.user_attrs["params"] == 1234 and "test_acc" not in t.user_attrs for t in pruned)
    study.close()
    again = th.Study.load(path, readonly=True)
    assert [t.user_attrs for t in again.trials] == [t.user_attrs for t in study.trials]
    assert cli.main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "| last_epoch | params | test_acc |" in out and "| 1234 |" in out


def test_set_attr_by_hand_and_what_it_refuses():
    study = th.Study(SPACE, seed=0)
    trial = study.ask()
    trial.set_attr("note", {"a": [1, 2]})
    study.tell(trial, 1.0)
    assert study.trials[0].user_attrs == {"note": {"a": [1, 2]}}
    for key, value in (("t", __import__("torch").ones(2)), ("nan", float("nan")), ("o", object())):
        with pytest.raises(TypeError, match="must be JSON"):
            trial.set_attr(key, value)
    with pytest.raises(TypeError, match="key must be a non-empty str"):
        trial.set_attr(3, 1)


def test_epoch_budget_under_data_fidelity_counts_fractions_of_an_epoch():
    spent = []

    def train(config, trial):
        for epoch in trial.epochs():
            spent.append(trial.fidelity)
            trial.report(_loss(config, epoch + 1) / trial.fidelity)
        return _loss(config, E)

    study = th.Study(SPACE, scheduler=th.Hyperband(1, 9), max_epochs=3, fidelity="data", seed=0)
    study.optimize(train, max_epochs_total=30, progress=False)
    assert 30 <= sum(spent) < 30 + 3 and len(study.trials) < 100


def test_bad_limits_and_callbacks_are_clear_errors():
    study = th.Study(SPACE, max_epochs=E, seed=0)
    for bad, message in (({"max_epochs_total": 0}, "max_epochs_total must be a positive int"),
                         ({"timeout": -1.0}, "timeout must be a positive number"),
                         ({"target": "low"}, "target must be a finite number"),
                         ({"target": float("nan")}, "target must be a finite number"),
                         ({"retries": -1}, "retries must be a non-negative int")):
        with pytest.raises(ValueError, match=message):
            study.optimize(_slow, n_trials=1, progress=False, **bad)
    with pytest.raises(TypeError, match="callbacks must be a list of functions"):
        study.optimize(_slow, n_trials=1, progress=False, callbacks=[1])
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="settle\\(n\\): n must be a positive int or None"):
            study.settle(bad)
    assert study.trials == []  # nothing started
