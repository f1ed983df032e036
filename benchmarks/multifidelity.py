"""Multi-fidelity benchmark: pruning schedulers x searchers on tabulated curves (digits CNN / MLP, signals), one budget.

On a shipped table of learning curves (``--table digits_cnn``, the default: 1,000 Sobol configs of the digits CNN x
27 epochs; ``--table digits_mlp``: 1,000 configs of the digits MLP; ``--table signals_cnn``: 400 configs of a 1-D
CNN on generated signals x 81 epochs; or a file made by ``make_curves.py``) replayed with a simulated clock, every
method gets the same budget of epochs (40 full runs by default, 20 on signals_cnn) and many seeds:
random search at full budget; random search + SuccessiveHalving / Hyperband / ASHA / MedianStopping / Patience (alone
and with ASHA); GP +
Hyperband when ``torchhpo.gp`` is importable; Optuna's TPESampler + HyperbandPruner replaying the same table
when Optuna is installed. Reported: the best *fully trained* (27- or 81-epoch) validation loss against cumulative
epochs and simulated wall time (PNG), the epochs each method needs to reach full-budget random search's final median
best, configs tried, the test accuracy of the chosen config, and (on tables) the "winners" tried (configs whose
full training reaches the target) with the share the scheduler cut short. ``--real`` trains for real (smaller
scale).
Every searcher's proposals snap to the nearest unused table row; our searchers then see the row's config, while
Optuna's TPE keeps the config it suggested (its ask/tell API records its own suggestion), a small handicap.

    python benchmarks/multifidelity.py                  # table, 20 seeds (100..119), 1 simulated worker
    python benchmarks/multifidelity.py --slots 4        # 4 simulated workers (ASHA's setting)
    python benchmarks/multifidelity.py --table digits_mlp --min-epochs 3    # the second task
    python benchmarks/multifidelity.py --table signals_cnn --min-epochs 3   # the third: 20 full runs, rungs 3..81
    python benchmarks/multifidelity.py --real           # real training: 9 epochs, budget 12 full runs, 2 seeds
    python benchmarks/multifidelity.py --ask-tell       # every method through ask/tell: the same numbers
    python benchmarks/multifidelity.py --quick          # smoke run: 2 seeds, small budget, no GP/Optuna
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torchhpo as th
from torchhpo.problems import TASKS, digits_data, digits_space, evaluate, train_digits_cnn
from torchhpo.searchers import make_searcher
from torchhpo.simulate import Curves, Event, Simulated, Tabulated

RESULTS = Path(__file__).resolve().parent / "results"


class _Spent(Exception):
    """The epoch budget is used up (control flow of the benchmark)."""


class _Budget:
    """Executor wrapper: logs every report as an ``Event`` and ends the run once ``budget`` epochs are spent."""

    def __init__(self, inner: Any, budget: int, clock: Callable[[], float]) -> None:
        self.inner, self.budget, self.clock = inner, budget, clock
        self.slots, self.concurrent = inner.slots, inner.concurrent
        self.events: list[Event] = []
        self.running: set[int] = set()  # submitted and not yet back: at the end, the trials the budget cut

    def submit(self, fn: Any, trial: th.Trial, *, timeout: float | None = None) -> None:
        study_reporter = trial.reporter
        self.running.add(trial.number)

        def reporter(number: int, step: int, value: float) -> th.Decision:
            self.events.append(Event(self.clock(), len(self.events) + 1, number, step, value))
            return study_reporter(number, step, value)

        trial.reporter = reporter
        self.inner.submit(fn, trial, timeout=timeout)

    def wait(self, timeout: float | None = None) -> list[Any]:
        if len(self.events) >= self.budget:
            raise _Spent
        done = self.inner.wait(timeout)
        self.running.difference_update(o.number for o in done)
        return done

    def close(self) -> None:
        self.inner.close()


@dataclass
class Run:
    """One method x seed: its reports and, per trial number, the fully trained value and test accuracy."""

    events: list[Event]
    full: dict[int, tuple[float, float]]  # number -> (val loss after max_epochs, test accuracy)
    driver: tuple[float, float] | None = None  # real training: shares of wall time in searcher asks, outside training
    cost: float | None = None  # the scheduler's model: CPU seconds per decision (FreezeThaw's cpu_seconds)
    running: frozenset[int] = frozenset()  # trials still running when the budget ran out (several workers)


BUDGET = 40  # full runs
REAL_BUDGET = 12  # full runs of real training (--real): its default
BUDGETS = {"signals_cnn": 20}  # its 400 rows: pruning methods would use them all up within 40 full runs of 81 epochs
REFERENCE = "random (full budget)"  # its final median best is the target every method is timed to
SCREENED = 100  # the top-k baseline's cohort: configs trained one epoch before the top 1/max_epochs train fully


def methods(E: int, r: int, with_gp: bool) -> dict[str, tuple[Callable[[int], Any], Callable[[int], Any]]]:
    """Searcher and scheduler factories (of the seed) per method; ``r`` epochs at the first rung."""
    rand = lambda s: th.RandomSearch(seed=s)  # noqa: E731
    out = {
        REFERENCE: (rand, lambda s: None),
        "random + SHA": (rand, lambda s: th.SuccessiveHalving(r, E)),
        "random + Hyperband": (rand, lambda s: th.Hyperband(r, E)),
        "random + ASHA": (rand, lambda s: th.ASHA(r, E, seed=s)),
        "random + median": (rand, lambda s: th.MedianStopping(warmup_epochs=3, min_trials=5)),
        "random + patience": (rand, lambda s: th.Patience(8)),
        "random + patience + ASHA": (rand, lambda s: th.Schedulers([th.Patience(8), th.ASHA(r, E, seed=s)])),
        # Egele et al. 2023: train every config r epochs, keep the top k (SCREENED // (E // r) of each cohort)
        "random + top-k after 1st rung": (rand, lambda s: th.SuccessiveHalving(r, E, eta=max(2, E // r), n=SCREENED)),
        "random + freeze-thaw": (rand, lambda s: th.FreezeThaw(r, E)),
    }
    out["tpe + Hyperband"] = (lambda s: th.TPE(seed=s), lambda s: th.Hyperband(r, E))
    out["tpe + ASHA"] = (lambda s: th.TPE(seed=s), lambda s: th.ASHA(r, E, seed=s))
    out["tpe + freeze-thaw"] = (lambda s: th.TPE(seed=s), lambda s: th.FreezeThaw(r, E))
    if with_gp and importlib.util.find_spec("torchhpo.gp") is not None:
        out["gp + Hyperband"] = (lambda s: make_searcher("gp", seed=s), lambda s: th.Hyperband(r, E))
        out["gp + ASHA"] = (lambda s: make_searcher("gp", seed=s), lambda s: th.ASHA(r, E, seed=s))
        out["gp + freeze-thaw"] = (lambda s: make_searcher("gp", seed=s), lambda s: th.FreezeThaw(r, E))
        # the GP learns from the curve model's predicted finals instead of BOHB's rung rule
        out["gp + freeze-thaw (predicted finals)"] = (lambda s: make_searcher("gp", seed=s),
                                                     lambda s: th.FreezeThaw(r, E, predictions=True))
    return out


def run_table(curves: Curves, searcher: Any, scheduler: Any, seed: int, budget: int, slots: int) -> Run:
    E = curves.epochs
    sim = Simulated(curves, slots=slots)
    ex = _Budget(sim, budget, lambda: sim.clock)
    study = th.Study(curves.space, mode="min", searcher=Tabulated(curves, searcher), scheduler=scheduler,
                     seed=seed, max_epochs=E)
    try:
        study.optimize(None, n_trials=len(curves.configs), executor=ex, progress=False)
    except _Spent:
        pass
    rows = {t.number: curves.row(t.config) for t in study.trials}
    return Run(ex.events, {n: (float(curves.val_loss[r, -1]), float(curves.test_acc[r, -1])) for n, r in rows.items()},
               cost=_cost(scheduler), running=frozenset(ex.running))


def _cost(scheduler: Any) -> float | None:
    """CPU seconds per decision of a model-based scheduler (``FreezeThaw``), else ``None``."""
    decisions = getattr(scheduler, "decisions", 0)
    return scheduler.cpu_seconds / decisions if decisions else None


def run_table_ask_tell(curves: Curves, searcher: Any, scheduler: Any, seed: int, budget: int) -> Run:
    """``run_table`` with one worker, driven through ``study.ask``/``tell``/``settle`` as docs/ask-tell.md does:
    the same events and results as ``optimize`` on the simulated clock."""
    E = curves.epochs
    study = th.Study(curves.space, mode="min", searcher=Tabulated(curves, searcher), scheduler=scheduler,
                     seed=seed, max_epochs=E)
    events: list[Event] = []
    clock, spent, saved = 0.0, 0, {}

    def replay(trial: th.Trial) -> None:  # "trains" the trial from its table row, from where it stopped
        nonlocal clock, spent
        row = curves.row(trial.config)
        value = math.nan
        for epoch in range(saved.get(trial.number, 0), min(trial.max_epochs or E, E)):
            clock += float(curves.seconds[row, epoch])
            spent += 1
            value = float(curves.val_loss[row, epoch])
            if not math.isfinite(value):
                study.tell(trial, status=th.Status.FAILED, reason="the training diverged (tabulated)")
                return
            events.append(Event(clock, spent, trial.number, epoch + 1, value))
            saved[trial.number] = epoch + 1
            try:
                trial.report(value, step=epoch + 1)
            except th.TrialPruned:
                study.tell(trial, status=th.Status.PRUNED)
                return
            except th.TrialPaused:
                study.tell(trial, status=th.Status.PAUSED)
                return
            if trial.converged:  # Patience at a plateau: the trial completes here
                break
        study.tell(trial, value)

    new = 0
    while True:
        if new < len(curves.configs):
            trial = study.ask()
            new += not trial.resumed
        elif not (trials := study.settle(1)):
            break
        else:
            trial = trials[0]
        if len(events) >= budget:  # as _Budget: the next trial is asked, then the budget is found spent
            break
        replay(trial)
    rows = {t.number: curves.row(t.config) for t in study.trials}
    return Run(events, {n: (float(curves.val_loss[r, -1]), float(curves.test_acc[r, -1])) for n, r in rows.items()})


def run_optuna(curves: Curves, seed: int, budget: int, r: int) -> Run:
    """Optuna's TPESampler + HyperbandPruner replaying the table (one worker); suggestions snap to rows."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    E = curves.epochs
    # a fixed study name, because HyperbandPruner assigns brackets by crc32(study_name + number) and the default
    # name is random: two runs of one seed would differ (docs/experiments.md)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.HyperbandPruner(r, E, 3), study_name=f"replay-{seed}")
    snap, used, events, clock, full = Tabulated(curves), set(), [], 0.0, {}
    while len(events) < budget and len(used) < len(curves.configs):
        trial = study.ask()
        row = snap.snap(_suggest(trial, curves.space), used)
        used.add(row)
        full[trial.number] = (float(curves.val_loss[row, -1]), float(curves.test_acc[row, -1]))
        for e in range(E):
            clock += float(curves.seconds[row, e])
            value = float(curves.val_loss[row, e])
            events.append(Event(clock, len(events) + 1, trial.number, e + 1, value))
            trial.report(value, e + 1)
            if e + 1 < E and trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, value)
    return Run(events, full)


