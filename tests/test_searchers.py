"""Searchers: the contract suite, the grid (lazy: the same configs in the same order as the list it replaced,
kept here as the oracle), Sobol's coverage, errors."""

import json
import pickle
import warnings

import numpy as np
import pytest

import torchhpo as th
from torchhpo.history import History
from torchhpo.searchers import make_searcher
from torchhpo.testing import check_searcher
from torchhpo.trial import TrialRecord


@pytest.mark.parametrize("make", [
    lambda seed: th.RandomSearch(seed=seed),
    lambda seed: th.Sobol(seed=seed),
    lambda seed: th.GridSearch(points=3, seed=seed),
    lambda seed: th.GridSearch(points=3, shuffle=True, seed=seed),
], ids=["random", "sobol", "grid", "grid-shuffled"])
def test_contract(make):
    check_searcher(make)


def test_grid_visits_every_combination_once_then_stops():
    space = th.Space({"layers": th.Int(2, 4), "filters": th.Choice([32, 64, 128])})
    study = th.Study(space, searcher="grid", mode="max")
    study.optimize(lambda c, t: c["layers"] * c["filters"], progress=False)
    seen = sorted((t.config["layers"], t.config["filters"]) for t in study.trials)
    assert seen == sorted((a, b) for a in (2, 3, 4) for b in (32, 64, 128))
    assert study.best.config == {"layers": 4, "filters": 128}
    with pytest.raises(th.SearchExhausted):
        study.ask()


def test_grid_log_spacing():
    space = th.Space({"lr": th.Float(1e-4, 1e-1, log=True)})
    lrs = [c["lr"] for c in th.GridSearch(points=4).configs(space)]
    assert lrs == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1])


def test_sobol_covers_better_than_nothing_and_is_deterministic():
    space = th.Space({"x": th.Float(0.0, 1.0)})
    xs = sorted(c["x"] for c in th.Sobol(seed=1).ask(space, [], 8))
    # one point in each eighth of the interval: the defining property of a (0, 3, 1)-net in base 2
    assert [int(x * 8) for x in xs] == list(range(8))


def test_make_searcher_errors():
    with pytest.raises(ValueError, match="unknown"):
        make_searcher("nope")
    with pytest.raises(TypeError, match="ask"):
        make_searcher(object())


# --- the lazy grid: the same configs in the same order as the list it replaced ----------------------------------
GRID_SPACE = th.Space({"lr": th.Float(1e-4, 1e-1, log=True), "layers": th.Int(1, 7, step=2),
                       "act": th.Choice(["relu", "tanh", "gelu"]), "drop": th.Float(0.0, 0.5)})


def _old_configs(space, points, shuffle, seed):
    """GridSearch.configs before the lazy grid: the list, shuffled in place."""
    grid = space.grid(points)
    if shuffle:
        np.random.default_rng(seed).shuffle(grid)
    return grid


def _old_ask(space, points, shuffle, seed, trials, n):
    """GridSearch.ask before the lazy grid: the whole grid and every trial's key at each ask (the oracle)."""
    seen = {json.dumps(t.config, sort_keys=True) for t in trials}
    return [c for c in _old_configs(space, points, shuffle, seed) if json.dumps(c, sort_keys=True) not in seen][:n]


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("points", [1, 3, {"lr": 4, "drop": 2, "layers": 2}])
def test_lazy_grid_gives_the_configs_of_the_list_in_its_order(points, shuffle):
    for seed in (0, 1, 2**40 + 3):
        want = _old_configs(GRID_SPACE, points, shuffle, seed)
        grid = th.GridSearch(points, shuffle=shuffle, seed=seed)
        assert grid.configs(GRID_SPACE) == want
        grid.points, grid.shuffle = 2, not shuffle  # settings changed later: a new grid
        assert grid.ask(GRID_SPACE, [], 100) == _old_configs(GRID_SPACE, 2, not shuffle, seed)


@pytest.mark.parametrize("shuffle", [False, True])
def test_grid_asks_as_before_whatever_the_history(shuffle):
    grid = th.GridSearch(points=3, shuffle=shuffle, seed=7)
    everything = _old_configs(GRID_SPACE, 3, False, 0)
    rng = np.random.default_rng(0)
    history = History()
    for _ in range(60):  # enqueued configs (anywhere in the grid), plain lists and the History, asks of 1..5
        if rng.random() < 0.2:
            history.append(TrialRecord(len(history), GRID_SPACE.sample(1, seed=int(rng.integers(1 << 30)))[0]))
            history.append(TrialRecord(len(history), everything[rng.integers(len(everything))]))
        n = int(rng.integers(1, 6))
        want = _old_ask(GRID_SPACE, 3, shuffle, 7, history, n)
        assert grid.ask(GRID_SPACE, list(history), n) == want  # a plain list: from every trial
        got = grid.ask(GRID_SPACE, history, n)
        assert got == want
        for config in got[: int(rng.integers(0, n + 1))]:  # the study starts some of them
            history.append(TrialRecord(len(history), config))
    assert grid.ask(GRID_SPACE, history, 200) == _old_ask(GRID_SPACE, 3, shuffle, 7, history, 200)
    other = History(history[:5])  # another History: its own visits
    assert grid.ask(GRID_SPACE, other, 3) == _old_ask(GRID_SPACE, 3, shuffle, 7, other, 3)


@pytest.mark.parametrize("shuffle", [False, True])
def test_a_study_visits_the_grid_in_the_same_order(shuffle):
    space = th.Space({"a": th.Int(1, 4), "b": th.Choice(["x", "y", "z"]), "c": th.Float(0.0, 1.0)})
    study = th.Study(space, searcher=th.GridSearch(points=2, shuffle=shuffle, seed=3), mode="max")
    study.enqueue({"a": 4, "b": "y", "c": 1.0})
    study.optimize(lambda c, t: c["a"], progress=False)
    want = _old_configs(space, 2, shuffle, 3)
    want.remove({"a": 4, "b": "y", "c": 1.0})
    assert [t.config for t in study.trials] == [{"a": 4, "b": "y", "c": 1.0}, *want]


def test_a_huge_grid_is_never_built_and_is_warned_about_once():
    space = th.Space({f"x{i}": th.Float(0.0, 1.0) for i in range(10)})  # 10^10 points
    grid = th.GridSearch(points=10)
    history = History()
    with pytest.warns(UserWarning, match=r"10,000,000,000 points .*points="):
        first = grid.ask(space, history, 2)
    assert first == [{**{f"x{i}": 0.0 for i in range(9)}, "x9": v} for v in (0.0, 1 / 9)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(50):
            history.extend([])
            history.append(TrialRecord(len(history), grid.ask(space, history, 1)[0]))
        th.GridSearch(points=3).ask(th.Space({"x": th.Float(0.0, 1.0)}), [], 1)  # small grids: no warning
    assert history[-1].config["x9"] == 1.0 and history[-1].config["x8"] == pytest.approx(4 / 9)
    shuffled = th.GridSearch(points={"x0": 10, **{f"x{i}": 4 for i in range(1, 10)}}, shuffle=True, seed=0)
    with pytest.warns(UserWarning, match="2,621,440 points"):
        assert len(shuffled.ask(space, history, 3)) == 3
    clone = pickle.loads(pickle.dumps(shuffled))
    with pytest.warns(UserWarning, match="2,621,440 points"):  # warned once per searcher
        assert clone.ask(space, history, 3) == shuffled.ask(space, history, 3)
