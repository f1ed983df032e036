"""Study overhead: per-trial cost of the ask -> run -> tell loop and per-call cost of the report hook,
torchhpo side by side with Optuna in one run (random search, trivial objective, memory and SQLite storage); and
how the driver's cost per trial scales with the study's size, with and without a scheduler (9 reports per trial).

    python benchmarks/overhead.py            # full: 2,000 trials (memory), 300 (SQLite), 5 repeats; scaling to
                                             # 10,000 trials, each run stopped after --budget seconds (150)
    python benchmarks/overhead.py --quick    # smoke run

Writes benchmarks/results/overhead.md. Figures are medians over repeats; each repeat runs the contenders in turn
so that load on this shared machine hits them alike. Quote the ratios, not the absolute numbers. The scaling runs
are single runs (torchhpo, then Optuna, for each scheduler and storage); a run longer than the budget stops
starting trials there, and its row says how many it ran.
"""

from __future__ import annotations

import argparse
import functools
import gc
import math
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


# --- scaling: driver cost per trial as the study grows -------------------------------------------------------
EPOCHS = 9  # reports per trial
CURVE = th.Space({"x": th.Float(0.0, 1.0)})
SCHEDULERS = {  # row: (torchhpo scheduler, Optuna pruner), the same rules (eta 3, rungs 1, 3, 9; median after step 1)
    "none (random search) / NopPruner": (lambda: None, lambda o: o.pruners.NopPruner()),
    "ASHA / SuccessiveHalvingPruner": (lambda: th.ASHA(1, EPOCHS, eta=3, seed=0),
                                       lambda o: o.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)),
    "Hyperband / HyperbandPruner": (lambda: th.Hyperband(1, EPOCHS, eta=3), lambda o: o.pruners.HyperbandPruner(
        min_resource=1, max_resource=EPOCHS, reduction_factor=3)),
    "MedianStopping / MedianPruner": (lambda: th.MedianStopping(warmup_epochs=1, min_trials=5),
                                      lambda o: o.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)),
}


def _curve(x: float, step: int) -> float:
    """A learning curve whose early ranks mislead (as in ``torchhpo.testing``), so the schedulers prune and pause."""
    return (x - 0.3) ** 2 + 0.5 * (1.0 + math.sin(17.0 * x)) / (step + 1)


def ours_scaling(row: str, n: int, storage: str | None, budget: float) -> list[float]:
    """Run a study of ``n`` trials (stopped after ``budget`` s); the start time of each new trial, then the end."""
    stamps: list[float] = []

    def train(config: dict, trial: th.Trial) -> float:
        if trial.last_step == 0:  # a new trial (a resumed one goes on after its last report)
            stamps.append(time.perf_counter())
        for step in range(trial.last_step + 1, EPOCHS + 1):
            trial.report(_curve(config["x"], step), step)
        return _curve(config["x"], EPOCHS)

    study = th.Study(CURVE, seed=0, scheduler=SCHEDULERS[row][0](), storage=storage, max_epochs=EPOCHS,
                     name=f"g{time.perf_counter_ns()}")
    study.optimize(train, n_trials=n, timeout=budget, progress=False)
    return [*stamps, time.perf_counter()]


def optuna_scaling(row: str, n: int, storage: str | None, budget: float) -> list[float]:
    import optuna

    stamps: list[float] = []

    def objective(trial: optuna.Trial) -> float:
        stamps.append(time.perf_counter())
        x = trial.suggest_float("x", 0.0, 1.0)
        for step in range(1, EPOCHS + 1):
            trial.report(_curve(x, step), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return _curve(x, EPOCHS)

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), pruner=SCHEDULERS[row][1](optuna),
                                storage=storage, study_name=f"g{time.perf_counter_ns()}")
    study.optimize(objective, n_trials=n, timeout=budget)
    return [*stamps, time.perf_counter()]


