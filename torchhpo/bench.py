"""Benchmark problems with known optima and ``compare``: searchers side by side, with a table and plots.

Every problem is **minimized**; the metric is the simple regret ``best value found - optimum``, floored at
1e-12 and shown as log10 (lower is better). ``SEARCHERS`` names the searchers a benchmark usually compares
(``"gp-logei"``, ``"tpe"``, ``"optuna-gp"``, ...); peers from other libraries plug in as objects with
``run(problem, budget, seed) -> Run`` (``OptunaPeer`` here, a plain BoTorch loop in ``benchmarks/peers.py``).
``compare`` runs them in worker processes (``workers=``), with a progress bar, and keeps every finished run in a
JSON file (``out=``) that a rerun resumes; ``torchhpo bench`` is its command line (docs/benchmarking.md).

Example:
    >>> import torchhpo as th
    >>> res = compare({"random": th.RandomSearch(), "sobol": th.Sobol()}, problems=["branin"], budget=5, seeds=2)
    >>> "mean rank" in res.table()
    True
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import datetime
import gzip
import logging
import math
import multiprocessing as mp
import os
import platform
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from torchhpo.checks import integer
from torchhpo.space import Choice, Config, Float, Int, Space
from torchhpo.trial import Status, TrialRecord

__all__ = ["OptunaPeer", "PROBLEMS", "Problem", "Results", "Run", "SEARCHERS", "compare", "optuna_distributions", "searchers"]

FLOOR = 1e-12
SKIP = 10  # suggestions left out of the timing column, so that it times the model, not the (free) initial design
RESULTS_FILE = "results.json"  # what compare(out=...) keeps in its folder, rewritten after each run


@dataclass(frozen=True)
class Problem:
    """A function to minimize over ``space`` with known minimum ``optimum``."""

    name: str
    space: Space
    fn: Callable[[Config], float]
    optimum: float


def _branin(c: Config) -> float:
    x1, x2 = c["x1"], c["x2"]
    b, cc, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + cc * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


_H_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8],
                 [17, 8, 0.05, 10, 0.1, 14]])
_H_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                        [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def _hartmann6(c: Config) -> float:
    x = np.array([c[f"x{i}"] for i in range(6)])
    return float(-(_H_ALPHA * np.exp(-(_H_A * (x - _H_P) ** 2).sum(axis=1))).sum())


def _ackley(c: Config) -> float:
    x = np.array([c[f"x{i}"] for i in range(len(c))])
    d = len(x)
    return float(-20 * math.exp(-0.2 * math.sqrt((x**2).sum() / d)) - math.exp(np.cos(2 * math.pi * x).sum() / d)
                 + 20 + math.e)


_MIX_CENTRE = {"sgd": -1.5, "adam": -3.0, "rmsprop": -2.5}  # log10 of the best lr for each optimizer
_MIX_OFFSET = {"sgd": 0.3, "adam": 0.0, "rmsprop": 0.15}


def _mixed(c: Config) -> float:
    """A made-up "training loss": each optimizer has its own best learning rate; 6 layers and momentum 0.8 best."""
    o = c["optimizer"]
    return ((math.log10(c["lr"]) - _MIX_CENTRE[o]) ** 2 + 0.05 * (c["layers"] - 6) ** 2
            + 2.0 * (c["momentum"] - 0.8) ** 2 + _MIX_OFFSET[o])


PROBLEMS: dict[str, Problem] = {
    "branin": Problem("branin", Space({"x1": Float(-5.0, 10.0), "x2": Float(0.0, 15.0)}), _branin, 0.397887357729739),
    "hartmann6": Problem("hartmann6", Space({f"x{i}": Float(0.0, 1.0) for i in range(6)}), _hartmann6,
                         -3.322368011391339),
    "ackley5": Problem("ackley5", Space({f"x{i}": Float(-32.768, 32.768) for i in range(5)}), _ackley, 0.0),
    "mixed": Problem("mixed", Space({"lr": Float(1e-5, 1.0, log=True), "layers": Int(1, 12),
                                     "optimizer": Choice(["sgd", "adam", "rmsprop"]), "momentum": Float(0.0, 1.0)}),
                     _mixed, 0.0),
}


@dataclass
class Run:
    """One optimizer on one problem and seed: the values in evaluation order, CPU seconds per suggestion, and how
    many warnings of each category the run raised or logged (counted by ``compare``, not printed)."""

    values: list[float]
    seconds: list[float]
    warnings: dict[str, int] = field(default_factory=dict)


def run_searcher(searcher: Any, problem: Problem, budget: int) -> Run:
    """Ask one config at a time and evaluate it; the searcher sees every trial (score = -value). The seconds are
    the CPU time of each ``ask``, measured here so that any searcher is timed alike."""
    trials: list[TrialRecord] = []
    values, seconds = [], []
    for i in range(budget):
        t0 = time.process_time()
        config = searcher.ask(problem.space, trials, 1)[0]
        seconds.append(time.process_time() - t0)
        values.append(problem.fn(config))
        trials.append(TrialRecord(i, config, Status.COMPLETED, values[-1], sign=-1))
    return Run(values, seconds)


Key = tuple[str, str, int]  # (optimizer, problem, seed)


@dataclass
class Results:
    """Runs by ``(optimizer, problem, seed)``, with optima; ``table()``, ``plot()`` and ``markdown()`` report them,
    ``save``/``load`` keep them as JSON. ``reused``: how many runs ``compare(out=...)`` took from its file."""

    runs: dict[Key, Run] = field(default_factory=dict)
    optima: dict[str, float] = field(default_factory=dict)
    reused: int = 0

    def regret(self, key: Key) -> np.ndarray:
        """log10 simple regret after each evaluation (floored at 1e-12)."""
        best = np.minimum.accumulate(np.asarray(self.runs[key].values, dtype=float))
        return np.log10(np.maximum(best - self.optima[key[1]], FLOOR))

    def _names(self) -> tuple[list[str], list[str]]:
        opts = list(dict.fromkeys(k[0] for k in self.runs))
        probs = list(dict.fromkeys(k[1] for k in self.runs))
        return opts, probs

    def ranks(self) -> dict[str, float]:
        """Mean rank of each optimizer (1 is best): 1 plus, for every other optimizer, the share of the (problem,
        seed) runs both made where the other ended with the lower regret (ties count half). With every optimizer on
        the same seeds this is the plain mean rank per (problem, seed); when a cheap optimizer ran more seeds, each
        pair is still compared on the seeds both ran, so no row is ranked against a smaller field."""
        opts, _ = self._names()
        final = {k: self.regret(k)[-1] for k in self.runs}
        out = {}
        for o in opts:
            rank = 1.0
            for q in opts:
                both = [(p, s) for (a, p, s) in self.runs if a == o and (q, p, s) in self.runs] if q != o else []
                if both:
                    rank += float(np.mean([(final[(q, p, s)] < final[(o, p, s)]) + 0.5 * (final[(q, p, s)] ==
                                           final[(o, p, s)]) for p, s in both]))
            out[o] = rank
        return out

    def table(self) -> str:
        """Markdown: median [IQR] of final log10 regret per problem, mean rank, median CPU s per suggestion
        (suggestions 11 onwards, after every method's initial design)."""
        opts, probs = self._names()
        ranks = self.ranks()
        lines = ["| optimizer | " + " | ".join(probs) + " | mean rank | CPU s / suggestion | seeds |",
                 "|---" * (len(probs) + 4) + "|"]
        for o in sorted(opts, key=lambda o: ranks[o]):
            cells = []
            for p in probs:
                final = [self.regret(k)[-1] for k in self.runs if k[0] == o and k[1] == p]
                q1, med, q3 = np.percentile(final, [25, 50, 75]) if final else (np.nan,) * 3
                cells.append(f"{med:.2f} [{q1:.2f}, {q3:.2f}]")
            secs = [s for k, r in self.runs.items() if k[0] == o for s in r.seconds[SKIP:] or r.seconds]
            seeds = len({k[2] for k in self.runs if k[0] == o})
            lines.append(f"| {o} | " + " | ".join(cells) + f" | {ranks[o]:.2f} | {np.median(secs):.3f} | {seeds} |")
        return "\n".join(lines)

    def warning_summary(self) -> list[str]:
        """One line per warning category the runs raised or logged: its count and in how many runs."""
        total: Counter[str] = Counter()
        runs: Counter[str] = Counter()
        for r in self.runs.values():
            total.update(r.warnings)
            runs.update(r.warnings.keys())
        order = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))  # most first; ties by name, as stable text
        return [f"{name}: {n} in {runs[name]} of {len(self.runs)} runs" for name, n in order]

    def markdown(self, command: str) -> str:
        """A report page: what ran (``command``, date, versions, budget, seeds), the table, the warnings."""
        import torch

        by_opt = {o: sorted({k[2] for k in self.runs if k[0] == o}) for o in self._names()[0]}
        budgets = sorted({len(r.values) for r in self.runs.values()})
        lines = self.warning_summary() or ["none"]
        return (f"# Benchmark\n\n- command: `{command}`\n"
                f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: "
                f"{platform.machine()}, {os.cpu_count()} CPUs; python {platform.python_version()}, torch "
                f"{torch.__version__}\n"
                f"- budget {', '.join(map(str, budgets))} evaluations, minimize; seeds: "
                + ", ".join(f"{o} {s[0]}..{s[-1]}" for o, s in by_opt.items()) + "\n"
                "- cells: median [IQR] of final log10 simple regret (floored at 1e-12); lower is better\n\n"
                + self.table() + "\n\n## Warnings (counted, not printed)\n\n" + "".join(f"- {w}\n" for w in lines))

    def plot(self, path: str | Path, problem: str | None = None) -> None:
        """Median log10 regret against evaluations (IQR shaded), one panel per problem, saved as a PNG."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as e:
            raise ImportError("Results.plot needs matplotlib: pip install 'torchhpo[plot]'") from e
        opts, probs = self._names()
        probs = [problem] if problem else probs
        fig, axes = plt.subplots(1, len(probs), figsize=(5 * len(probs), 3.6), squeeze=False)
        for ax, p in zip(axes[0], probs, strict=True):
            for o in opts:
                curves = [self.regret(k) for k in self.runs if k[0] == o and k[1] == p]
                if not curves:
                    continue
                C = np.stack(curves)
                x = np.arange(1, C.shape[1] + 1)
                ax.plot(x, np.median(C, axis=0), label=o)
                ax.fill_between(x, *np.percentile(C, [25, 75], axis=0), alpha=0.15)
            ax.set(title=p, xlabel="evaluations", ylabel="log10 regret (median, IQR)")
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    def save(self, path: str | Path) -> None:
        """Write the runs as JSON (``{"optima": ..., "runs": [[optimizer, problem, seed, values, seconds,
        warnings], ...]}``), gzipped when ``path`` ends in ``.gz`` (thousands of runs), replacing the file in one
        step so that an interrupted write never leaves half of it."""
        import json

        rows = [[*k, r.values, r.seconds, r.warnings] for k, r in self.runs.items()]
        tmp = Path(f"{path}.tmp")
        text = json.dumps({"optima": self.optima, "runs": rows}).encode()
        tmp.write_bytes(gzip.compress(text, mtime=0) if str(path).endswith(".gz") else text)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> Results:
        """The runs ``save`` wrote (rows without warning counts, as older files have, count none)."""
        import json

        data = Path(path).read_bytes()
        d = json.loads(gzip.decompress(data) if str(path).endswith(".gz") else data)
        runs = {(o, p, int(s)): Run(v, t, rest[0] if rest else {}) for o, p, s, v, t, *rest in d["runs"]}
        return cls(runs, d["optima"])


class OptunaPeer:
    """Optuna's ``GPSampler`` (``sampler="gp"``) or ``TPESampler`` (``"tpe"``) through ask-and-tell; the CPU
    seconds of each ``ask`` are timed as ``run_searcher`` times torchhpo's searchers."""

    def __init__(self, sampler: str = "gp") -> None:
        if sampler not in ("gp", "tpe"):
            raise ValueError(f"OptunaPeer: sampler={sampler!r} must be 'gp' or 'tpe'")
        self.sampler = sampler

    def run(self, problem: Problem, budget: int, seed: int) -> Run:
        try:
            import optuna
        except ImportError as e:
            raise ImportError("OptunaPeer needs optuna: pip install 'torchhpo[bench]'") from e
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        make = optuna.samplers.GPSampler if self.sampler == "gp" else optuna.samplers.TPESampler
        study = optuna.create_study(sampler=make(seed=seed), direction="minimize")
        dists = optuna_distributions(problem.space)
        values, seconds = [], []
        for _ in range(budget):
            t0 = time.process_time()
            trial = study.ask(dists)
            seconds.append(time.process_time() - t0)
            values.append(problem.fn(dict(trial.params)))
            study.tell(trial, values[-1])
        return Run(values, seconds)


