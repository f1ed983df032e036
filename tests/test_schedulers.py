"""Schedulers: the contract suite, the paper's bracket table, SHA's top-1/eta, pause/resume from checkpoints,
ASHA's promotions without waiting, median stopping, errors."""

from __future__ import annotations

import pytest
import torch

import torchhpo as th
from torchhpo.schedulers import ASHA, Hyperband, MedianStopping, SuccessiveHalving, make_scheduler
from torchhpo.testing import check_scheduler

SPACE = th.Space({"x": th.Float(0.0, 1.0)})


@pytest.mark.parametrize("make", [
    lambda seed: SuccessiveHalving(1, 9),
    lambda seed: Hyperband(1, 9),
    lambda seed: ASHA(1, 9, seed=seed),
    lambda seed: ASHA(1, 9, brackets=3, seed=seed),
    lambda seed: MedianStopping(warmup_epochs=1, min_trials=3),
], ids=["sha", "hyperband", "asha", "async-hyperband", "median"])
def test_contract(make):
    check_scheduler(make)


def test_hyperband_brackets_match_the_paper():
    # Li et al. (JMLR 2018), Table 1: R = 81, eta = 3
    brackets = Hyperband(1, 81, eta=3).brackets
    assert [b.s for b in brackets] == [4, 3, 2, 1, 0]
    assert [b.n for b in brackets] == [81, 34, 15, 8, 5]
    assert [b.rungs[0] for b in brackets] == [1, 3, 9, 27, 81]
    assert all(b.rungs[-1] == 81 for b in brackets)


def _run(scheduler, xs, fn, max_epochs=9):
    """Run one trial per ``x`` in ``xs``, in that order."""
    study = th.Study(SPACE, mode="min", scheduler=scheduler, max_epochs=max_epochs)
    for x in xs:
        study.enqueue({"x": x})
    return study.optimize(fn, n_trials=len(xs), progress=False)


def _linear(ran: list, checkpoint: bool = True):
    """A real training loop (a linear model fitted by SGD) that logs which epochs ran, with optional checkpoints."""
    def train(config, trial):
        model = torch.nn.Linear(1, 1)
        torch.manual_seed(trial.number)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        saved = trial.load() if checkpoint else None
        if saved is not None:
            model.load_state_dict(saved)
        X = torch.linspace(-1, 1, 16)[:, None]
        loss = None
        for epoch in trial.epochs():
            ran.append((trial.number, epoch))
            opt.zero_grad()
            loss = ((model(X) - config["x"] * X) ** 2).mean() + config["x"]  # larger x: worse
            loss.backward()
            opt.step()
            if checkpoint:
                trial.save(model.state_dict())
            trial.report(loss.item())
        return loss.item()
    return train


def test_sha_keeps_exactly_the_top_third():
    xs = [0.9, 0.1, 0.5, 0.7, 0.3, 0.8, 0.2, 0.6, 0.4]
    ran: list = []
    trials = _run(SuccessiveHalving(1, 9), xs, _linear(ran)).trials
    first = sorted(trials, key=lambda t: t.reports[1])[:3]
    assert {t.number for t in trials if 3 in t.reports} == {t.number for t in first}
    second = min(first, key=lambda t: t.reports[3])
    assert [t.number for t in trials if t.status is th.Status.COMPLETED] == [second.number]
    assert sum(t.status is th.Status.PRUNED for t in trials) == 8


def test_pause_resumes_from_the_checkpoint_and_counts_restarts_without_one():
    for checkpoint in (True, False):
        ran: list = []
        # trial 1 wins rung 1 after waiting for trial 2 (PAUSED, then resumed)
        study = _run(SuccessiveHalving(1, 3), [0.5, 0.1, 0.9], _linear(ran, checkpoint), max_epochs=3)
        winner = [e for n, e in ran if n == 1]
        assert study.trials[1].status is th.Status.COMPLETED
        assert winner == ([0, 1, 2] if checkpoint else [0, 0, 1, 2])  # without a checkpoint epoch 0 runs again
        assert [t.status for t in study.trials] == [th.Status.PRUNED, th.Status.COMPLETED, th.Status.PRUNED]


