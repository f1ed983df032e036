"""Contract suites every implementation passes: built-in searchers, storages, executors, and users' plugins alike.

Call them from a test::

    from torchhpo.testing import check_searcher
    def test_my_searcher():
        check_searcher(lambda seed: MySearcher(seed=seed))
"""

from __future__ import annotations

import json
import math
import pickle
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from torchhpo.executors import Executor, Outcome
from torchhpo.schedulers import BudgetScheduler, RungScheduler, Scheduler
from torchhpo.searchers import Searcher
from torchhpo.space import Choice, Float, Int, Space
from torchhpo.storage import Storage
from torchhpo.trial import Decision, Status, Trial, TrialRecord

__all__ = ["CONTRACT_SPACES", "check_executor", "check_scheduler", "check_searcher", "check_storage"]

CONTRACT_SPACES = {
    "continuous": Space({"x": Float(-5.0, 10.0), "y": Float(1e-4, 1.0, log=True)}),
    "mixed": Space({"lr": Float(1e-5, 1e-1, log=True), "layers": Int(1, 4), "width": Int(8, 512, log=True),
                    "act": Choice(["relu", "tanh", "gelu"]), "drop": Float(0.0, 0.5)}),
}


def _history(space: Space, n: int, running: int = 0) -> list[TrialRecord]:
    """``n`` finished trials with a smooth score, then ``running`` trials still RUNNING (pending points)."""
    records = []
    for i, config in enumerate(space.sobol(n + running, seed=123)):
        x = space.encode([config])[0]
        done = i < n
        records.append(TrialRecord(i, config, Status.COMPLETED if done else Status.RUNNING,
                                   value=-float(((x - 0.3) ** 2).sum()) if done else None, started=time.time()))
    return records


def check_searcher(make: Callable[[int], Searcher], *, spaces: dict[str, Space] | None = None,
                   n_history: int = 12, batch: int = 3) -> None:
    """Assert the searcher contract on each space.

    ``make(seed)`` builds a fresh searcher. Checked: valid configs for an empty and a full history; exactly
    ``n`` configs for a batch; the same seed and history give the same configs; a batch never repeats itself
    or a pending (RUNNING) config; the searcher pickles; ``decode(encode(c)) == c`` for what it proposes; it
    reads scores, not values: the history of a study that minimizes ``-f`` gives the configs of one that
    maximizes ``f``.
    """
    for name, space in (spaces or CONTRACT_SPACES).items():
        where = f"{type(make(0)).__name__} on the {name} space"
        for history in ([], _history(space, n_history, running=2)):
            configs = make(0).ask(space, history, batch)
            assert len(configs) == batch, f"{where}: asked {batch}, got {len(configs)}"
            for c in configs:
                assert space.validate(c) == c, f"{where}: invalid config {c}"
                assert space.decode(space.encode([c]))[0] == c, f"{where}: decode(encode(c)) != c for {c}"
            again = make(0).ask(space, history, batch)
            assert _keys(again) == _keys(configs), f"{where}: same seed and history gave other configs"
            assert len(set(_keys(configs))) == batch, f"{where}: a batch repeats a config: {configs}"
            pending = {k for k in _keys([t.config for t in history if t.status is Status.RUNNING])}
            assert not pending & set(_keys(configs)), f"{where}: proposed a config that is still running"
            minimized = [_minimized(t) for t in history]
            assert _keys(make(0).ask(space, minimized, batch)) == _keys(configs), \
                f"{where}: minimizing -f proposed otherwise than maximizing f (it reads values, not scores)"
        clone = pickle.loads(pickle.dumps(make(0)))
        assert _keys(clone.ask(space, [], 2)) == _keys(make(0).ask(space, [], 2)), f"{where}: pickling changed it"


def _minimized(record: TrialRecord) -> TrialRecord:
    """``record`` as a study that minimizes would hold it: the same scores, the values negated."""
    out = record.copy()
    out.sign, out.value = -1, None if record.value is None else -record.value
    out.reports = {s: -v for s, v in record.reports.items()}
    return out


def _keys(configs: list[dict]) -> list[str]:
    return [json.dumps(c, sort_keys=True) for c in configs]