def optuna_distributions(space: Space) -> dict[str, Any]:
    """Optuna's distribution for each parameter of ``space``."""
    import optuna.distributions as od

    def one(p: Any) -> Any:
        if isinstance(p, Float):
            return od.FloatDistribution(p.low, p.high, log=p.log)
        if isinstance(p, Int):
            return od.IntDistribution(p.low, p.high, log=p.log, step=p.step)
        return od.CategoricalDistribution(p.options)

    return {name: one(p) for name, p in space.params.items()}


def _named(name: str, **options: Any) -> Callable[[], Any]:
    """A maker of torchhpo's searcher ``name`` (imported when made: BoTorch loads only for a GP)."""
    def make() -> Any:
        from torchhpo.searchers import make_searcher

        return make_searcher(name, **options)

    return make


# name -> a fresh searcher or peer (``compare`` sets each run's seed); the GP rows are benchmarks/bbo.py's
SEARCHERS: dict[str, Callable[[], Any]] = {
    "gp-logei": _named("gp", acquisition="logei"),
    "gp-qlognei": _named("gp", acquisition="qlognei"),
    "gp-ucb": _named("gp", acquisition="ucb", beta=2.0),
    "gp-ts": _named("gp", acquisition="ts"),
    "tpe": _named("tpe"),
    "random": _named("random"),
    "sobol": _named("sobol"),
    "optuna-tpe": lambda: OptunaPeer("tpe"),
    "optuna-gp": lambda: OptunaPeer("gp"),
}