def test_paused_trials_survive_a_crash_and_resume_after_load(tmp_path):
    path = tmp_path / "s.db"
    ran: list = []
    train = _linear(ran)

    def crash_on_third(config, trial):
        if trial.number == 2:
            raise KeyboardInterrupt
        return train(config, trial)

    study = th.Study(SPACE, mode="min", scheduler=SuccessiveHalving(1, 3), storage=path, max_epochs=3)
    for x in (0.5, 0.1, 0.9):
        study.enqueue({"x": x})
    with pytest.raises(KeyboardInterrupt):
        study.optimize(crash_on_third, n_trials=3, progress=False)
    again = th.Study.load(path, scheduler=SuccessiveHalving(1, 3), max_epochs=3)
    assert [t.status for t in again.trials] == [th.Status.PAUSED, th.Status.PAUSED, th.Status.FAILED]
    again.optimize(train, n_trials=0, progress=False)  # no new trial: settle the paused ones
    assert [t.status for t in again.trials] == [th.Status.PRUNED, th.Status.COMPLETED, th.Status.FAILED]
    assert [e for n, e in ran if n == 1] == [0, 1, 2]  # resumed after epoch 0, from the checkpoint


@pytest.mark.parametrize("keep", [1, 2, 0, None])
def test_ended_trials_keep_only_the_best_checkpoints(tmp_path, keep):
    xs = [(7 * i % 17) / 17 for i in range(17)]  # Hyperband(1, 9)'s three brackets: 9 + 5 + 3 trials
    study = th.Study(SPACE, mode="min", scheduler=Hyperband(1, 9), storage=tmp_path / "s.db", max_epochs=9,
                     keep_checkpoints=keep)
    for x in xs:
        study.enqueue({"x": x})
    study.optimize(_linear([]), n_trials=len(xs), progress=False)
    left = {int(p.stem.split("-")[1]) for p in study.checkpoint_dir.glob("trial-*.pt")}
    done = sorted((t for t in study.trials if t.status is th.Status.COMPLETED), key=lambda t: t.value)
    assert len(done) >= 2 and any(t.status is th.Status.PRUNED for t in study.trials)
    if keep is None:
        assert left == {t.number for t in study.trials}
    else:
        assert left == {t.number for t in done[:keep]}
    best = study.checkpoint(study.best)
    assert (best is not None) == (keep != 0)
    if best is not None:  # the trained weights of the best trial, as it saved them after its last epoch
        assert set(best) == {"weight", "bias"}
    assert study.checkpoint(len(xs) + 5) is None


def test_reopening_a_study_drops_the_checkpoints_it_does_not_keep(tmp_path):
    path = tmp_path / "s.db"
    study = th.Study(SPACE, mode="min", scheduler=SuccessiveHalving(1, 3), storage=path, max_epochs=3,
                     keep_checkpoints=None)
    for x in (0.5, 0.1, 0.9):
        study.enqueue({"x": x})
    study.optimize(_linear([]), n_trials=3, progress=False)
    assert len(list(study.checkpoint_dir.glob("trial-*.pt"))) == 3
    (study.checkpoint_dir / "trial-notes.pt").write_text("not a trial's")  # a stranger's file: left alone
    again = th.Study.load(path, scheduler=SuccessiveHalving(1, 3), max_epochs=3, keep_checkpoints=1)
    assert len(list(again.checkpoint_dir.glob("trial-*.pt"))) == 4, "loading a study deletes nothing"
    again.optimize(_linear([]), n_trials=0, progress=False)  # a driver at work drops what it does not keep
    assert sorted(p.name for p in again.checkpoint_dir.glob("trial-*.pt")) == sorted(
        [f"trial-{again.best.number}.pt", "trial-notes.pt"])


def test_keep_checkpoints_must_be_a_count():
    for bad in (-1, 1.5, True, "all"):
        with pytest.raises(ValueError, match="keep_checkpoints"):
            th.Study(SPACE, keep_checkpoints=bad)


