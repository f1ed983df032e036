import math

import pytest
from support import run_script

import torchhpo as th
from torchhpo.bench import PROBLEMS, Problem, Results, Run, compare

FAST = th.GPOptions(num_restarts=2, raw_samples=32, maxiter=10, fit_maxiter=15)


@pytest.mark.parametrize(("name", "argmin"), [
    ("branin", {"x1": math.pi, "x2": 2.275}),
    ("hartmann6", {f"x{i}": v for i, v in enumerate([0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573])}),
    ("ackley5", {f"x{i}": 0.0 for i in range(5)}),
    ("mixed", {"lr": 1e-3, "layers": 6, "optimizer": "adam", "momentum": 0.8}),
])
def test_problems_reach_their_optimum_at_the_known_argmin(name, argmin):
    p = PROBLEMS[name]
    assert p.space.validate(argmin) == argmin
    assert p.fn(argmin) == pytest.approx(p.optimum, abs=1e-5)
    assert all(p.fn(c) >= p.optimum - 1e-9 for c in p.space.sample(200, seed=0))


class _Corner:
    """A peer from outside torchhpo: ``run(problem, budget, seed)`` evaluates the space's lower corner."""

    def run(self, problem: Problem, budget: int, seed: int) -> Run:
        corner = {n: p.low if hasattr(p, "low") else p.options[0] for n, p in problem.space.params.items()}
        return Run([problem.fn(corner)] * budget, [0.0] * budget)


def test_compare_table_ranks_and_plot(tmp_path):
    res = compare({"random": th.RandomSearch(), "sobol": th.Sobol(), "corner": _Corner(),
                   "gp": lambda seed: th.GP(n_initial=4, seed=seed, options=FAST)}, problems=["branin"], budget=5,
                  seeds=[0, 1])  # 1 model-based step: checks wiring, not quality
    assert len(res.runs) == 8 and all(len(r.values) == 5 for r in res.runs.values())
    ranks = res.ranks()
    assert sum(ranks.values()) == pytest.approx(1 + 2 + 3 + 4)  # per (problem, seed), ranks 1..4
    table = res.table()
    assert table.count("\n") == 2 + 4 - 1 and "mean rank" in table
    res.plot(str(tmp_path / "r.png"))
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_regret_is_floored_and_monotone():
    res = Results({("a", "p", 0): Run([3.0, 1.0, 2.0, 1.0], [0.0] * 4)}, {"p": 1.0})
    assert res.regret(("a", "p", 0)).tolist() == [math.log10(2.0), -12.0, -12.0, -12.0]


def test_compare_rejects_unknown_problems_and_optimizers():
    with pytest.raises(ValueError, match="unknown; choose from"):
        compare({"r": th.RandomSearch()}, problems=["nope"], budget=2, seeds=1)
    with pytest.raises(TypeError, match="must be a searcher"):
        compare({"r": 3}, problems=["branin"], budget=2, seeds=1)
    with pytest.raises(ValueError, match="budget must be a positive int, got 0"):
        compare({"r": th.RandomSearch()}, problems=["branin"], budget=0, seeds=1)
    with pytest.raises(ValueError, match="seeds must be a positive int, got 0"):
        compare({"r": th.RandomSearch()}, problems=["branin"], budget=2, seeds=0)


def test_compare_times_each_ask_and_th_bench_is_the_module():
    res = th.bench.compare({"random": th.RandomSearch()}, problems=[PROBLEMS["mixed"]], budget=3, seeds=1)
    run = res.runs[("random", "mixed", 0)]
    assert len(run.seconds) == 3 and all(s >= 0.0 for s in run.seconds)
    with pytest.raises(AttributeError, match=r"benchmarks/peers\.py"):
        th.bench.OptunaPeer  # noqa: B018 (the peers are benchmark code, outside the package)


def test_recipe_bo_1d_demo(tmp_path):
    pytest.importorskip("matplotlib")
    out = run_script("recipes/bo_1d_demo.py", "--iterations", "3", "--out", str(tmp_path / "demo.png"))
    assert "best x" in out and (tmp_path / "demo.png").exists()


def test_recipe_gp_cnn_digits():
    out = run_script("recipes/gp_cnn_digits.py", "--trials", "3", "--n-initial", "2", "--epochs", "1", "--storage", "")
    assert "best validation loss" in out and "test accuracy" in out