def searchers(names: Sequence[str]) -> dict[str, Any]:
    """``{name: searcher}`` for names in ``SEARCHERS`` (``ValueError`` naming the known ones otherwise)."""
    unknown = [n for n in names if n not in SEARCHERS]
    if unknown:
        raise ValueError(f"unknown searcher {unknown[0]!r}; choose from {list(SEARCHERS)}")
    return {n: SEARCHERS[n]() for n in names}


def compare(optimizers: Mapping[str, Any] | Sequence[str], problems: Sequence[str | Problem] = ("branin", "hartmann6"),
            budget: int = 50, seeds: int | Sequence[int] = 10, *, workers: int = 1, progress: bool = False,
            out: str | Path | None = None) -> Results:
    """Run each optimizer on each problem for each seed.

    Args:
        optimizers: names in ``SEARCHERS``, or name -> a searcher (copied for each run, its ``seed`` set to the
            run's), a peer with ``run(problem, budget, seed) -> Run`` (e.g. ``OptunaPeer``), or a callable
            ``seed -> searcher``.
        problems: names in ``PROBLEMS`` or ``Problem`` objects.
        budget: evaluations per run.
        seeds: a count (seeds ``0 .. seeds - 1``) or the seeds themselves.
        workers: worker processes that run the ``(optimizer, problem, seed)`` runs side by side, each with one
            torch thread (they are started with ``spawn``: a script calling this needs an
            ``if __name__ == "__main__":`` guard); 1 runs them here, one after another.
        progress: one progress bar over all runs.
        out: a folder: every finished run goes to its ``results.json`` as it finishes, and runs already there
            (same optimizer name, problem, seed and budget) are reused instead of run again (``Results.reused``
            counts them). The file keeps the runs of other optimizers and problems it holds.

    Warnings (BoTorch's numerical and input-data warnings, linear_operator's jitter, logged ones) are counted per
    run in ``Run.warnings`` instead of printed; ``Results.warning_summary()`` sums them.
    """
    integer("compare: budget", budget)
    integer("compare: workers", workers)
    seed_list = list(range(integer("compare: seeds", seeds))) if isinstance(seeds, int) else list(seeds)
    opts = searchers(optimizers) if not isinstance(optimizers, Mapping) else dict(optimizers)
    for name, opt in opts.items():
        if not any(callable(getattr(opt, a, None)) for a in ("run", "ask")) and not callable(opt):
            raise TypeError(f"compare: optimizer {name!r} must be a searcher, a peer with run() or a callable, "
                            f"got {opt!r}")
    probs = []
    for spec in problems:
        if isinstance(spec, str) and spec not in PROBLEMS:
            raise ValueError(f"compare: problem {spec!r} is unknown; choose from {sorted(PROBLEMS)}")
        probs.append(PROBLEMS[spec] if isinstance(spec, str) else spec)
    path = None if out is None else Path(out) / RESULTS_FILE
    kept = Results.load(path) if path is not None and path.exists() else Results()
    kept.optima |= {p.name: p.optimum for p in probs}
    keys = [(o, p.name, s) for p in probs for o in opts for s in seed_list]
    todo = [k for k in keys if k not in kept.runs or len(kept.runs[k].values) != budget]
    problem_of = {p.name: p for p in probs}
    jobs = {k: (opts[k[0]], problem_of[k[1]], budget, k[2]) for k in todo}
    from tqdm.auto import tqdm

    with tqdm(total=len(keys), initial=len(keys) - len(todo), desc="runs", unit="run", disable=not progress,
              dynamic_ncols=True) as bar:
        for key, run in _runs(jobs, workers):
            kept.runs[key] = run
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                kept.save(path)
            bar.update()
    return Results({k: kept.runs[k] for k in keys}, {p.name: p.optimum for p in probs}, len(keys) - len(todo))


