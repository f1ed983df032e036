import statistics

import pytest

import torchhpo as th
from torchhpo.testing import check_searcher


def test_contract():
    check_searcher(lambda seed: th.TPE(seed=seed, n_initial=5))


def objective(config, trial):
    penalty = {"good": 0.0, "ok": 1.0, "bad": 3.0}[config["c"]]
    return (config["x"] - 0.7) ** 2 + (config["k"] - 6) ** 2 / 10 + penalty


SPACE = th.Space({"x": th.Float(-3.0, 3.0), "k": th.Int(1, 10), "c": th.Choice(["bad", "ok", "good"])})


def test_beats_random_search_on_a_mixed_space():
    tpe, rnd = [], []
    for seed in range(6):
        tpe.append(th.Study(SPACE, searcher="tpe", seed=seed).optimize(objective, n_trials=40, progress=False).best.value)
        rnd.append(th.Study(SPACE, searcher="random", seed=seed).optimize(objective, n_trials=40, progress=False).best.value)
    assert statistics.median(tpe) < statistics.median(rnd) / 2, (tpe, rnd)


def test_learns_the_good_category():
    study = th.Study(SPACE, searcher=th.TPE(seed=0), seed=0).optimize(objective, n_trials=40, progress=False)
    late = [t.config["c"] for t in study.trials[20:]]
    assert late.count("good") > len(late) / 2


def test_batch_spreads_out_over_pending_trials():
    study = th.Study(th.Space({"k": th.Int(1, 6)}), searcher=th.TPE(seed=0, n_initial=3), seed=0)
    for trial in study.ask(3):
        study.tell(trial, float(trial.config["k"]))
    batch = study.ask(3)  # the only 3 values left: a batch must not repeat a tried or pending one
    assert sorted(t.config["k"] for t in batch) == sorted({1, 2, 3, 4, 5, 6} - {t.config["k"] for t in study.trials[:3]})


@pytest.mark.parametrize("kwargs, message", [
    ({"n_initial": 0}, "n_initial=0 must be an int >= 1"),
    ({"n_candidates": 0}, "n_candidates=0"),
    ({"gamma": 1.5}, "gamma=1.5 must be in"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        th.TPE(**kwargs)