def _suggest(trial: Any, space: th.Space) -> dict[str, Any]:
    out = {}
    for name, p in space.params.items():
        if isinstance(p, th.Float):
            out[name] = trial.suggest_float(name, p.low, p.high, log=p.log)
        elif isinstance(p, th.Int):
            out[name] = trial.suggest_int(name, p.low, p.high, log=p.log)
        else:
            out[name] = trial.suggest_categorical(name, list(p.options))
    return out


class _TimedSearcher:
    """Searcher wrapper: the seconds spent in its asks (the model's share of a real run's wall time)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.seconds = inner, 0.0

    def ask(self, space: th.Space, trials: Any, n: int = 1) -> list[dict]:
        begin = time.perf_counter()
        try:
            return self.inner.ask(space, trials, n)
        finally:
            self.seconds += time.perf_counter() - begin


def train_real(config: dict, trial: th.Trial) -> float:
    """The digits CNN trained for real (``train_digits_cnn``); a fully trained trial stores its final validation
    loss and test accuracy (``trial.set_attr``), which reach the driver from a worker process too."""
    loss = train_digits_cnn(config, trial)
    if trial.max_epochs is not None and trial.last_step >= trial.max_epochs:  # its last checkpoint: the final model
        data = digits_data()
        model = TASKS["digits_cnn"].model(config)
        model.load_state_dict(trial.load()["model"])
        trial.set_attr("final", [loss, evaluate(model, data.X_test, data.y_test)[1]])
    return loss


class _Trained(_Budget):
    """``_Budget`` that also sums the seconds trials spent inside the training function (``Outcome.seconds``; a
    pruned or paused trial leaves by an exception, and its training counts too)."""

    def __init__(self, inner: Any, budget: int, clock: Callable[[], float]) -> None:
        super().__init__(inner, budget, clock)
        self.training = 0.0

    def wait(self, timeout: float | None = None) -> list[Any]:
        done = super().wait(timeout)
        self.training += sum(o.seconds for o in done)
        return done


def run_real(searcher: Any, scheduler: Any, seed: int, budget: int, E: int, executor: Any,
             prefetch: str = "auto") -> Run:
    """Real training of the digits CNN on ``executor`` (``Inline``, or one ``Processes`` worker whose start is
    not timed) with ``optimize(prefetch=...)``, wall clock; test accuracy of each fully trained trial; the shares
    of wall time spent in the driver's searcher asks (those in a model process are not counted: they overlap
    training) and with no trial training (the driver's own time: searcher, scheduler, storage, and with a worker
    the round trips to it)."""
    start = time.perf_counter()
    ex = _Trained(executor, budget, lambda: time.perf_counter() - start)
    timed = _TimedSearcher(searcher)
    study = th.Study(digits_space(), mode="min", searcher=timed, scheduler=scheduler, seed=seed, max_epochs=E)
    try:
        study.optimize(train_real, n_trials=10_000, executor=ex, progress=False, prefetch=prefetch)
    except _Spent:
        pass
    wall = time.perf_counter() - start
    test = {t.number: tuple(t.user_attrs["final"]) for t in study.trials if "final" in t.user_attrs}
    return Run(ex.events, test, (timed.seconds / wall, 1 - ex.training / wall))


def anytime(run: Run, E: int, budget: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Per completion within ``budget``: cumulative epochs, clock, best fully trained val loss; and the best's
    trial numbers."""
    epochs, clock, best, who, b = [], [], [], [], np.inf
    for ev in run.events:
        if ev.epochs > budget:
            break
        if ev.step == E and ev.number in run.full and run.full[ev.number][0] < b:
            b = run.full[ev.number][0]
            epochs.append(ev.epochs), clock.append(ev.clock), best.append(b), who.append(ev.number)
    return np.array(epochs), np.array(clock), np.array(best), who