def test_asha_promotes_without_waiting():
    xs = [0.9, 0.8, 0.1, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    runs = {}
    for name, sched in (("asha", ASHA(1, 9)), ("sha", SuccessiveHalving(1, 9))):
        ran: list = []
        _run(sched, xs, _linear(ran))
        runs[name] = ran
    # trial 2 is the best of the first three at rung 1: ASHA lets it go on at once, SHA waits for all nine
    asha, sha = runs["asha"], runs["sha"]
    assert asha.index((2, 1)) < asha.index((3, 0))
    assert sha.index((2, 1)) > sha.index((8, 0))


def test_median_stops_a_clearly_bad_curve():
    xs = [0.1, 0.2, 0.15, 0.12, 0.95]
    study = _run(MedianStopping(warmup_epochs=2, min_trials=3), xs, _linear([]))
    assert [t.status for t in study.trials[:4]] == [th.Status.COMPLETED] * 4
    bad = study.trials[4]
    assert bad.status is th.Status.PRUNED and max(bad.reports) == 3  # stopped right after the warm-up


def test_scheduler_names_resolve_with_the_study_budget():
    study = th.Study(SPACE, scheduler="hyperband", max_epochs=27, seed=0)
    assert isinstance(study.scheduler, Hyperband) and study.scheduler.brackets[0].rungs == (1, 3, 9, 27)
    assert isinstance(make_scheduler("asha", seed=1, max_epochs=9, brackets=2), ASHA)
    assert isinstance(make_scheduler("median"), MedianStopping)
    assert isinstance(make_scheduler("sha", max_epochs=9, min_epochs=3), SuccessiveHalving)


@pytest.mark.parametrize("make, match", [
    (lambda: SuccessiveHalving(9, 9), "min_epochs < max_epochs"),
    (lambda: Hyperband(10, 9), "min_epochs < max_epochs"),
    (lambda: ASHA(0, 9), "min_epochs < max_epochs"),
    (lambda: Hyperband(1, 9, eta=1), "eta=1 must be >= 2"),
    (lambda: SuccessiveHalving(1, 9, n=2), "n=2 must be an int >= eta"),
    (lambda: ASHA(1, 9, brackets=4), "brackets=4 must be an int in 1..3"),
    (lambda: MedianStopping(warmup_epochs=-1), "warmup_epochs=-1"),
    (lambda: MedianStopping(min_trials=0), "min_trials=0"),
    (lambda: make_scheduler("bohb", max_epochs=9), "unknown; choose one of"),
    (lambda: th.Study(SPACE, scheduler="hyperband"), "needs max_epochs"),
])
def test_bad_arguments_say_how_to_fix_them(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_non_int_budgets_and_objects_are_refused():
    with pytest.raises(TypeError, match="max_epochs must be an int"):
        Hyperband(1, None)
    with pytest.raises(TypeError, match="scheduler must be a name, None or have on_report"):
        th.Study(SPACE, scheduler=object())


def test_data_fidelity_trains_each_rung_on_a_larger_fraction():
    ran: list = []

    def train(config, trial):
        saved = trial.load() or 0
        for epoch in trial.epochs():
            ran.append((trial.number, trial.fidelity, epoch))
            trial.save(saved + 1)
            trial.report(config["x"] / trial.fidelity)
        return config["x"]

    study = th.Study(SPACE, mode="min", scheduler="sha", max_epochs=3, fidelity="data")
    for x in (0.5, 0.1, 0.9):
        study.enqueue({"x": x})
    study.optimize(train, n_trials=3, progress=False)
    assert [t.status for t in study.trials] == [th.Status.PRUNED, th.Status.COMPLETED, th.Status.PRUNED]
    assert study.trials[1].reports == {1: 0.1 * 3, 3: 0.1}  # one report per rung: 1/3 of the data, then all
    winner = [(f, e) for n, f, e in ran if n == 1]
    assert winner == [(1 / 3, 0), (1 / 3, 1), (1 / 3, 2), (1.0, 0), (1.0, 1), (1.0, 2)]  # restarts on more data
    with pytest.raises(ValueError, match="needs a rung scheduler"):
        th.Study(SPACE, scheduler="median", fidelity="data")
    with pytest.raises(ValueError, match="fidelity must be 'epochs' or 'data'"):
        th.Study(SPACE, fidelity="subset")


def test_a_scheduler_may_choose_the_budget_of_a_new_trial():
    class Short:
        def on_start(self, record, peers):
            return 2 if record.number % 2 else None

        def on_report(self, trial, step, score, peers):
            return th.Decision.CONTINUE

    study = _run(Short(), [0.1, 0.2, 0.3], _linear([]), max_epochs=4)
    assert [max(t.reports) for t in study.trials] == [4, 2, 4]
    assert study.trials[1].attrs["max_epochs"] == 2
