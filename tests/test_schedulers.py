"""Schedulers: the contract suite, the paper's bracket table, SHA's top-1/eta, pause/resume from checkpoints,
ASHA's promotions without waiting, median stopping, errors; the incremental index against the O(n) rules it
replaced (kept here as the oracle), decision for decision."""

from __future__ import annotations

import copy
import functools
import itertools
import pickle
import statistics
import zlib
from collections import Counter

import numpy as np
import pytest
import torch

import torchhpo as th
from torchhpo.history import History
from torchhpo.schedulers import ASHA, Hyperband, MedianStopping, SuccessiveHalving, make_scheduler
from torchhpo.schedulers.base import _ranked, _reached, _rung_index
from torchhpo.simulate import Curves, Simulated, Tabulated
from torchhpo.testing import check_scheduler

SPACE = th.Space({"x": th.Float(0.0, 1.0)})


@pytest.mark.parametrize("make", [
    lambda seed: SuccessiveHalving(1, 9),
    lambda seed: Hyperband(1, 9),
    lambda seed: ASHA(1, 9, seed=seed),
    lambda seed: ASHA(1, 9, brackets=3, seed=seed),
    lambda seed: MedianStopping(warmup_epochs=1, min_trials=3),
    lambda seed: th.Patience(2),
    lambda seed: th.Schedulers([th.Patience(2), ASHA(1, 9, seed=seed)]),
], ids=["sha", "hyperband", "asha", "async-hyperband", "median", "patience", "patience+asha"])
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
    (lambda: ASHA(0, 9), "ASHA: min_epochs must be a positive int, got 0"),
    (lambda: Hyperband(1, 9, eta=1), "eta must be an int >= 2, got 1"),
    (lambda: SuccessiveHalving(1, 9, n=2), r"n \(trials per cohort, at least eta\) must be an int >= 3, got 2"),
    (lambda: ASHA(1, 9, brackets=4), "brackets=4 must be an int in 1..3"),
    (lambda: MedianStopping(warmup_epochs=-1), "warmup_epochs must be a non-negative int, got -1"),
    (lambda: MedianStopping(min_trials=0), "min_trials must be a positive int, got 0"),
    (lambda: Hyperband(1, None), "max_epochs is needed; pass it, or give the Study"),
    (lambda: Hyperband(1, 9.0), "max_epochs must be a positive int, got 9.0"),
    (lambda: make_scheduler("bohb", max_epochs=9), "unknown; choose one of"),
    (lambda: th.Study(SPACE, scheduler="hyperband"), "needs max_epochs"),
])
def test_bad_arguments_say_how_to_fix_them(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_objects_without_on_report_are_refused():
    with pytest.raises(TypeError, match="scheduler must be a name, None, a list of them or have on_report"):
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


# --- the index: the same decisions as the O(n) rules it replaced ------------------------------------------------
class _OldSynchronous:
    """The rules of _Synchronous before the index, scanning every peer at each call (the oracle)."""

    def __init__(self, brackets, eta):
        self.brackets, self.eta = brackets, eta
        self._by_s = {b.s: b for b in brackets}
        self._closed = set()

    def rungs(self, record):
        return self._by_s[record.attrs["bracket"]].rungs

    def on_start(self, record, peers):
        counts = Counter((r.attrs["cohort"], r.attrs["bracket"]) for r in peers
                         if r.number != record.number and "cohort" in r.attrs)
        for cohort in itertools.count():
            for b in self.brackets:
                if (cohort, b.s) not in self._closed and counts[(cohort, b.s)] < b.n:
                    record.attrs.update(bracket=b.s, cohort=cohort)
                    return

    def _winners(self, record, k, peers):
        key = (record.attrs["cohort"], record.attrs["bracket"])
        bracket = self._by_s[key[1]]
        entrants = [r for r in peers if (r.attrs.get("cohort"), r.attrs.get("bracket")) == key]
        if len(entrants) < bracket.n and key not in self._closed:
            return None
        for step in bracket.rungs[: k + 1]:
            if any(step not in r.reports and not r.status.is_final for r in entrants):
                return None
            entrants = _ranked(entrants, step)[: max(1, len(entrants) // self.eta)]
        return {r.number for r in entrants}

    def on_report(self, trial, step, score, peers):
        k = _rung_index(self, trial, step, peers)
        if k is None:
            return th.Decision.CONTINUE
        winners = self._winners(trial, k, peers)
        if winners is None:
            return th.Decision.PAUSE
        return th.Decision.CONTINUE if trial.number in winners else th.Decision.STOP

    def promote(self, peers, drain=False):
        paused = [r for r in peers if r.status is th.Status.PAUSED and "bracket" in r.attrs]
        if drain:
            self._closed.update((r.attrs["cohort"], r.attrs["bracket"]) for r in paused)
        out = {}
        for r in paused:
            winners = self._winners(r, _reached(r, self.rungs(r)), peers)
            if winners is not None:
                out[r.number] = th.Decision.CONTINUE if r.number in winners else th.Decision.STOP
        return out


class _OldASHA:
    """The rules of ASHA before the index (the oracle)."""

    def __init__(self, brackets, eta, seed):
        self.brackets, self.eta, self.seed = brackets, eta, seed or 0

    def rungs(self, record):
        return self.brackets[record.attrs["bracket"]].rungs

    def on_start(self, record, peers):
        record.attrs["bracket"] = zlib.crc32(f"{self.seed}:{record.number}".encode()) % len(self.brackets)

    def _promotable(self, record, k, peers, least=0):
        step = self.rungs(record)[k]
        rung = _ranked([r for r in peers if r.attrs.get("bracket") == record.attrs["bracket"]], step)
        return record.number in {r.number for r in rung[: max(least, len(rung) // self.eta)]}

    def on_report(self, trial, step, score, peers):
        k = _rung_index(self, trial, step, peers)
        if k is None:
            return th.Decision.CONTINUE
        if k < trial.attrs.get("rung", 0) or self._promotable(trial, k, peers):
            trial.attrs["rung"] = max(trial.attrs.get("rung", 0), k + 1)
            return th.Decision.CONTINUE
        return th.Decision.PAUSE

    def promote(self, peers, drain=False):
        paused = [r for r in peers if r.status is th.Status.PAUSED and "bracket" in r.attrs]
        out = {}
        for r in sorted(paused, key=lambda r: (-_reached(r, self.rungs(r)), r.number)):
            k = _reached(r, self.rungs(r))
            if k < r.attrs.get("rung", 0) or self._promotable(r, k, peers, least=int(drain)):
                r.attrs["rung"] = k + 1
                out[r.number] = th.Decision.CONTINUE
            elif drain:
                out[r.number] = th.Decision.STOP
        return out


class _OldMedian:
    """The rule of MedianStopping before the index (the oracle)."""

    def __init__(self, warmup_epochs, min_trials):
        self.warmup_epochs, self.min_trials = warmup_epochs, min_trials

    def on_report(self, trial, step, score, peers):
        if step <= self.warmup_epochs:
            return th.Decision.CONTINUE
        others = [r.sign * r.reports[step] for r in peers
                  if r.number != trial.number and step in r.reports and r.status is not th.Status.FAILED]
        if len(others) < self.min_trials:
            return th.Decision.CONTINUE
        best = max(v for s, v in trial.scores.items() if s <= step)
        return th.Decision.STOP if best < statistics.median(others) else th.Decision.CONTINUE


def _pair(name):
    """A fresh (scheduler under test, oracle) pair."""
    if name == "median":
        return MedianStopping(warmup_epochs=1, min_trials=3), _OldMedian(1, 3)
    if name.startswith("asha"):
        new = ASHA(1, 9, brackets=int(name[-1]), seed=3)
        return new, _OldASHA(new.brackets, new.eta, 3)
    new = Hyperband(1, 9) if name == "hyperband" else SuccessiveHalving(1, 9)
    return new, _OldSynchronous(new.brackets, new.eta)


class _Twin:
    """Answers with the scheduler under test after asking the oracle the same question on the same records, and
    asserts that both give the same answer (a promote's decisions in the same order) and leave the same attrs."""

    def __init__(self, name, plain=False):
        self.new, self.old = _pair(name)
        self.plain, self.seen = plain, Counter()  # plain: the new one sees a plain list (its full rebuild)
        for hook in ("on_start", "promote", "rungs"):
            if hasattr(self.new, hook):
                setattr(self, hook, functools.partial(getattr(type(self), f"_{hook}"), self))

    def _both(self, hook, peers, call):
        """``call(scheduler, peers)`` on the oracle, then (on the same attrs) on the scheduler under test."""
        before = [dict(r.attrs) for r in peers]
        want = call(self.old, peers)
        after = [dict(r.attrs) for r in peers]
        for r, attrs in zip(peers, before, strict=True):
            r.attrs.clear()
            r.attrs.update(attrs)
        got = call(self.new, list(peers) if self.plain else peers)
        same = list(got.items()) == list(want.items()) if isinstance(want, dict) else got == want
        assert same, f"{hook}: got {got}, the O(n) rules give {want}"
        assert [r.attrs for r in peers] == after, f"{hook}: the attrs differ from the O(n) rules'"
        return got

    def _on_start(self, record, peers):
        return self._both(f"on_start({record.number})", peers, lambda s, p: s.on_start(record, p))

    def _rungs(self, record):
        return self.new.rungs(record)

    def _promote(self, peers, drain=False):
        out = self._both(f"promote(drain={drain})", peers, lambda s, p: s.promote(p, drain))
        self.seen.update(("promote", d) for d in out.values())
        return out

    def on_report(self, trial, step, score, peers):
        decision = self._both(f"on_report({trial.number}, {step})", peers,
                              lambda s, p: s.on_report(trial, step, score, p))
        self.seen[decision] += 1
        return decision


def _table(n, mode):
    """A tabulated problem: coarse (tied) curves whose early ranks mislead, and some runs that diverge."""
    configs = SPACE.sobol(n, seed=5)
    x = np.array([c["x"] for c in configs])[:, None]
    e = np.arange(1, 10)[None, :]
    loss = np.round((x - 0.3) ** 2 + 0.5 * (1.0 + np.sin(17.0 * x)) / (e + 1), 1)  # rounded: many ties
    loss[np.arange(n) % 13 == 4, (np.arange(n) % 9)[np.arange(n) % 13 == 4]] = np.nan  # some trials FAIL
    return Curves(SPACE, configs, loss, -loss, -loss, 0.5 + np.repeat(x, 9, axis=1))


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("slots", [1, 4])
@pytest.mark.parametrize("name", ["asha1", "asha3", "hyperband", "sha", "median"])
def test_indexed_schedulers_decide_as_the_full_scans(name, slots, mode):
    n = 150
    curves = _table(n, mode)
    twin = _Twin(name)
    study = th.Study(SPACE, mode=mode, searcher=Tabulated(curves), scheduler=twin, max_epochs=9)
    study.optimize(None, n_trials=n, executor=Simulated(curves, slots=slots,
                                                        metric="val_loss" if mode == "min" else "val_acc"),
                   progress=False)
    statuses = Counter(t.status for t in study.trials)
    assert statuses[th.Status.FAILED] > 0 and statuses[th.Status.PRUNED] > 20, statuses
    assert twin.seen[th.Decision.STOP if name == "median" else th.Decision.PAUSE] > 10, twin.seen
    if name != "median":
        assert twin.seen[("promote", th.Decision.CONTINUE)] > 0 and twin.seen[("promote", th.Decision.STOP)] > 0


@pytest.mark.parametrize("name", ["asha1", "asha3", "hyperband", "sha", "median"])
def test_indexed_schedulers_decide_as_the_full_scans_on_plain_lists_and_reopened_studies(name, tmp_path):
    n = 90
    curves = _table(n, "min")
    half = Simulated(curves, slots=3)
    study = th.Study(SPACE, mode="min", searcher=Tabulated(curves), scheduler=_Twin(name, plain=True),
                     max_epochs=9, storage=tmp_path / "s.db")
    study.optimize(None, n_trials=n // 2, executor=half, progress=False)
    half._saved.clear()  # the reopened study starts from scratch: no trial runs on
    again = th.Study.load(tmp_path / "s.db", searcher=Tabulated(curves), scheduler=_Twin(name), max_epochs=9)
    again.optimize(None, n_trials=n - n // 2, executor=Simulated(curves, slots=3), progress=False)
    assert len(again.trials) == n


@pytest.mark.parametrize("name", ["asha1", "asha3", "hyperband", "sha"])
def test_indexed_schedulers_decide_as_the_full_scans_with_data_fidelity(name):
    def train(config, trial):  # each rung's run overwrites its report epoch after epoch
        for epoch in trial.epochs():
            trial.report(round((config["x"] - 0.3) ** 2 / trial.fidelity + 0.3 / (epoch + 1), 2))
        return config["x"]

    twin = _Twin(name)
    study = th.Study(SPACE, mode="min", searcher="random", scheduler=twin, max_epochs=3, fidelity="data", seed=1)
    study.optimize(train, n_trials=60, progress=False)
    assert twin.seen[th.Decision.CONTINUE] > 0 and any(t.status is th.Status.PRUNED for t in study.trials)


def test_the_index_is_not_pickled_and_is_rebuilt():
    sched = ASHA(1, 9, seed=0)
    study = th.Study(SPACE, mode="min", scheduler=sched, max_epochs=9, seed=0)
    study.optimize(_linear([], checkpoint=False), n_trials=12, progress=False)
    clone = pickle.loads(pickle.dumps(sched))
    assert clone._rung == {} and clone._token is None
    assert clone.promote(study.trials) == sched.promote(study.trials)
    assert clone._rung == sched._rung


def _hand(twin, mode="min"):
    """Drive ``twin`` by hand over a History, as the study does: (new trial | report | resume) -> the decision."""
    h, sign = History(), 1 if mode == "max" else -1

    def start():
        h.append(th.TrialRecord(len(h), {"x": 0.5}, sign=sign))
        if hasattr(twin, "on_start"):
            twin.on_start(h[-1], h)
        return h[-1].number

    def report(number, step, value):
        r = h[number]
        r.status = th.Status.RUNNING
        r.reports[step] = value
        h.touch(number)
        decision = twin.on_report(r, step, sign * value, h)
        if decision is not th.Decision.CONTINUE:
            r.status = th.Status.PAUSED if decision is th.Decision.PAUSE else th.Status.PRUNED
            h.touch(number)
        return decision

    return h, start, report


def test_asha_resumes_a_trial_it_promoted_though_it_left_the_top_before_resuming():
    twin = _Twin("asha1")
    h, start, report = _hand(twin)
    for value in (0.1, 0.9, 0.8):
        report(start(), 1, value)
    assert twin.promote(h) == {0: th.Decision.CONTINUE}  # trial 0 is promoted, but no slot is free: still PAUSED
    for value in (0.05, 0.04, 0.03):  # three better trials push it out of the top third
        report(start(), 1, value)
    assert twin.promote(h)[0] is th.Decision.CONTINUE  # promoted once, it stays promoted
    h[1].status = th.Status.FAILED  # leaves the rung
    h.touch(1)
    report(start(), 1, 0.95)
    assert report(5, 3, 0.02) is th.Decision.PAUSE  # alone at rung 3: it waits
    assert twin.promote(h, drain=True)[5] is th.Decision.CONTINUE  # nothing else to run: the best of a rung goes on


def test_a_trial_started_again_keeps_its_own_cohort_slot():
    twin = _Twin("sha")
    h, start, _ = _hand(twin)
    for _ in range(10):
        start()
    assert [r.attrs["cohort"] for r in h] == [0] * 9 + [1]
    twin.on_start(h[3], h)  # counted without itself, cohort 0 has room for it
    assert h[3].attrs["cohort"] == 0
    del h[3].attrs["cohort"]  # a record whose slot is gone frees room: the next trial fills it
    h.touch(3)
    assert h[start()].attrs["cohort"] == 0


def test_median_stopping_sees_every_change_of_a_record():
    twin = _Twin("median")  # min_trials=3
    h, start, report = _hand(twin, mode="max")
    for i in range(8):  # at step 2: 0.02, 0.12, ... 0.72 (median 0.37); at step 3: 0.03 ... 0.73 (0.38)
        start()
        for step in (1, 2, 3):
            report(i, step, 0.1 * ((3 * i) % 8) + 0.01 * step)
    r = h[0]
    r.reports[2], r.reports[4] = 0.95, 0.2  # a report overwritten and one added, each logged: the median is 0.47
    h.touch(0)
    h.touch(0)
    report(start(), 1, 0.4)
    assert report(8, 2, 0.3) is th.Decision.STOP  # its best, 0.4, is under the new median
    r.reports[3] = 0.99  # overwritten alone: the median at step 3 is 0.48
    h.touch(0)
    h[8].status = th.Status.RUNNING
    assert report(8, 3, 0.3) is th.Decision.STOP
    r.reports[5] = 0.9
    r.reports[3] = 0.03  # out of order: the step added last is not the one changed last
    h.touch(0)
    h.touch(0)
    assert report(8, 3, 0.3) is th.Decision.CONTINUE
    for i in (0, 3):  # the two worst at step 3 leave every step: the median rises to 0.48
        h[i].status = th.Status.FAILED
        h.touch(i)
    assert report(8, 3, 0.3) is th.Decision.STOP


def test_median_stopping_indexes_a_long_curve_report_by_report():
    sched = MedianStopping(warmup_epochs=1, min_trials=5)
    study = th.Study(SPACE, mode="min", scheduler=sched)
    for _ in range(5):
        trial = study.ask()
        for step in (1, 2):
            trial.report(10.0 + step)
        study.tell(trial, 10.0)
    trial = study.ask()
    for step in range(1, 3001):
        trial.report(1.0 / step)
    assert len(sched._steps[2]) == 6 and len(sched._steps) == 2999
    assert sched._seen[5][0] == study.trials[5].reports


# --- patience and composition ---------------------------------------------------------------------------------
def _decide(scheduler, curve, mode="min"):
    """Feed ``curve`` to ``scheduler`` one report at a time; the step of its first non-CONTINUE answer."""
    sign = 1 if mode == "max" else -1
    record = th.TrialRecord(0, {"x": 0.5}, sign=sign)
    for step, value in enumerate(curve, 1):
        record.reports[step] = value
        decision = scheduler.on_report(record, step, sign * value, [record])
        if decision is not th.Decision.CONTINUE:
            return step, decision
    return None


@pytest.mark.parametrize("mode", ["min", "max"])
def test_patience_is_keras_early_stopping(mode):
    flip = (lambda c: c) if mode == "min" else (lambda c: [-v for v in c])
    curve = flip([1.0, 0.9, 0.95, 0.91, 0.92, 0.85, 0.86, 0.87, 0.88])
    assert _decide(th.Patience(3), curve, mode) == (5, th.Decision.COMPLETE)
    assert _decide(th.Patience(4), curve, mode) is None  # 0.85 at step 6 came in time
    # min_delta: an improvement must beat the best by more than it, and only then moves the best (Keras)
    small = flip([1.0, 0.95, 0.92, 0.91])  # 0.08 better in all: not by more than 0.1
    assert _decide(th.Patience(2, min_delta=0.1), small, mode) == (3, th.Decision.COMPLETE)
    assert _decide(th.Patience(2, min_delta=0.1), flip([0.0, -0.05, -0.12, -0.13, -0.14]), mode) == \
        (5, th.Decision.COMPLETE)
    # warm-up: the first reports are not looked at
    assert _decide(th.Patience(2, warmup_epochs=3), flip([0.5, 0.6, 0.7, 0.4, 0.45, 0.46]), mode) == \
        (6, th.Decision.COMPLETE)
    for bad in ({"patience": 0}, {"patience": 1.5}, {"min_delta": -1.0}, {"warmup_epochs": -1}):
        with pytest.raises(ValueError):
            th.Patience(**bad)


def test_patience_alone_ends_a_plain_training_run_at_its_plateau():
    def train(config, trial):
        for epoch in trial.epochs():
            trial.report(max(0.1, 1.0 - 0.2 * epoch))  # improves for 5 epochs, then flat
        return 0.1

    study = th.Study(SPACE, scheduler="patience", max_epochs=50, seed=0)
    study.optimize(train, n_trials=2, progress=False)
    assert [t.status for t in study.trials] == [th.Status.COMPLETED] * 2
    assert [max(t.reports) for t in study.trials] == [11, 11]  # 0.1 first at step 6, then 5 reports not better
    assert study.best.value == 0.1


@pytest.mark.parametrize("table", ["digits_cnn", "digits_mlp"])
def test_patience_saves_epochs_on_the_shipped_tables_without_losing_the_best(table):
    """40 random configs of a table trained to the end or to their plateau (patience 8): fewer epochs, and the
    config the study picks as best is as good (its true 27-epoch loss) in the median over seeds. The tables'
    curves are noisy and still improving at epoch 27, so the saving is modest (docs/pruning.md)."""
    curves = Curves.load(table)
    ratios, diffs = [], []
    for seed in range(10):
        out = []
        for scheduler in (None, th.Patience(8)):
            sim = Simulated(curves)
            study = th.Study(curves.space, searcher=Tabulated(curves, th.RandomSearch(seed=seed)), scheduler=scheduler,
                             max_epochs=curves.epochs, seed=seed)
            study.optimize(None, n_trials=40, executor=sim, progress=False, fail_fast=None)
            out.append((sim.epochs, float(curves.val_loss[curves.row(study.best.config), -1])))
        ratios.append(out[1][0] / out[0][0])
        diffs.append(out[1][1] - out[0][1])
    assert np.mean(ratios) < 0.97, ratios
    assert np.median(diffs) <= 0.0, diffs


def test_schedulers_combine_stop_complete_and_pause():
    class Says:
        def __init__(self, decision):
            self.decision = decision

        def on_report(self, trial, step, score, peers):
            return self.decision

    record = th.TrialRecord(0, {"x": 0.5})
    d = th.Decision
    for answers, expected in (((d.CONTINUE, d.CONTINUE), d.CONTINUE), ((d.PAUSE, d.CONTINUE), d.PAUSE),
                              ((d.COMPLETE, d.PAUSE), d.COMPLETE), ((d.COMPLETE, d.STOP), d.STOP)):
        assert th.Schedulers([Says(a) for a in answers]).on_report(record, 1, 0.0, [record]) is expected
    with pytest.raises(ValueError, match="at most one rung scheduler"):
        th.Schedulers([ASHA(1, 9), Hyperband(1, 9)])
    with pytest.raises(TypeError, match="give a list of schedulers, got generator"):
        th.Schedulers(s for s in [th.Patience(2), ASHA(1, 9)])
    with pytest.raises(TypeError, match="non-empty list"):
        th.Schedulers([])


def test_patience_with_asha_by_name_in_a_study():
    study = th.Study(SPACE, scheduler=["patience", "asha"], max_epochs=27, seed=0)
    assert [type(s).__name__ for s in study.scheduler.schedulers] == ["Patience", "ASHA"]
    assert study.scheduler.rungs(th.TrialRecord(0, {}, attrs={"bracket": 0})) == (1, 3, 9, 27)

    def train(config, trial):
        state = trial.load() or {"epochs": 0}
        for epoch in trial.epochs():
            trial.save({"epochs": epoch + 1})
            trial.report((config["x"] - 0.3) ** 2 + max(0.05, 1.0 / (epoch + 1)))  # flat after 20 epochs
        return (config["x"] - 0.3) ** 2 + 0.05 + 0 * state["epochs"]

    study.optimize(train, n_trials=30, progress=False)
    statuses = Counter(t.status for t in study.trials)
    assert statuses[th.Status.PRUNED] and statuses[th.Status.COMPLETED] and not statuses[th.Status.PAUSED]
    plateaued = [t for t in study.trials if t.status is th.Status.COMPLETED and max(t.reports) < 27]
    assert plateaued, "patience ended some trials at their plateau before the last rung"


def test_a_composite_scheduler_pickles_and_copies_as_its_class():
    """A composite picks its class from its members in ``__new__``; pickling and copying (which call ``__new__``
    without the members) keep that class and the members."""
    for members in ([th.Patience(3), ASHA(1, 9, seed=0)], [th.Patience(3), Hyperband(1, 9)],
                    [th.Patience(3), th.MedianStopping()]):
        original = th.Schedulers(members)
        for clone in (pickle.loads(pickle.dumps(original)), copy.deepcopy(original), copy.copy(original)):
            assert type(clone) is type(original)
            assert [type(s) for s in clone.schedulers] == [type(s) for s in members]