def _runs(jobs: dict[Key, tuple[Any, Problem, int, int]], workers: int) -> Iterator[tuple[Key, Run]]:
    """Each job's run as it finishes: here in order with one worker, else in ``workers`` spawned processes (the
    jobs travel with cloudpickle, so lambdas and local problems do too)."""
    if workers == 1 or not jobs:
        for key, job in jobs.items():
            yield key, _run_one(*job)
        return
    import cloudpickle

    pool = cf.ProcessPoolExecutor(min(workers, len(jobs)), mp_context=mp.get_context("spawn"),
                                  initializer=_one_thread)
    try:
        futures = {pool.submit(_run_pickled, cloudpickle.dumps(job)): key for key, job in jobs.items()}
        for future in cf.as_completed(futures):
            yield futures[future], future.result()
    finally:
        pool.shutdown(cancel_futures=True)  # an error or an interrupt: the queued runs never start


def _one_thread() -> None:
    """A worker's torch threads: one, since the workers already share the cores."""
    import torch

    torch.set_num_threads(1)


def _run_pickled(blob: bytes) -> Run:
    import cloudpickle

    return _run_one(*cloudpickle.loads(blob))


def _run_one(opt: Any, problem: Problem, budget: int, seed: int) -> Run:
    counts: Counter[str] = Counter()
    with _counting(counts):
        if callable(getattr(opt, "run", None)):
            run = opt.run(problem, budget, seed)
        elif callable(getattr(opt, "ask", None)):
            searcher = copy.deepcopy(opt)
            if hasattr(searcher, "seed"):
                searcher.seed = seed
            run = run_searcher(searcher, problem, budget)
        else:
            run = run_searcher(opt(seed), problem, budget)
    run.warnings = dict(counts)
    return run