def check_storage(make: Callable[[], Storage], reopen: Callable[[], Storage] | None = None) -> None:
    """Assert the storage contract: trials, reports and the queue come back as written, in order, numbered by the
    storage; settings round-trip. With ``reopen`` (a second handle on the same data, as a second driver has):
    opening writes nothing (RUNNING trials stay RUNNING); each handle sees what the other wrote (``changes``);
    numbers never collide; only one handle claims a PAUSED trial; ``fail_stale`` fails the other handle's
    RUNNING trials once their heartbeat is older than its argument; a different space is refused."""
    space = CONTRACT_SPACES["mixed"]
    store = make()
    assert store.open("s", space, "min") == [], "a new study has no trials"
    configs = space.sobol(4, seed=0)
    numbers = [store.create_trial(TrialRecord(-1, c, attrs={"source": "test"})) for c in configs[:3]]
    assert numbers == [0, 1, 2], f"create_trial must number trials 0, 1, 2, ...; got {numbers}"
    store.add_report(0, 1, 0.5)
    store.add_report(0, 2, 0.25)
    done = TrialRecord(0, configs[0], Status.COMPLETED, 0.25, {}, None, 1.0, 2.0, {"source": "test", "k": 1})
    store.write(done)
    store.write(TrialRecord(1, configs[1], Status.FAILED, None, {}, "boom", 1.0, 2.0, {}))
    store.enqueue(configs[2])
    store.save_settings({"searcher": None, "max_epochs": 9})
    assert store.settings() == {"searcher": None, "max_epochs": 9}
    got = store.trials()
    assert [t.number for t in got] == [0, 1, 2]
    assert got[0].config == configs[0] and got[0].value == 0.25 and got[0].reports == {1: 0.5, 2: 0.25}
    assert got[0].status is Status.COMPLETED and got[0].attrs == {"source": "test", "k": 1}
    assert got[1].status is Status.FAILED and got[1].reason == "boom"
    assert got[2].status is Status.RUNNING
    assert store.changes() == ([], []), "a handle's own writes are not changes to it"
    if reopen is None:
        assert store.dequeue() == configs[2] and store.dequeue() is None
        return
    other = reopen()
    back = other.open("s", space, "min")
    assert [(t.number, t.config, t.status) for t in back] == [(t.number, t.config, t.status) for t in got], \
        "opening must not change any trial"
    assert other.settings() == {"searcher": None, "max_epochs": 9}
    assert other.create_trial(TrialRecord(-1, configs[3])) == 3, "a second handle numbers after the first's trials"
    other.add_report(3, 1, 7.0)
    records, reports = store.changes()
    assert [r.number for r in records] == [3] and reports == [(3, 1, 7.0)], f"changes: {records}, {reports}"
    store.write(TrialRecord(2, configs[2], Status.PAUSED, None, {}, None, 1.0, None, {}))
    assert [r.status for r in other.changes()[0]] == [Status.PAUSED]
    assert other.claim(2) and not store.claim(2), "exactly one handle may claim a paused trial"
    assert other.fail_stale(3600.0) == {}, "a live driver's trials are not stale"
    time.sleep(0.01)
    stale = list(store.fail_stale(0.0))
    assert stale == [2, 3], f"fail_stale gave {stale}, not the other handle's RUNNING trials [2, 3] (heartbeat old)"
    assert [t.status for t in other.trials()[2:]] == [Status.FAILED, Status.FAILED]
    assert other.dequeue() == configs[2] and other.dequeue() is None and store.dequeue() is None
    try:
        reopen().open("s", CONTRACT_SPACES["continuous"], "min")
    except ValueError as e:
        assert "created with" in str(e)
    else:
        raise AssertionError("re-opening with another space must be refused")


def _curve(config: dict, step: int) -> float:
    """A learning curve whose early ranks differ from its late ones: loss of config ``x`` after ``step`` epochs."""
    x = config["x"]
    return (x - 0.3) ** 2 + 0.5 * (1.0 + math.sin(17.0 * x)) / (step + 1)


def _train(sign: float) -> Callable[[dict, Trial], float]:
    """The training function of ``check_scheduler``: ``_curve`` (a loss, ``sign`` 1) or ``-_curve`` (a score)."""
    def train(config: dict, trial: Trial) -> float:
        state = trial.load() or {"epochs": 0}
        for epoch in trial.epochs():
            state = {"epochs": epoch + 1}
            trial.save(state)
            trial.report(sign * _curve(config, epoch + 1))
        return sign * _curve(config, state["epochs"])
    return train


