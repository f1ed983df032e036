"""The simulated clock: replays agree with real training, the shipped table loads, the searcher wrapper snaps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import ROOT, load_script

import torchhpo as th
from torchhpo.problems import TASKS, Task
from torchhpo.simulate import SHIPPED, Curves, Simulated, Tabulated

make_curves = load_script(ROOT / "benchmarks" / "make_curves.py")  # the tables' maker (not shipped)
tabulate = make_curves.tabulate

CHEAP = {"digits_cnn": lambda c: c["filters"] <= 12 and c["batch_size"] >= 64,
         "digits_mlp": lambda c: c["units"] <= 64 and c["batch_size"] >= 64,
         "signals_cnn": lambda c: c["filters"] <= 12 and c["batch_size"] >= 128}


def _statuses_and_reports(study):
    return [(t.status, {s: float(np.float32(v)) for s, v in t.reports.items()}) for t in study.trials]


@pytest.mark.parametrize("task", sorted(TASKS))
def test_simulated_and_real_runs_agree(task):
    """Same configs, same scheduler: the real run (paused, resumed from checkpoints) and the replay of its
    tabulated curves make the same decisions and see the same values."""
    configs = [c for c in TASKS[task].space().sobol(32, seed=3) if CHEAP[task](c)][:4]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        curves = tabulate(configs, 3, task=task)  # uninterrupted real training, trial number = row
        assert curves.meta["task"] == task and curves.space.to_dict() == TASKS[task].space().to_dict()
        runs = _real_and_simulated(curves, TASKS[task].train)
    finally:
        torch.set_num_threads(threads)
    real, sim = (_statuses_and_reports(runs[k]) for k in ("real", "simulated"))
    assert real == sim
    assert [s for s, _ in real].count(th.Status.PRUNED) >= 2  # rungs were decided, so pauses and resumes happened
    assert [t.config for t in runs["real"].trials] == configs


def _real_and_simulated(curves, train):
    runs = {}
    for name, executor in (("real", th.Inline("cpu")), ("simulated", Simulated(curves))):
        study = th.Study(curves.space, mode="min", searcher=Tabulated(curves), scheduler=th.SuccessiveHalving(1, 3),
                         max_epochs=3)
        study.optimize(train, n_trials=4, executor=executor, progress=False)
        runs[name] = study
    return runs


def test_simulated_clock_runs_workers_in_parallel():
    space = th.Space({"x": th.Float(0.0, 1.0)})
    configs = space.sobol(6, seed=0)
    ones = np.ones((6, 4), dtype=np.float32)
    curves = Curves(space, configs, ones * np.arange(6)[:, None], ones, ones, ones * 2.0)
    runs = {}
    for slots in (1, 3):
        sim = Simulated(curves, slots=slots)
        th.Study(space, searcher=Tabulated(curves), max_epochs=4).optimize(None, n_trials=6, executor=sim,
                                                                           progress=False)
        runs[slots] = sim
    assert runs[1].epochs == runs[3].epochs == 24
    assert runs[1].clock == pytest.approx(48.0) and runs[3].clock == pytest.approx(16.0)  # 2 s per epoch
    assert [e.number for e in runs[3].events[:3]] == [0, 1, 2]  # three trials interleave


@pytest.mark.parametrize("task", sorted(TASKS))
def test_shipped_tables_load_and_spread(task):
    curves = Curves.load(task)
    n, E = curves.val_loss.shape
    assert n >= 200 and E == make_curves.EPOCHS[task] and len(curves.configs) == n
    assert curves.space.to_dict() == TASKS[task].space().to_dict()
    assert all(curves.space.validate(c) == c for c in curves.configs[:20])
    bad = np.isnan(curves.val_loss)  # diverged runs: NaN from the epoch that diverged on, never before
    assert (np.maximum.accumulate(bad, axis=1) == bad).all() and bad[:, -1].mean() < 0.2
    assert (curves.seconds[~bad] > 0).all() and np.isfinite(curves.val_loss[~bad]).all()
    last = curves.val_loss[~bad[:, -1], -1]
    assert np.quantile(last, 0.9) > 2 * np.quantile(last, 0.1)  # configs differ: a search has something to find


def test_signals_table_is_longer_and_its_first_epochs_rank_configs_roughly():
    """The third table (a 1-D CNN on generated signals x 81 epochs): small on disk, early epochs predict the final
    ranking only roughly (as on the digits tables), and a study with Hyperband's five brackets replays on it."""
    curves = Curves.load("signals_cnn")
    assert curves.meta["task"] == "signals_cnn" and curves.epochs == 81 and curves.val_loss.dtype == np.float32
    assert SHIPPED["signals_cnn"].stat().st_size < 5e6
    ranks = np.argsort(np.argsort(np.nan_to_num(curves.val_loss, nan=np.inf), axis=0), axis=0)
    rho = [np.corrcoef(ranks[:, e - 1], ranks[:, -1])[0, 1] for e in (1, 9, 27)]
    assert rho[0] < rho[1] < rho[2] < 0.99
    assert "| 81 | 1.000 |" in make_curves.summarize(curves)
    sim = Simulated(curves, slots=4)
    study = th.Study(curves.space, mode="min", searcher=Tabulated(curves, th.RandomSearch(seed=0)),
                     scheduler=th.Hyperband(1, 81), max_epochs=81)
    study.optimize(None, n_trials=60, executor=sim, progress=False)
    statuses = [t.status for t in study.trials]
    assert len(statuses) == 60 and statuses.count(th.Status.PRUNED) > 30 and th.Status.COMPLETED in statuses
    assert sim.epochs < 60 * 81 / 4 and max(max(t.reports) for t in study.trials) == 81