class _CountLogged(logging.Handler):
    def __init__(self, counts: Counter[str]) -> None:
        super().__init__(logging.WARNING)
        self.counts = counts

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[f"logged by {record.name}"] += 1


@contextmanager
def _counting(counts: Counter[str]) -> Iterator[None]:
    """Count the warnings raised and logged inside (by category: ``"NumericalWarning (linear_operator)"``)
    instead of letting the same few print hundreds of times over a benchmark. Handlers the user configured still
    get the logged ones; Python's last-resort printing to stderr does not."""
    handler = _CountLogged(counts)
    root = logging.getLogger()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        root.addHandler(handler)
        try:
            yield
        finally:
            root.removeHandler(handler)
    for w in caught:
        package = w.category.__module__.split(".")[0]
        counts[w.category.__name__ if package == "builtins" else f"{w.category.__name__} ({package})"] += 1


def __getattr__(name: str) -> Any:
    """Name where the plain BoTorch loop went: it is benchmark code, so it lives beside the benchmark scripts."""
    if name == "BoTorchLoop":
        raise AttributeError("torchhpo.bench.BoTorchLoop moved to benchmarks/peers.py in the torchhpo repository "
                             "(benchmark code, not part of the installed package)")
    raise AttributeError(f"module 'torchhpo.bench' has no attribute {name!r}")