class _Logged:
    """Forwards to a ``Scheduler``, checks what the study hands its ``on_report`` and logs each decision."""

    def __init__(self, inner: Scheduler, max_epochs: int) -> None:
        self.inner: Any = inner  # a Scheduler; a BudgetScheduler or RungScheduler in the subclasses
        self.max_epochs = max_epochs
        self.log: list[Any] = []
        self.where = type(inner).__name__

    def on_report(self, trial: TrialRecord, step: int, score: float, peers: Any) -> Decision:
        assert trial.reports.get(step) is not None and score == trial.score_at(step), \
            f"{self.where}: on_report got score {score} for a report the record does not hold as that score"
        assert peers[trial.number] is trial, f"{self.where}: on_report's peers do not hold the trial at its number"
        decision = self.inner.on_report(trial, step, score, peers)
        assert isinstance(decision, Decision), f"{self.where}: on_report returned {decision!r}, not a Decision"
        assert decision is not Decision.PAUSE or isinstance(self, _LoggedRungs), \
            f"{self.where}: only a RungScheduler (on_start, rungs, promote) may PAUSE a trial"
        self.log.append((trial.number, step, decision))
        return decision


class _LoggedBudgets(_Logged):
    """``_Logged`` for a ``BudgetScheduler``: also checks and logs ``on_start``."""

    def on_start(self, record: TrialRecord, peers: Any) -> int | None:
        budget = self.inner.on_start(record, peers)
        assert budget is None or (type(budget) is int and 1 <= budget <= self.max_epochs), \
            f"{self.where}: on_start returned {budget!r}, not None or an epoch budget in 1..{self.max_epochs}"
        self.log.append((record.number, "start", budget))
        return budget


class _LoggedRungs(_LoggedBudgets):
    """``_Logged`` for a ``RungScheduler``: also checks ``rungs`` and checks and logs ``promote``."""

    def rungs(self, record: TrialRecord) -> tuple[int, ...]:
        rungs = self.inner.rungs(record)
        assert list(rungs) == sorted(set(rungs)) and all(type(r) is int and r >= 1 for r in rungs), \
            f"{self.where}: rungs({record.number}) = {rungs} is not an ascending tuple of steps"
        return rungs

    def promote(self, peers: Any, drain: bool = False) -> dict[int, Decision]:
        decisions = self.inner.promote(peers, drain)
        for number, decision in decisions.items():
            assert peers[number].status is Status.PAUSED, f"{self.where}: promote decided on trial {number}, " \
                                                          f"which is {peers[number].status.value}, not PAUSED"
            assert decision in (Decision.CONTINUE, Decision.STOP), f"{self.where}: promote gave {decision}"
        self.log.append(("promote", drain, sorted((n, d.value) for n, d in decisions.items())))
        return decisions


def _run(make: Callable[[int], Any], seed: int, executor: Any, n_trials: int, searcher: Any = None,
         mode: str = "min") -> tuple[Any, _Logged]:
    from torchhpo.study import Study

    inner = make(seed)
    assert isinstance(inner, Scheduler), f"{type(inner).__name__} lacks on_report(trial, step, score, peers)"
    sched = (_LoggedRungs if isinstance(inner, RungScheduler) else _LoggedBudgets if isinstance(inner, BudgetScheduler)
             else _Logged)(inner, 9)
    study = Study(Space({"x": Float(0.0, 1.0)}), mode=mode, searcher=searcher, scheduler=sched, seed=seed,
                  max_epochs=9)
    study.optimize(_train(1.0 if mode == "min" else -1.0), n_trials=n_trials, executor=executor, progress=False)
    return study, sched


