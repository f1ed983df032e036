"""Prefetching with workers (``Processes``): freed slots refill from configs proposed in the background while
every worker trained; those never repeat a started config; the searcher never runs twice at once and its errors
reach the driver; sequential executors ask after each result, as always."""

import threading
import time

import pytest

import torchhpo as th

SPACE = th.Space({"x": th.Float(0.0, 1.0)})
MAIN = threading.current_thread().name


@pytest.fixture(scope="module")
def procs():
    """Two CPU workers shared by this module's studies (a worker start imports torch: seconds here)."""
    with th.Processes(devices=["cpu"] * 2) as ex:
        yield ex


class Recorder:
    """A searcher that records each ask: its thread, how many configs, how many trials were pending, what it
    proposed; and whether two asks ever overlapped."""

    def __init__(self, inner, seconds=0.0):
        self.inner, self.seconds, self.asks, self.overlapped, self._busy = inner, seconds, [], False, False

    def ask(self, space, trials, n=1):
        self.overlapped |= self._busy
        self._busy = True
        try:
            time.sleep(self.seconds)  # a model's fit: long enough for results to arrive meanwhile
            out = self.inner.ask(space, trials, n)
        finally:
            self._busy = False
        self.asks.append((threading.current_thread().name, n, sum(t.status is th.Status.RUNNING for t in trials),
                          out))
        return out


def sleeper(seconds):
    def train(config, trial):
        time.sleep(seconds)
        return config["x"]
    return train


def test_freed_slots_refill_from_proposals_made_while_every_worker_trained(procs):
    study = th.Study(SPACE, searcher=Recorder(th.Sobol(seed=0)), seed=0)
    study.optimize(sleeper(0.3), n_trials=8, executor=procs, progress=False)
    asks = study.searcher.asks
    assert asks[0][:3] == (MAIN, 2, 0)  # the first batch fills both free workers
    background = [a for a in asks[1:] if a[0].startswith("torchhpo-prefetch")]
    assert background and all(pending == 2 for _, _, pending, _ in background), asks  # proposed while both trained
    proposed = {c["x"] for a in background for c in a[3]}
    assert any(t.config["x"] in proposed for t in study.trials[2:]), asks
    assert [t.status for t in study.trials] == [th.Status.COMPLETED] * 8
    assert not study.searcher.overlapped


def test_prefetched_configs_never_repeat_a_started_one(procs):
    """A grid proposes the first points its snapshot has not seen; trials started from an older batch after that
    snapshot hold some of them: those are dropped, so the grid still runs each point once, every point."""
    space = th.Space({"i": th.Int(0, 11)})
    study = th.Study(space, searcher=Recorder(th.GridSearch(), seconds=0.05), seed=0)
    study.optimize(lambda c, t: time.sleep(0.1) or c["i"], n_trials=20, executor=procs, progress=False)
    assert sorted(t.config["i"] for t in study.trials) == list(range(12))
    assert not study.searcher.overlapped


class FailsInBackground:
    """A searcher whose asks fail once they run in the prefetch thread."""

    def __init__(self):
        self.inner = th.RandomSearch(seed=0)

    def ask(self, space, trials, n=1):
        if threading.current_thread().name != MAIN:
            raise RuntimeError("the model broke")
        return self.inner.ask(space, trials, n)


def test_a_searcher_error_in_the_background_stops_the_driver(procs):
    study = th.Study(SPACE, searcher=FailsInBackground(), seed=0)
    with pytest.raises(RuntimeError, match="the model broke"):
        study.optimize(sleeper(0.2), n_trials=6, executor=procs, progress=False)
    assert len(study.trials) == 2 and all(t.status.is_final for t in study.trials)


def test_sequential_executors_ask_after_each_result_in_the_driver():
    searcher = Recorder(th.Sobol(seed=0))
    study = th.Study(SPACE, searcher=searcher, seed=0)
    study.optimize(sleeper(0.0), n_trials=4, progress=False)
    assert [a[:3] for a in searcher.asks] == [(MAIN, 1, 0)] * 4
    again = th.Study(SPACE, searcher=th.Sobol(seed=0), seed=0)
    again.optimize(sleeper(0.0), n_trials=4, executor=th.Inline(), progress=False)
    assert [t.config for t in again.trials] == [t.config for t in study.trials]


def test_a_sequential_run_slowed_by_its_searcher_is_told_of_the_model_process(monkeypatch, caplog):
    """Inline with the default prefetch asks between trials; when those asks take a large share of the call, the
    torchhpo logger says so once and names prefetch='process'; not when the asks are cheap or prefetch is chosen."""
    import torchhpo.loop as loop

    monkeypatch.setattr(loop, "HINT_SECONDS", 0.2)  # a long run, shortened
    monkeypatch.setattr(loop, "usable_cpus", lambda: 2)  # a spare core for the model process
    hints = lambda: [r for r in caplog.records if "prefetch='process'" in r.getMessage()]  # noqa: E731
    slow = th.Study(SPACE, searcher=Recorder(th.Sobol(seed=0), seconds=0.05), seed=0)
    with caplog.at_level("WARNING", logger="torchhpo"):
        slow.optimize(sleeper(0.01), n_trials=6, progress=False)
        assert len(hints()) == 1 and "% of this optimize call" in hints()[0].getMessage()
        caplog.clear()
        slow.optimize(sleeper(0.01), n_trials=6, prefetch="off", progress=False)  # the user chose: no advice
        th.Study(SPACE, searcher=th.Sobol(seed=0), seed=0).optimize(sleeper(0.05), n_trials=6, progress=False)
        assert hints() == []
