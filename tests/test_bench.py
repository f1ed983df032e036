import json
import logging
import math
import warnings

import pytest
from support import run_script

import torchhpo as th
from torchhpo.bench import PROBLEMS, SEARCHERS, Problem, Results, Run, compare
from torchhpo.cli import main

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


def test_mean_rank_compares_each_pair_on_the_seeds_both_ran():
    """An optimizer run on fewer seeds (c: 0..1, where it beats a and b) is ranked by the pairs it met, and a and b
    are not credited with a smaller field on seeds 2..9: per-seed pools would give a 1.2 and c 1.0."""
    from torchhpo.bench import Results, Run

    final = {"a": 1.0, "b": 2.0, "c": 0.5}
    runs = {(o, "p", s): Run([v + 10.0, v], [0.0, 0.0]) for o, v in final.items() for s in range(10)
            if o != "c" or s < 2}
    assert Results(runs, {"p": 0.0}).ranks() == {"a": 2.0, "b": 3.0, "c": 1.0}
    full = {k: r for k, r in runs.items() if k[2] < 2}  # every optimizer on every seed: the plain mean rank
    assert Results(full, {"p": 0.0}).ranks() == {"a": 2.0, "b": 3.0, "c": 1.0}
    ties = Results({("a", "p", 0): Run([1.0], [0.0]), ("b", "p", 0): Run([1.0], [0.0])}, {"p": 0.0}).ranks()
    assert ties == {"a": 1.5, "b": 1.5}


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
        th.bench.BoTorchLoop  # noqa: B018 (the plain BoTorch loop is benchmark code, outside the package)


def _noisy_sphere(config):
    warnings.warn("ill-conditioned", RuntimeWarning, stacklevel=1)
    logging.getLogger("torchhpo.gp").warning("acquisition optimization failed")
    return config["x"] ** 2


def test_compare_counts_warnings_and_resumes_from_out(tmp_path, capfd):
    noisy = Problem("noisy", th.Space({"x": th.Float(-1.0, 1.0)}), _noisy_sphere, 0.0)
    res = compare(["random", "sobol"], problems=[noisy], budget=3, seeds=2, out=tmp_path)
    assert res.reused == 0 and sorted(res.runs) == [(o, "noisy", s) for o in ("random", "sobol") for s in (0, 1)]
    assert all(r.warnings == {"RuntimeWarning": 3, "logged by torchhpo.gp": 3} for r in res.runs.values())
    assert res.warning_summary() == ["RuntimeWarning: 12 in 4 of 4 runs", "logged by torchhpo.gp: 12 in 4 of 4 runs"]
    assert "ill-conditioned" not in capfd.readouterr().err  # counted, not printed
    again = compare({"random": th.RandomSearch(), "tpe": th.TPE()}, problems=[noisy], budget=3, seeds=2, out=tmp_path)
    assert again.reused == 2 and again.runs[("random", "noisy", 1)].values == res.runs[("random", "noisy", 1)].values
    stored = Results.load(tmp_path / "results.json")  # the file keeps every run it got, sobol's too
    assert len(stored.runs) == 6 and stored.optima == {"noisy": 0.0}
    longer = compare(["random"], problems=[noisy], budget=4, seeds=1, out=tmp_path)  # another budget: run again
    assert longer.reused == 0 and len(longer.runs[("random", "noisy", 0)].values) == 4


def test_searcher_registry():
    assert {"gp-logei", "gp-qlognei", "gp-ucb", "gp-ts", "tpe", "random", "sobol", "optuna-tpe"} <= set(SEARCHERS)
    made = th.bench.searchers(["gp-ucb", "gp-ts", "tpe"])
    assert (made["gp-ucb"].acquisition, made["gp-ucb"].beta, made["gp-ts"].acquisition) == ("ucb", 2.0, "ts")
    assert isinstance(made["tpe"], th.TPE)
    with pytest.raises(ValueError, match="unknown searcher 'gp-pi'; choose from"):
        compare(["gp-pi"], problems=["branin"], budget=2, seeds=1)


def test_cli_bench_writes_table_plots_and_resumes(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "bench"
    argv = ["bench", "--searchers", "sobol,random", "--problems", "branin,mixed", "--budget", "6", "--out", str(out),
            "--no-progress"]
    assert main([*argv, "--seeds", "2", "--workers", "2"]) == 0
    first = capsys.readouterr().out
    assert "reused" not in first and "| sobol |" in first and "warnings (counted, not printed):" in first
    rows = json.loads((out / "results.json").read_text())["runs"]
    assert len(rows) == 8 and all(len(r[3]) == 6 for r in rows)
    for p in ("branin", "mixed"):
        assert (out / f"regret-{p}.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "results.md").read_text()
    assert "| optimizer | branin | mixed | mean rank |" in md and "## Warnings (counted, not printed)" in md
    assert "seeds: sobol 0..1, random 0..1" in md
    assert main([*argv, "--seeds", "3"]) == 0  # seed 2 is new: run here, the rest reused
    again = capsys.readouterr().out
    assert f"reused 8 of 12 runs from {out / 'results.json'}" in again
    assert main(["bench", "--list"]) == 0 and "gp-ts" in capsys.readouterr().out
    assert main([*argv, "--seeds", "0-x"]) == 2 and "must be a count" in capsys.readouterr().err


def test_recipe_bo_1d_demo(tmp_path):
    pytest.importorskip("matplotlib")
    out = run_script("recipes/bo_1d_demo.py", "--iterations", "3", "--out", str(tmp_path / "demo.png"))
    assert "best x" in out and (tmp_path / "demo.png").exists()


def test_recipe_gp_cnn_digits():
    out = run_script("recipes/gp_cnn_digits.py", "--trials", "3", "--n-initial", "2", "--epochs", "1", "--storage", "")
    assert "best validation loss" in out and "test accuracy" in out


def test_cli_bench_gives_the_callers_thread_count_back(tmp_path, capsys):
    """main(["bench", ...]) in a Python session runs its runs with one torch thread, then restores the caller's."""
    import torch

    callers = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert main(["bench", "--searchers", "random", "--problems", "branin", "--budget", "3", "--seeds", "1",
                     "--out", str(tmp_path / "bench"), "--no-progress"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(callers)