def _check_run(study: Any, sched: _Logged, where: str) -> None:
    trials = study.trials
    left = [(t.number, t.status.value) for t in trials if not t.status.is_final]
    assert not left, f"{where}: trials left unfinished after optimize: {left}"
    rungs = sched.rungs if isinstance(sched, _LoggedRungs) else None
    for number, step, decision in sched.log:
        if number == "promote" or step == "start" or decision in (Decision.CONTINUE, Decision.COMPLETE):
            continue  # COMPLETE (a plateau) may come at any step
        if rungs is not None:
            assert step in rungs(trials[number])[:-1], f"{where}: {decision} for trial {number} at step {step}, " \
                                                       f"not a rung of {rungs(trials[number])}"
        if decision is Decision.STOP:
            better = [t for t in trials if step in t.reports and t.score_at(step) > trials[number].score_at(step)]
            assert better, f"{where}: trial {number} stopped at step {step} though best there"
    for t in trials:
        budget = t.attrs.get("max_epochs", 9)
        assert max(t.reports, default=0) <= budget, f"{where}: trial {t.number} ran past its budget {budget}"
    assert any(t.status is Status.COMPLETED for t in trials), f"{where}: no trial completed"


def check_scheduler(make: Callable[[int], Any], *, n_trials: int = 20) -> None:
    """Assert the scheduler contract. ``make(seed)`` builds a fresh scheduler for ``max_epochs=9``.

    On a learning-curve problem whose early ranks mislead, run by a Study with the Inline executor and with the
    simulated clock (3 workers), in both modes: every hook the study calls gets what the contract says
    (``on_report``: the report already in the record, ``score == trial.score_at(step)``) and answers in kind
    (a ``Decision``; PAUSE only from a ``RungScheduler``, whose ``on_start`` returns ``None`` or a budget that
    the trial keeps to, whose ``rungs`` ascend and whose ``promote`` decides only PAUSED trials); every trial
    ends COMPLETED or PRUNED (no PAUSED trial left); decisions other than CONTINUE come only at rungs; a trial is
    never stopped at a step where it is the best; the same seed and order give the same decisions; maximizing
    ``-loss`` decides exactly as minimizing ``loss``; and the simulated clock with one worker decides exactly as
    the real Inline run of the same configs.
    """
    from torchhpo.executors import Inline
    from torchhpo.simulate import Curves, Simulated, Tabulated

    name = type(make(0)).__name__
    space = Space({"x": Float(0.0, 1.0)})
    configs = space.sobol(n_trials, seed=7)
    E = 9
    loss, seconds = (np.array([[f(c, e) for e in range(1, E + 1)] for c in configs], dtype=np.float32)
                     for f in (_curve, _seconds))
    curves = Curves(space, configs, loss, loss, loss, seconds)
    runs = {}
    for label, executor in (("inline", lambda: Inline("cpu")), ("simulated x1", lambda: Simulated(curves)),
                            ("simulated x3", lambda: Simulated(curves, slots=3))):
        first = _run(make, 0, executor(), n_trials, Tabulated(curves))
        again = _run(make, 0, executor(), n_trials, Tabulated(curves))
        where = f"{name} ({label})"
        _check_run(*first, where)
        assert first[1].log == again[1].log, f"{where}: same seed and order gave other decisions"
        runs[label] = first
    a, b = runs["inline"], runs["simulated x1"]
    assert [(t.status, _f32(t.reports)) for t in a[0].trials] == [(t.status, _f32(t.reports)) for t in b[0].trials], \
        f"{name}: the simulated clock decided otherwise than the real run of the same configs"
    maximized = _run(make, 0, Inline("cpu"), n_trials, Tabulated(curves), mode="max")
    _check_run(*maximized, f"{name} (inline, mode='max')")
    assert maximized[1].log == a[1].log, f"{name}: maximizing -loss decided otherwise than minimizing the loss"


def _seconds(config: dict, step: int) -> float:
    return 0.5 + config["x"]  # slower configs take longer, so parallel workers interleave


def _f32(reports: dict[int, float]) -> dict[int, float]:
    return {s: float(np.float32(v)) for s, v in reports.items()}
def _contract_train(config: dict, trial: Trial) -> float:
    """The training function of ``check_executor``: builds a tensor on ``trial.device``, reports 3 epochs."""
    x = torch.tensor(config["x"], device=trial.device)  # fails if the executor set a device the worker lacks
    if config["kind"] == "raise":
        raise RuntimeError("contract: the training function raised")
    if config["kind"] == "nan":
        return float("nan")
    if config["kind"] == "slow":
        time.sleep(60.0)
    for epoch in trial.epochs(3):
        trial.report(float(x) + epoch)
    return float(x * 2)