def scaling_cells(stamps: list[float], marks: tuple[int, ...], window: int) -> tuple[str, str, str]:
    """(ms per trial over the ``window`` trials before each mark, last window / trials window..2 window, total s).

    Per trial: the mean time between the starts of consecutive new trials, so that the end of the study (ASHA and
    Hyperband settle the PAUSED trials there) counts in the total only.
    """
    done = len(stamps) - 1

    def per_trial(end: int) -> float:  # trials end - window .. end - 1
        return (stamps[end - 1] - stamps[end - window]) / (window - 1)

    at = " / ".join(f"{per_trial(m) * 1e3:.2f}" if m <= done else "—" for m in marks)
    growth = "—"
    if done >= 2 * window:
        ratio = per_trial(done) / per_trial(2 * window)
        growth = f"{ratio:.1f}× ({'flat' if ratio <= 2 else 'grows'})"
    seconds = stamps[-1] - stamps[0]
    total = (f"{seconds:,.1f}" if seconds >= 1 else f"{seconds:.3f}") + (
        "" if done >= marks[-1] else f" ({done:,} trials: budget)")
    return at, growth, total


def scaling_table(marks: tuple[int, ...], budget: float, tmp: str, have_optuna: bool) -> str:
    window = min(100, marks[0])
    at = " / ".join(f"{m:,}" for m in marks)
    lines = [f"| scheduler: torchhpo / Optuna | storage | torchhpo ms per trial at {at} | last {window} ÷ trials "
             f"{window}–{2 * window} | total s | Optuna ms per trial at {at} | last ÷ early | total s |",
             "|---|---|---|---|---|---|---|---|"]
    for row in SCHEDULERS:
        for store in ("memory", "SQLite"):
            gc.collect()
            tag = f"{time.perf_counter_ns()}"
            mine = scaling_cells(ours_scaling(row, marks[-1], None if store == "memory" else f"{tmp}/g{tag}.db",
                                              budget), marks, window)
            theirs = ("not installed",) * 3
            if have_optuna:
                gc.collect()
                theirs = scaling_cells(optuna_scaling(row, marks[-1], None if store == "memory" else
                                                      f"sqlite:///{tmp}/o{tag}.db", budget), marks, window)
            lines.append(f"| {row} | {store} | {' | '.join(mine)} | {' | '.join(theirs)} |")
            print(lines[-1], flush=True)
    return "\n".join(lines)


def main() -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the smoke test")
    parser.add_argument("--out", default=str(RESULTS / "overhead.md"))
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds after which a scaling run stops starting trials (150; 20 with --quick)")
    args = parser.parse_args()
    n_mem, n_sql, n_rep, repeats = (50, 10, 50, 1) if args.quick else (2000, 300, 2000, 5)
    marks = (10, 30, 60) if args.quick else (100, 1_000, 10_000)
    budget = args.budget or (20.0 if args.quick else 150.0)
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
    started = time.perf_counter()
    scaling = scaling_table(marks, budget, tmp, have_optuna)
    window = min(100, marks[0])
    command = f"python benchmarks/overhead.py{' --quick' if args.quick else ''}" + (
        f" --budget {args.budget:g}" if args.budget else "")
    text = (f"# Study overhead\n\nRandom search, trivial objective; medians of {repeats} repeats, contenders in turn.\n"
            f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; {versions}; "
            f"Python {platform.python_version()}.\nCommand: `{command}`\n\n{table}\n\n"
            f"## Scaling with the study's size\n\n"
            f"Driver time per trial as the study grows: one study of {marks[-1]:,} trials per row and contender "
            f"(torchhpo first, then Optuna), random configs of a 1-parameter learning curve, {EPOCHS} reports per "
            f"trial (Optuna: `trial.report` + `should_prune`), the Inline executor. *ms per trial at m*: the mean over "
            f"the {window} trials before trial m (the time between trial starts: the driver, the scheduler, the "
            f"storage and a trivial objective). *last ÷ early*: the last {window} trials against trials "
            f"{window}–{2 * window}; flat means within 2×. *total*: the whole run; a run is stopped after "
            f"{budget:g} s (then the trials it ran are given). Single runs on a shared machine: expect noise of "
            f"±30%. The scaling section took {time.perf_counter() - started:.0f} s.\n\n{scaling}\n")
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


if __name__ == "__main__":
    main()
