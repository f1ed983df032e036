import json
import math
import statistics

import pytest

import torchhpo as th
from torchhpo.testing import check_searcher
from torchhpo.tpe import TPE, TPEOptions, ranked
from torchhpo.trial import Status, TrialRecord


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
    ({"n_initial": 0}, "TPE: n_initial must be a positive int, got 0"),
    ({"n_candidates": 0}, "TPE: n_candidates must be a positive int, got 0"),
    ({"gamma": 1.5}, r"TPE: gamma must be a number in \(0, 1\), got 1.5"),
    ({"gamma": 0.0}, "TPE: gamma must be a positive number, got 0"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        th.TPE(**kwargs)


def test_options_are_checked_and_change_the_densities():
    with pytest.raises(ValueError, match="TPEOptions: bandwidth must be a positive number, got 0"):
        TPEOptions(bandwidth=0.0)
    with pytest.raises(ValueError, match="TPEOptions: max_good must be a positive int, got 0"):
        TPEOptions(max_good=0)
    trials = [TrialRecord(i, {"x": x}, Status.COMPLETED, (x - 0.3) ** 2, sign=-1)
              for i, x in enumerate([0.05 * k for k in range(20)])]
    space = th.Space({"x": th.Float(0.0, 1.0)})
    assert TPE(seed=0).ask(space, trials, 4) == TPE(seed=0, options=TPEOptions()).ask(space, trials, 4)
    assert TPE(seed=0).ask(space, trials, 4) != TPE(seed=0, options=TPEOptions(bandwidth=0.05)).ask(space, trials, 4)


def _record(number, x, reports, status):
    return TrialRecord(number, {"x": x}, status, reports[max(reports)], reports, sign=-1)


def test_with_pruning_the_trials_promoted_furthest_are_the_good_ones():
    """Fast starters near x = 0.2 look best after 1 epoch and were stopped there; four slow starters near 0.8
    were promoted to epoch 9. TPE must aim at the slow starters (BOHB's rule would fit on the 1-epoch scores,
    the only step with enough trials, and aim at 0.2)."""
    space = th.Space({"x": th.Float(0.0, 1.0)})
    trials = [_record(i, 0.15 + 0.01 * i, {1: 0.1 + 0.01 * i}, Status.PRUNED) for i in range(12)]
    trials += [_record(12 + i, 0.78 + 0.01 * i, {1: 0.5, 3: 0.4, 9: 0.3 + 0.01 * i}, Status.COMPLETED)
               for i in range(4)]
    trials += [_record(16, 0.5, {1: 0.9}, Status.FAILED), _record(17, 0.45, {1: 0.6, 3: 0.55}, Status.PRUNED)]
    order = ranked(space, trials)
    assert [c["x"] for c in order[:4]] == pytest.approx([0.78, 0.79, 0.80, 0.81])  # best score at the top step first
    assert order[4]["x"] == 0.45 and order[-1]["x"] == 0.5  # then the next step; a FAILED trial last
    xs = [c["x"] for c in TPE(seed=0, n_initial=5).ask(space, trials, 8)]
    assert statistics.median(xs) > 0.6, xs
    assert ranked(space, trials[12:16]) == [t.config for t in trials[12:16]]  # no pruning: by final score


def test_same_seed_and_history_give_the_same_configs():
    run = lambda seed: [t.config for t in th.Study(SPACE, searcher=th.TPE(seed=seed), seed=seed)  # noqa: E731
                        .optimize(objective, n_trials=20, progress=False).trials]
    assert run(3) == run(3) and run(3) != run(4)


def _quadratic_history(n):
    return [TrialRecord(i, {"x": x}, Status.COMPLETED, (x - 0.5) ** 2, sign=-1)
            for i, x in enumerate([(k + 0.5) / n for k in range(n)])]


def test_pending_trials_repel_proposals():
    """Running trials at the best point count as bad: the next proposals keep away from them."""
    space = th.Space({"x": th.Float(0.0, 1.0)})
    done = _quadratic_history(20)
    free = TPE(seed=0).ask(space, done, 8)
    running = [TrialRecord(20 + i, {"x": 0.5 + 0.002 * i}, Status.RUNNING, sign=-1) for i in range(-5, 6)]
    crowded = TPE(seed=0).ask(space, done + running, 8)
    spread = lambda configs: statistics.median(abs(c["x"] - 0.5) for c in configs)  # noqa: E731
    assert spread(crowded) > 2 * spread(free), (free, crowded)


def test_a_batch_is_distinct_and_new():
    space = th.Space({"x": th.Float(0.0, 1.0), "k": th.Int(1, 4), "c": th.Choice(["a", "b"])})
    trials = [TrialRecord(i, c, Status.COMPLETED, float(i % 7), sign=-1) for i, c in enumerate(space.sample(15, seed=1))]
    batch = TPE(seed=0).ask(space, trials, 10)
    keys = {json.dumps(c, sort_keys=True) for c in batch}
    assert len(keys) == 10 and not keys & {json.dumps(t.config, sort_keys=True) for t in trials}
    assert all(isinstance(c["k"], int) and c["c"] in ("a", "b") for c in batch)


def test_log_scale_and_integers_reach_the_optimum():
    space = th.Space({"lr": th.Float(1e-6, 1.0, log=True), "k": th.Int(1, 50)})
    f = lambda c, t: (math.log10(c["lr"]) + 3.0) ** 2 + (c["k"] - 17) ** 2 / 100  # noqa: E731
    best = th.Study(space, searcher=th.TPE(seed=0), seed=0).optimize(f, n_trials=60, progress=False).best.config
    assert abs(math.log10(best["lr"]) + 3.0) < 0.5 and abs(best["k"] - 17) <= 5, best


def test_conditional_parameters_are_left_out_where_inactive():
    """Only configs with "deep" hold "width"; the best ones are deep with width near 40. TPE must still learn
    width from the deep trials (the shallow ones' missing width counts for nothing), and propose valid configs."""
    space = th.Space({"deep": th.Choice([False, True]), "width": th.Int(8, 64, when={"deep": True}),
                      "x": th.Float(0.0, 1.0)})

    def f(c, t):
        return (c["x"] - 0.3) ** 2 + (abs(c["width"] - 40) / 20 if c["deep"] else 1.0)

    study = th.Study(space, searcher=th.TPE(seed=0), seed=0).optimize(f, n_trials=50, progress=False)
    late = [t.config for t in study.trials[30:]]
    assert all(("width" in c) == c["deep"] for c in late)
    deep = [c["width"] for c in late if c["deep"]]
    assert len(deep) > len(late) / 2 and abs(statistics.median(deep) - 40) <= 8, late
    assert study.best.value < 0.2