def test_a_grown_table_keeps_its_rows_and_trains_the_same_new_ones(tmp_path, load_script):
    """``make_curves.py --grow``: the rows of the smaller table stay as they are, the new rows are what training
    them in one go gives, and a table of another sample is refused."""
    # loaded afresh: its worker pool pickles make_curves._chunk by name, and another test may have re-loaded it
    make_curves = load_script(ROOT / "benchmarks" / "make_curves.py")
    small = make_curves.make("digits_mlp", 1, 2, 0, 1, tmp_path / "small.npz")
    grown = make_curves.make("digits_mlp", 2, 2, 0, 1, tmp_path / "grown.npz", grow=small)
    assert grown.configs == TASKS["digits_mlp"].space().sobol(2, seed=0) and grown.meta["grown_from"]["n"] == 1
    assert (grown.seconds[0] == small.seconds[0]).all()  # kept, not retrained
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        once = tabulate(grown.configs, 2, task="digits_mlp")
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(grown.val_loss, once.val_loss) and np.array_equal(grown.test_acc, once.test_acc)
    with pytest.raises(ValueError, match="not a prefix"):
        make_curves.make("digits_mlp", 2, 2, 1, 1, tmp_path / "other.npz", grow=small)  # another seed


def test_load_names_the_shipped_tables_when_given_neither(tmp_path):
    assert Curves.load().meta.get("task", "digits_cnn") == "digits_cnn"  # the default is the CNN table
    with pytest.raises(FileNotFoundError, match="digits_mlp"):
        Curves.load(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="task 'resnet' is unknown"):
        tabulate([], 1, task="resnet")


def test_tabulated_snaps_to_unused_rows_and_errors_name_the_fix():
    space = th.Space({"x": th.Float(0.0, 1.0)})
    configs = [{"x": 0.1}, {"x": 0.5}, {"x": 0.9}]
    ones = np.ones((3, 2), dtype=np.float32)
    curves = Curves(space, configs, ones, ones, ones, ones)

    class Fixed:
        def ask(self, space, trials, n=1):
            return [{"x": 0.45}] * n

    got = Tabulated(curves, Fixed()).ask(space, [], 2)
    assert got == [{"x": 0.5}, {"x": 0.1}]  # nearest, then the nearest unused
    with pytest.raises(KeyError, match="not in the table"):
        curves.row({"x": 0.3})
    with pytest.raises(ValueError, match="Simulated: slots must be a positive int, got 0"):
        Simulated(curves, slots=0)
    with pytest.raises(ValueError, match="metric='test_acc'"):
        Simulated(curves, metric="test_acc")