def check_executor(make: Callable[[], Executor], *, n: int = 7, limit: float = 120.0) -> None:
    """Assert the executor contract with the real ``make()`` executor (closed at the end).

    Checked: it is an ``Executor`` (``slots`` a positive int, ``concurrent`` a bool, ``submit``, ``wait``,
    ``close``); ``wait`` with nothing running returns ``[]``; every submitted trial ends with exactly one
    ``Outcome``; each report reaches the trial's own ``reporter`` (in the driver) in order, and a STOP decision
    reaches the worker (the trial ends PRUNED with its last reported value and reports no further); an exception
    or a NaN becomes FAILED with a reason; ``trial.device`` is a device the worker can allocate on; ``submit``'s
    ``timeout`` either fails a trial that runs longer ("timed out") or is refused at once with a ``ValueError``.
    """
    kinds = (["ok", "prune", "raise", "nan", "ok", "prune"] + ["ok"] * max(0, n - 6))[:n]
    reports: dict[int, list[tuple[int, float]]] = {i: [] for i in range(len(kinds))}

    def on_report(number: int, step: int, value: float) -> Decision:
        reports[number].append((step, value))
        return Decision.STOP if kinds[number] == "prune" and step == 2 else Decision.CONTINUE

    trials = [Trial(i, {"x": float(i), "kind": k}, max_epochs=3, reporter=on_report) for i, k in enumerate(kinds)]

    executor = make()
    name = type(executor).__name__
    try:
        assert isinstance(executor, Executor), f"{name}: lacks a member of the Executor protocol"
        assert isinstance(executor.slots, int) and executor.slots >= 1, f"{name}: slots must be a positive int"
        assert isinstance(executor.concurrent, bool), f"{name}: concurrent must be a bool"
        assert executor.wait(timeout=0.1) == [], f"{name}: wait() with nothing running must return []"
        outcomes: dict[int, Outcome] = {}
        queue, running, end = list(trials), 0, time.monotonic() + limit
        while queue or running:
            while queue and running < executor.slots:
                executor.submit(_contract_train, queue.pop(0))
                running += 1
            for o in executor.wait(timeout=max(0.0, end - time.monotonic())):
                assert o.number not in outcomes, f"{name}: trial {o.number} ended twice"
                outcomes[o.number] = o
                running -= 1
            assert time.monotonic() < end, f"{name}: trials did not end within {limit} s: {sorted(outcomes)}"
        slow = Trial(len(trials), {"x": 0.0, "kind": "slow"}, max_epochs=3, reporter=on_report)
        reports[slow.number] = []
        try:
            executor.submit(_contract_train, slow, timeout=0.5)
        except ValueError:
            pass  # it cannot stop a trial (Inline): refused before running anything
        else:
            done = executor.wait(timeout=limit)
            while not done and time.monotonic() < end:
                done = executor.wait(timeout=max(0.0, end - time.monotonic()))
            assert [(o.number, o.status) for o in done] == [(slow.number, Status.FAILED)] and \
                "timed out" in (done[0].reason or ""), f"{name}: a trial past its timeout did not fail: {done}"
    finally:
        executor.close()
    for t in trials:
        o, x, kind = outcomes[t.number], t.config["x"], t.config["kind"]
        where = f"{name}, trial {t.number} ({kind})"
        if kind == "ok":
            assert o.status is Status.COMPLETED and o.value == 2 * x, f"{where}: {o}"
            assert reports[t.number] == [(1, x), (2, x + 1), (3, x + 2)], f"{where}: reports {reports[t.number]}"
        elif kind == "prune":
            assert o.status is Status.PRUNED and o.value == x + 1, f"{where}: the STOP did not reach it: {o}"
            assert reports[t.number] == [(1, x), (2, x + 1)], f"{where}: reported after STOP: {reports[t.number]}"
        else:
            assert o.status is Status.FAILED and o.value is None and o.reason, f"{where}: {o}"
            assert kind != "raise" or "contract: the training function raised" in o.reason, f"{where}: {o.reason}"
            assert reports[t.number] == [], f"{where}: reports {reports[t.number]}"
