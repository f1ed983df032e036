import pytest

import torchhpo as th
from torchhpo.searchers import make_searcher
from torchhpo.testing import check_searcher


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
