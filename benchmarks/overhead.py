"""Study overhead: per-trial cost of the ask -> run -> tell loop and per-call cost of the report hook,
torchhpo side by side with Optuna in one run (random search, trivial objective, memory and SQLite storage).

    python benchmarks/overhead.py            # full: 2,000 trials (memory), 300 (SQLite), 5 repeats
    python benchmarks/overhead.py --quick    # smoke run

Writes benchmarks/results/overhead.md. Figures are medians over repeats; each repeat runs the contenders in turn
so that load on this shared machine hits them alike. Quote the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

import torchhpo as th

RESULTS = Path(__file__).parent / "results"
SPACE = th.Space({"x": th.Float(-5.0, 5.0), "y": th.Float(1e-3, 1.0, log=True), "k": th.Int(1, 8),
                  "c": th.Choice(["a", "b", "c"])})


def _objective(config: dict, trial: th.Trial) -> float:
    return config["x"] ** 2 + config["y"] + config["k"]


def ours_trials(n: int, storage: str | None) -> Callable[[], None]:
    def run() -> None:
        th.Study(SPACE, seed=0, storage=storage, name=f"s{time.perf_counter_ns()}").optimize(
            _objective, n_trials=n, progress=False)
    return run


def optuna_trials(n: int, storage: str | None) -> Callable[[], None]:
    import optuna

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -5.0, 5.0)
        y = trial.suggest_float("y", 1e-3, 1.0, log=True)
        k = trial.suggest_int("k", 1, 8)
        trial.suggest_categorical("c", ["a", "b", "c"])
        return x**2 + y + k

    def run() -> None:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), storage=storage,
                                    study_name=f"s{time.perf_counter_ns()}")
        study.optimize(objective, n_trials=n)
    return run


def ours_reports(n: int, storage: str | None, scheduler: bool = False) -> Callable[[], None]:
    def run() -> None:
        sched = th.MedianStopping(warmup_epochs=1, min_trials=5) if scheduler else None
        study = th.Study(SPACE, seed=0, storage=storage, name=f"r{time.perf_counter_ns()}", scheduler=sched)
        trial = study.ask()
        for step in range(n):
            trial.report(1.0 / (step + 1))
        study.tell(trial, 0.0)
    return run


def optuna_reports(n: int, storage: str | None, scheduler: bool = False) -> Callable[[], None]:
    import optuna

    def run() -> None:
        pruner = optuna.pruners.MedianPruner(n_warmup_steps=1, n_min_trials=5) if scheduler else optuna.pruners.NopPruner()
        study = optuna.create_study(storage=storage, pruner=pruner,
                                    study_name=f"r{time.perf_counter_ns()}")
        trial = study.ask()
        for step in range(n):
            trial.report(1.0 / (step + 1), step)
            trial.should_prune()
        study.tell(trial, 0.0)
    return run


def measure(make: Callable[[int, str | None], Callable[[], None]], n: int, storage: str | None,
            repeats: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds per unit over ``repeats`` runs of ``n`` units."""
    walls, cpus = [], []
    for _ in range(repeats):
        run = make(n, storage)
        w, c = time.perf_counter(), time.process_time()
        run()
        walls.append((time.perf_counter() - w) / n)
        cpus.append((time.process_time() - c) / n)
    return statistics.median(walls), statistics.median(cpus)


def main() -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the smoke test")
    parser.add_argument("--out", default=str(RESULTS / "overhead.md"))
    args = parser.parse_args()
    n_mem, n_sql, n_rep, repeats = (50, 10, 50, 1) if args.quick else (2000, 300, 2000, 5)
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        have_optuna = True
    except ImportError:
        have_optuna = False
    tmp = tempfile.mkdtemp(prefix="overhead-")
    ours_db, optuna_db = f"{tmp}/ours.db", f"sqlite:///{tmp}/optuna.db"
    rows = []
    cases = [("per trial", "memory", ours_trials, optuna_trials, n_mem, None, None),
             ("per trial", "SQLite", ours_trials, optuna_trials, n_sql, ours_db, optuna_db),
             ("per report", "memory", ours_reports, optuna_reports, n_rep, None, None),
             ("per report", "SQLite", ours_reports, optuna_reports, n_rep // 4, ours_db, optuna_db),
             ("per report, MedianStopping / MedianPruner", "memory", functools.partial(ours_reports, scheduler=True),
              functools.partial(optuna_reports, scheduler=True), n_rep, None, None)]
    for what, store, ours, theirs, n, ours_store, their_store in cases:
        ours(2, ours_store)()  # warm-up: imports, first connection
        mine = measure(ours, n, ours_store, repeats)
        other = None
        if have_optuna:
            theirs(2, their_store)()
            other = measure(theirs, n, their_store, repeats)
        rows.append((what, store, n, mine, other))
    lines = ["| cost | storage | n | torchhpo µs (wall / CPU) | Optuna µs (wall / CPU) | Optuna ÷ torchhpo (CPU) |",
             "|---|---|---|---|---|---|"]
    for what, store, n, (mw, mc), other in rows:
        theirs_cell = "not installed" if other is None else f"{other[0] * 1e6:,.0f} / {other[1] * 1e6:,.0f}"
        ratio = "—" if other is None else f"{other[1] / mc:.1f}×"
        lines.append(f"| {what} | {store} | {n} | {mw * 1e6:,.0f} / {mc * 1e6:,.0f} | {theirs_cell} | {ratio} |")
    versions = f"torchhpo {th.__version__}, torch {torch.__version__}"
    if have_optuna:
        versions += f", optuna {optuna.__version__}"
    table = "\n".join(lines)
    text = (f"# Study overhead\n\nRandom search, trivial objective; medians of {repeats} repeats, contenders in turn.\n"
            f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; {versions}; "
            f"Python {platform.python_version()}.\nCommand: `python benchmarks/overhead.py"
            f"{' --quick' if args.quick else ''}`\n\n{table}\n")
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


if __name__ == "__main__":
    main()