def test_a_run_that_diverges_is_tabulated_and_replayed_as_a_failed_trial(monkeypatch):
    """A config whose training reports NaN at epoch 2: the table keeps its first epoch and the seconds of the
    second, then NaN; the replay fails that trial at the same step as the real study, and the others go on."""
    space = th.Space({"lr": th.Float(0.0, 1.0)})

    def net():  # a linear classifier of the digits, which tabulate evaluates for the accuracies
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))

    def train(config, trial):
        for epoch in trial.epochs():
            if trial.checkpoint_dir is not None:  # tabulate evaluates each epoch's checkpoint
                trial.save({"model": net().state_dict()})
            trial.report(float("nan") if config["lr"] > 0.5 and epoch == 1 else 1.0 - config["lr"] / (epoch + 1))
        return None  # the last reported value

    monkeypatch.setitem(TASKS, "toy", Task("toy", lambda: space, lambda c: net(), train))
    configs = [{"lr": 0.2}, {"lr": 0.9}, {"lr": 0.4}]
    curves = tabulate(configs, 3, task="toy")
    assert np.isnan(curves.val_loss[1, 1:]).all() and np.isfinite(curves.val_loss[1, 0])
    assert np.isfinite(curves.seconds[1, :2]).all() and np.isnan(curves.seconds[1, 2])
    runs = {}
    for name, executor in (("real", th.Inline("cpu")), ("simulated", Simulated(curves))):
        study = th.Study(space, mode="min", searcher=Tabulated(curves), max_epochs=3)
        study.optimize(train, n_trials=3, executor=executor, progress=False)
        runs[name] = _statuses_and_reports(study)
        if name == "simulated":
            assert executor.epochs == 3 + 2 + 3  # the epoch that diverged was trained
            assert "diverged" in study.trials[1].reason
    assert runs["real"] == runs["simulated"]
    assert [s for s, _ in runs["real"]] == [th.Status.COMPLETED, th.Status.FAILED, th.Status.COMPLETED]


def test_a_driver_error_and_a_timeout_fail_a_simulated_trial_as_on_a_real_executor():
    """The scheduler's error fails only its trial, with the reason every executor gives; ``timeout_per_trial``
    counts simulated seconds, and the epoch it cuts short is not counted."""
    space = th.Space({"x": th.Float(0.0, 1.0)})
    configs = [{"x": 0.1}, {"x": 0.5}, {"x": 0.9}]
    ones = np.ones((3, 4), dtype=np.float32)
    curves = Curves(space, configs, ones, ones, ones, np.array([[1.0], [1.0], [3.0]], dtype=np.float32) * ones)

    class RefuseTrialOne:
        def on_report(self, trial, step, score, peers):
            if trial.number == 1:
                raise RuntimeError("scheduler bug")
            return th.Decision.CONTINUE

    sim = Simulated(curves)
    study = th.Study(space, searcher=Tabulated(curves), scheduler=RefuseTrialOne(), max_epochs=4)
    study.optimize(None, n_trials=3, executor=sim, timeout_per_trial=10, progress=False)
    done, refused, slow = study.trials
    assert done.status is th.Status.COMPLETED and list(done.reports) == [1, 2, 3, 4]
    assert refused.status is th.Status.FAILED
    assert refused.reason.startswith("the driver could not handle the report at step 1: RuntimeError: scheduler bug")
    assert slow.status is th.Status.FAILED and slow.reason == "timed out after 10 s" and list(slow.reports) == [1, 2, 3]
    assert sim.clock == pytest.approx(4.0 + 1.0 + 10.0) and sim.epochs == 4 + 1 + 3