def _last(best: np.ndarray) -> float:
    return float(best[-1]) if len(best) else np.inf


def _at(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(x, grid, side="right") - 1
    return np.where(idx >= 0, y[np.clip(idx, 0, None)] if len(y) else np.inf, np.inf)


def _reaches(loss: Any, target: float) -> Any:
    """Whether a validation loss (a float or an array) reaches the target: one definition for every column."""
    return loss <= target + 1e-12


def winners_cut(run: Run, E: int, budget: int, target: float) -> list[bool] | None:
    """For each "winner" tried (a config whose full training reaches ``target``, started with at least ``E``
    epochs of the budget left): was it cut short (stopped or left paused before ``E`` epochs)? A trial that was
    still running when the budget ran out (with several workers, the others spent its room) is the budget's cut,
    not the scheduler's, and is left out. A searcher that proposes winners early and a scheduler that cuts them are
    two different failures; this tells them apart.
    None when the run does not know every trial's fully trained value (real training)."""
    first: dict[int, int] = {}
    reached: dict[int, int] = {}
    for ev in run.events:
        if ev.epochs > budget:
            break
        first.setdefault(ev.number, ev.epochs)
        reached[ev.number] = max(reached.get(ev.number, 0), ev.step)
    if any(n not in run.full for n in first):
        return None
    return [reached[n] < E for n, e in first.items()
            if e <= budget - E + 1 and n not in run.running and _reaches(run.full[n][0], target)]


def _winners(counts: list[float], cut: int) -> str:
    if np.isnan(counts).any():
        return "-"
    return f"{np.median(counts):.0f} ({cut / max(sum(counts), 1):.0%})"


def report(runs: dict[str, list[Run]], E: int, budget: int, header: str, png: Path, first_rung: int,
           final_losses: np.ndarray | None = None) -> str:
    ref = REFERENCE
    real = all(r.driver is not None for rs in runs.values() for r in rs)
    finals = {m: [_last(anytime(run, E, budget)[2]) for run in rs] for m, rs in runs.items()}
    target = float(np.median(finals[ref]))
    lines = [header, "", f"Target: full-budget random search's final median best validation loss = {target:.4f}."]
    if final_losses is not None:  # what random sampling alone must pay, whatever prunes behind it
        p = float(np.mean(_reaches(final_losses, target)))
        n = np.log(2) / p if p else np.inf  # configs a random searcher draws for even odds of one hit
        lines.append(f"{p:.1%} of the table's configs reach it: a random searcher needs ~{n:.0f} configs for even "
                     f"odds of drawing one, so even a scheduler that ranked perfectly at a first rung of {first_rung} "
                     f"epoch(s) would spend ~{first_rung * n:.0f} epochs ({first_rung * n / budget:.2f} of the budget) "
                     "there before half the seeds had one; below that, the searcher has to aim." if p else
                     "No config of the table reaches it.")
    lines += ["",
             "| method | best val loss at 1/5 of the budget, median | final best val loss, median [IQR] | epochs to "
             "target, median (reached) | fraction of the budget | configs tried | test acc of chosen, median | "
             "simulated/wall s at budget | winners tried, median (share cut short) | model CPU s per decision, median |"
             + (" wall share in searcher asks / with no trial training, median |" if real else ""),
             "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if real else "")]
    need = {}
    for m, rs in runs.items():
        to, tried, acc, secs, winners, cut = [], [], [], [], [], 0
        for r in rs:
            w = winners_cut(r, E, budget, target)
            winners.append(np.nan if w is None else len(w))
            cut += sum(w or [])
            ep, _, best, who = anytime(r, E, budget)
            hit = np.nonzero(_reaches(best, target))[0]
            to.append(ep[hit[0]] if len(hit) else np.inf)
            tried.append(len({ev.number for ev in r.events if ev.epochs <= budget}))
            acc.append(r.full[who[-1]][1] if who else np.nan)
            secs.append(max((ev.clock for ev in r.events if ev.epochs <= budget), default=0.0))
        need[m] = float(np.median(to))
        q = np.quantile(finals[m], [0.25, 0.5, 0.75])
        reached = sum(np.isfinite(to))
        fifth = np.median([_last(anytime(r, E, budget // 5)[2]) for r in rs])
        costs = [r.cost for r in rs if r.cost is not None]
        lines.append(f"| {m} | {fifth:.4f} | {q[1]:.4f} [{q[0]:.4f}, {q[2]:.4f}] | "
                     f"{'>' + str(budget) if not np.isfinite(need[m]) else f'{need[m]:.0f}'} ({reached}/{len(rs)}) | "
                     f"{need[m] / budget:.2f} | {np.median(tried):.0f} | {np.nanmedian(acc):.4f} | "
                     f"{np.median(secs):.0f} | {_winners(winners, cut)} | "
                     f"{f'{np.median(costs):.3f}' if costs else '-'} |" + (
                         f" {np.median([r.driver[0] for r in rs]):.1%} / {np.median([r.driver[1] for r in rs]):.1%} |"
                         if real else ""))
    plot(runs, E, budget, png)
    return "\n".join(lines)


def plot(runs: dict[str, list[Run]], E: int, budget: int, path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    grid = np.linspace(1, budget, 200)
    tmax = max(max((ev.clock for ev in r.events if ev.epochs <= budget), default=1.0) for rs in runs.values()
               for r in rs)
    tgrid = np.linspace(0, tmax, 200)
    for m, rs in runs.items():
        curves = [anytime(r, E, budget) for r in rs]
        for ax, g, k in ((axes[0], grid, 0), (axes[1], tgrid, 1)):
            ys = np.median([_at(c[k], c[2], g) for c in curves], axis=0)
            ax.plot(g, np.where(np.isfinite(ys), ys, np.nan), label=m)
    axes[0].set_xlabel("cumulative epochs")
    axes[1].set_xlabel("simulated wall time (s)")
    for ax in axes:
        ax.set_ylabel("best fully trained val loss (median over seeds)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=None, help="seeds 100.. (default 20; 2 with --real)")
    p.add_argument("--budget", type=int, default=None,
                   help=f"total epochs, in full runs (default {BUDGET}; "
                   + "; ".join(f"{n} on {t}" for t, n in BUDGETS.items()) + f"; {REAL_BUDGET} with --real)")
    p.add_argument("--slots", type=int, default=1, help="simulated workers")
    p.add_argument("--min-epochs", type=int, default=1, help="epochs at the first rung")
    p.add_argument("--real", action="store_true", help="real training (9 epochs, budget 12 full runs by default)")
    p.add_argument("--worker", action="store_true",
                   help="with --real: train in one worker process (Processes), the searcher asks meanwhile")
    p.add_argument("--prefetch", default="auto", choices=["auto", "thread", "process", "off"],
                   help="with --real: optimize(prefetch=...), where the next configs are proposed during training")
    p.add_argument("--table", default="digits_cnn", help="a shipped table (digits_cnn, digits_mlp, signals_cnn) or a curves file")
    p.add_argument("--methods", default=None, help="comma-separated subset of the methods (default: all)")
    p.add_argument("--tag", default="", help="suffix of the result files, for a partial run")
    p.add_argument("--ask-tell", action="store_true", help="drive every method through ask/tell (1 worker, tables)")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    if a.ask_tell and (a.real or a.slots != 1):
        p.error("--ask-tell drives one simulated worker on a table: drop --real and --slots")
    if (a.worker or a.prefetch != "auto") and not a.real:
        p.error("--worker and --prefetch are for --real: simulated runs have no wall time to overlap")
    keep = None if a.methods is None else {m.strip() for m in a.methods.split(",")}

    def chosen(table: dict[str, Any]) -> dict[str, Any]:  # the reference method always runs: it sets the target
        return {m: v for m, v in table.items() if keep is None or m in keep or m == REFERENCE}

    torch.set_num_threads(1)
    seeds = list(range(100, 100 + (2 if a.quick else a.seeds or (2 if a.real else 20))))
    start = time.time()
    meta = (f"torch {torch.__version__}, numpy {np.__version__}, python {platform.python_version()}, "
            f"{platform.platform()}, seeds {seeds[0]}..{seeds[-1]}")
    runs: dict[str, list[Run]] = {}
    if a.real:
        E, budget = (3, 4 * 3) if a.quick else (9, (a.budget or REAL_BUDGET) * 9)
        executor = th.Processes(devices=["cpu"]) if a.worker else th.Inline("cpu")
        try:
            for m, (searcher, sched) in chosen(methods(E, a.min_epochs, with_gp=not a.quick)).items():
                runs[m] = [run_real(searcher(s), sched(s), s, budget, E, executor, a.prefetch) for s in seeds]
        finally:
            executor.close()
        name = ("multifidelity_real" + ("_worker" if a.worker else "")
                + ("" if a.prefetch == "auto" else f"_prefetch_{a.prefetch}") + a.tag + ("_quick" if a.quick else ""))
        header = (f"## Multi-fidelity, real training of the digits CNN ({E} epochs max, budget {budget} epochs "
                  f"= {budget // E} full runs, {executor!r}, prefetch={a.prefetch!r}, wall clock)\n\n{meta}")
    else:
        curves = Curves.load(a.table)
        E = curves.epochs
        budget = (6 if a.quick else a.budget or BUDGETS.get(a.table, BUDGET)) * E
        for m, (searcher, sched) in chosen(methods(E, a.min_epochs, with_gp=not a.quick)).items():
            if a.ask_tell:
                runs[m] = [run_table_ask_tell(curves, searcher(s), sched(s), s, budget) for s in seeds]
            else:
                runs[m] = [run_table(curves, searcher(s), sched(s), s, budget, a.slots) for s in seeds]
        optuna_wanted = keep is None or "optuna TPE + HyperbandPruner" in keep
        if not a.quick and a.slots == 1 and optuna_wanted and importlib.util.find_spec("optuna") is not None:
            runs["optuna TPE + HyperbandPruner"] = [run_optuna(curves, s, budget, a.min_epochs) for s in seeds]
        task = curves.meta.get("task", "digits_cnn")
        table = "" if task == "digits_cnn" else f"_{task}"  # the first table's files keep their names
        name = f"multifidelity_table{table}_slots{a.slots}_min{a.min_epochs}{a.tag}" + ("_quick" if a.quick else "")
        header = (f"## Multi-fidelity on the tabulated {task} curves ({len(curves.configs)} configs x {E} "
                  f"epochs; budget {budget} epochs = {budget // E} full runs; {a.slots} simulated worker(s); "
                  f"first rung {a.min_epochs} epoch(s), eta 3)\n\n"
                  f"{meta}; table made with {curves.meta.get('torch', '?')}")
    out = Path(tempfile.mkdtemp()) if a.quick or a.ask_tell else RESULTS  # published results: optimize's
    losses = None if a.real else curves.val_loss[:, -1]
    text = (report(runs, E, budget, header, out / f"{name}.png", a.min_epochs, losses)
            + f"\n\n({time.time() - start:.0f} s to run)\n")
    print(text)
    out.mkdir(exist_ok=True)
    (out / f"{name}.md").write_text(text)


if __name__ == "__main__":
    main()
