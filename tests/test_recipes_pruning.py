"""Smoke runs of the pruning recipe and the multi-fidelity benchmark, with tiny settings."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from support import ROOT

import torchhpo as th
from torchhpo.simulate import Event


def test_hyperband_recipe_runs_tiny(tmp_path, load_script):
    path = ROOT / "recipes" / "hyperband_cnn_digits.py"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # a fresh module each time: main() sets the module's settings
        study = load_script(path).main(max_epochs=3, n_trials=4, n_train=100, storage=str(tmp_path / "r.db"))
        data = load_script(path).main(max_epochs=3, n_trials=3, n_train=100, fidelity="data", scheduler="sha")
    finally:
        torch.set_num_threads(threads)
    assert len(study.trials) == 4 and all(t.status.is_final for t in study.trials)
    assert any(t.status is th.Status.PRUNED for t in study.trials)
    assert [p.name for p in study.checkpoint_dir.glob("trial-*.pt")] == [f"trial-{study.best.number}.pt"]
    assert sorted(data.best.reports) == [1, 3]  # a rung on a third of the data, then all of it
    assert len(path.read_text().splitlines()) < 200


@pytest.mark.parametrize("table, methods", [("digits_cnn", None), ("digits_mlp", "random + Hyperband,tpe + freeze-thaw"),
                                            ("signals_cnn", "random + Hyperband,random + ASHA")])
def test_multifidelity_benchmark_quick(table, methods):
    """Every method on the first table; a subset on the others (the reference method always runs: it sets the
    target), which keeps the suite's time on what differs between tables, their loading and their shapes."""
    args = ["--quick", "--table", table, *(["--methods", methods] if methods else [])]
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "multifidelity.py"), *args],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    rows = {line.split("|")[1].strip() for line in out.stdout.splitlines() if line.startswith("| ")}
    wanted = {"random (full budget)", *(methods or "random + Hyperband,tpe + freeze-thaw").split(",")}
    assert wanted <= rows and (methods is None or not rows & {"random + SHA", "tpe + ASHA"})
    assert "Target:" in out.stdout and f"tabulated {table} curves" in out.stdout


@pytest.mark.parametrize("worker", [False, True])
def test_multifidelity_real_training_reports_the_drivers_share(worker):
    """--real trains the digits CNN (Inline, or one worker process whose trials send their final test accuracy
    back through trial attrs) and reports the wall-time shares of the searcher and of the driver's own time."""
    args = ["--real", "--quick", "--methods", "random + Hyperband", *(["--worker"] if worker else [])]
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "multifidelity.py"), *args],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert ("Processes(" if worker else "Inline(") in out.stdout
    row = next(line for line in out.stdout.splitlines() if line.startswith("| random + Hyperband |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[6]) > 0.5  # the test accuracy of the chosen config: fully trained trials sent theirs
    asks, idle = (float(x.strip().rstrip("%")) for x in cells[-1].split("/"))
    assert 0 <= asks <= 100 and 0 < idle < 100


def test_multifidelity_counts_winners_the_scheduler_cut_short(load_script):
    mf = load_script(ROOT / "benchmarks" / "multifidelity.py")
    # trial 0: a winner trained to the end; 1: a winner stopped after one epoch; 2: a loser; 3: a winner started
    # with too little budget left to finish (not the scheduler's fault, so not counted)
    steps = [(0, 1), (0, 2), (0, 3), (1, 1), (2, 1), (3, 1)]
    events = [Event(float(i), i + 1, number, step, 0.0) for i, (number, step) in enumerate(steps)]
    full = {0: (0.1, 0.9), 1: (0.1, 0.9), 2: (0.9, 0.5), 3: (0.1, 0.9)}
    assert mf.winners_cut(mf.Run(events, full), E=3, budget=6, target=0.2) == [False, True]
    assert mf.winners_cut(mf.Run(events, full), E=3, budget=6, target=0.05) == []
    # several workers: trial 1, still running when the budget ran out, is the budget's cut, not the scheduler's
    assert mf.winners_cut(mf.Run(events, full, running=frozenset({1})), E=3, budget=6, target=0.2) == [False]
    # a budget that ends when trial 0 finishes: the trials started after it had no room left and drop out
    assert mf.winners_cut(mf.Run(events, full), E=3, budget=3, target=0.2) == [False]
    # real training knows only the fully trained trials' values: no answer rather than a wrong one
    assert mf.winners_cut(mf.Run(events, {0: (0.1, 0.9)}), E=3, budget=6, target=0.2) is None


@pytest.mark.parametrize("table, seed", [("digits_cnn", 100), ("digits_mlp", 101)])
def test_multifidelity_ask_tell_path_gets_the_same_numbers(load_script, table, seed):
    """Every method (but the GP's and Optuna's), driven by ask/tell, replays exactly what optimize replays (a seed
    per table; freeze-thaw, whose every decision fits its curve model, on half the budget)."""
    mf = load_script(ROOT / "benchmarks" / "multifidelity.py")
    curves = mf.Curves.load(table)
    E = curves.epochs
    for name, (searcher, scheduler) in mf.methods(E, 1, with_gp=False).items():
        budget = (4 if "freeze-thaw" in name else 8) * E
        a = mf.run_table(curves, searcher(seed), scheduler(seed), seed, budget, 1)
        b = mf.run_table_ask_tell(curves, searcher(seed), scheduler(seed), seed, budget)
        assert a.events == b.events, f"{name}, seed {seed}: the reports differ"
        assert a.full == b.full, f"{name}, seed {seed}"
