"""The simulated clock: replays agree with real training, the shipped table loads, the searcher wrapper snaps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import torchhpo as th
from torchhpo.problems import digits_space, train_digits_cnn
from torchhpo.simulate import Curves, Simulated, Tabulated, tabulate


def _statuses_and_reports(study):
    return [(t.status, {s: float(np.float32(v)) for s, v in t.reports.items()}) for t in study.trials]


def test_simulated_and_real_runs_agree():
    """Same configs, same scheduler: the real run (paused, resumed from checkpoints) and the replay of its
    tabulated curves make the same decisions and see the same values."""
    cheap = [c for c in digits_space().sobol(32, seed=3) if c["filters"] <= 12 and c["batch_size"] >= 64]
    configs = cheap[:4]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        curves = tabulate(configs, 3)  # uninterrupted real training, trial number = row
        runs = _real_and_simulated(curves)
    finally:
        torch.set_num_threads(threads)
    real, sim = (_statuses_and_reports(runs[k]) for k in ("real", "simulated"))
    assert real == sim
    assert [s for s, _ in real].count(th.Status.PRUNED) >= 2  # rungs were decided, so pauses and resumes happened
    assert [t.config for t in runs["real"].trials] == configs


def _real_and_simulated(curves):
    runs = {}
    for name, executor in (("real", th.Inline("cpu")), ("simulated", Simulated(curves))):
        study = th.Study(curves.space, mode="min", searcher=Tabulated(curves), scheduler=th.SuccessiveHalving(1, 3),
                         max_epochs=3)
        study.optimize(train_digits_cnn, n_trials=4, executor=executor, progress=False)
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


def test_shipped_table_loads_and_spreads():
    curves = Curves.load()
    n, E = curves.val_loss.shape
    assert n >= 300 and E == 27 and len(curves.configs) == n
    assert all(curves.space.validate(c) == c for c in curves.configs[:20])
    assert np.isfinite(curves.val_loss).all() and (curves.seconds > 0).all()
    last = curves.val_loss[:, -1]
    assert np.quantile(last, 0.9) > 2 * np.quantile(last, 0.1)  # configs differ: a search has something to find


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
    with pytest.raises(ValueError, match="slots=0 must be a positive int"):
        Simulated(curves, slots=0)
    with pytest.raises(ValueError, match="metric='test_acc'"):
        Simulated(curves, metric="test_acc")
