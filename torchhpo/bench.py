"""Benchmark problems with known optima and ``compare``: searchers side by side, with a table and a plot.

Every problem is **minimized**; the metric is the simple regret ``best value found - optimum``, floored at
1e-12 and shown as log10 (lower is better). Peers from other libraries (Optuna's samplers, a plain BoTorch loop)
plug in as objects with ``run(problem, budget, seed) -> Run``; the repository's ``benchmarks/peers.py`` has them.

Example:
    >>> import torchhpo as th
    >>> res = compare({"random": th.RandomSearch(), "sobol": th.Sobol()}, problems=["branin"], budget=5, seeds=2)
    >>> "mean rank" in res.table()
    True
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from torchhpo.checks import integer
from torchhpo.space import Choice, Config, Float, Int, Space
from torchhpo.trial import Status, TrialRecord

__all__ = ["PROBLEMS", "Problem", "Results", "Run", "compare"]

FLOOR = 1e-12
SKIP = 10  # suggestions left out of the timing column, so that it times the model, not the (free) initial design


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
    """One optimizer on one problem and seed: the values in evaluation order and CPU seconds per suggestion."""

    values: list[float]
    seconds: list[float]


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


@dataclass
class Results:
    """Runs by ``(optimizer, problem, seed)``, with optima; ``table()`` and ``plot()`` report them."""

    runs: dict[tuple[str, str, int], Run] = field(default_factory=dict)
    optima: dict[str, float] = field(default_factory=dict)

    def regret(self, key: tuple[str, str, int]) -> np.ndarray:
        """log10 simple regret after each evaluation (floored at 1e-12)."""
        best = np.minimum.accumulate(np.asarray(self.runs[key].values, dtype=float))
        return np.log10(np.maximum(best - self.optima[key[1]], FLOOR))

    def _names(self) -> tuple[list[str], list[str]]:
        opts = list(dict.fromkeys(k[0] for k in self.runs))
        probs = list(dict.fromkeys(k[1] for k in self.runs))
        return opts, probs

    def ranks(self) -> dict[str, float]:
        """Mean rank of each optimizer over every (problem, seed) it ran (1 is best; ties share)."""
        from scipy.stats import rankdata

        opts, probs = self._names()
        got: dict[str, list[float]] = {o: [] for o in opts}
        for p in probs:
            for s in sorted({k[2] for k in self.runs if k[1] == p}):
                here = [o for o in opts if (o, p, s) in self.runs]
                r = rankdata([self.regret((o, p, s))[-1] for o in here])
                for o, v in zip(here, r, strict=True):
                    got[o].append(float(v))
        return {o: float(np.mean(v)) for o, v in got.items()}

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

    def plot(self, path: str, problem: str | None = None) -> None:
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


def compare(optimizers: Mapping[str, Any], problems: Sequence[str | Problem] = ("branin", "hartmann6"),
            budget: int = 50, seeds: int | Sequence[int] = 10) -> Results:
    """Run each optimizer on each problem for each seed.

    Args:
        optimizers: name -> a searcher (copied for each run, its ``seed`` set to the run's), a peer with
            ``run(problem, budget, seed) -> Run`` (e.g. ``benchmarks/peers.py``'s Optuna samplers), or a callable
            ``seed -> searcher``.
        problems: names in ``PROBLEMS`` or ``Problem`` objects.
        budget: evaluations per run.
        seeds: a count (seeds ``0 .. seeds - 1``) or the seeds themselves.
    """
    integer("compare: budget", budget)
    seed_list = list(range(integer("compare: seeds", seeds))) if isinstance(seeds, int) else list(seeds)
    res = Results()
    for spec in problems:
        if isinstance(spec, str) and spec not in PROBLEMS:
            raise ValueError(f"compare: problem {spec!r} is unknown; choose from {sorted(PROBLEMS)}")
        problem = PROBLEMS[spec] if isinstance(spec, str) else spec
        res.optima[problem.name] = problem.optimum
        for name, opt in optimizers.items():
            for seed in seed_list:
                res.runs[(name, problem.name, seed)] = _run_one(opt, problem, budget, seed)
    return res


def _run_one(opt: Any, problem: Problem, budget: int, seed: int) -> Run:
    if callable(getattr(opt, "run", None)):
        return opt.run(problem, budget, seed)
    if callable(getattr(opt, "ask", None)):
        searcher = copy.deepcopy(opt)
        if hasattr(searcher, "seed"):
            searcher.seed = seed
        return run_searcher(searcher, problem, budget)
    if callable(opt):
        return run_searcher(opt(seed), problem, budget)
    raise TypeError(f"compare: an optimizer must be a searcher, a peer with run() or a callable, got {opt!r}")


def __getattr__(name: str) -> Any:
    """Name where the peers went: they are benchmark code, so they live beside the benchmark scripts."""
    if name in ("OptunaPeer", "BoTorchLoop"):
        raise AttributeError(f"torchhpo.bench.{name} moved to benchmarks/peers.py in the torchhpo repository "
                             "(benchmark code, not part of the installed package)")
    raise AttributeError(f"module 'torchhpo.bench' has no attribute {name!r}")
