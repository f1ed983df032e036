"""Model-free searchers: grid, random and quasi-random (Sobol), and the ``Searcher`` contract.

A searcher proposes a batch of configs from the whole history (running trials included, as pending points). It
is correct from history alone: the same seed and the same history give the same configs, so a resumed study
goes on where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from torchhpo.space import Config, Space
from torchhpo.trial import Status, TrialRecord

__all__ = ["GridSearch", "RandomSearch", "Searcher", "Sobol", "make_searcher", "observations"]


@runtime_checkable
class Searcher(Protocol):
    """Propose ``n`` configs given every trial so far (RUNNING ones are pending). Fewer than ``n`` (or none)
    means the search space is exhausted."""

    def ask(self, space: Space, trials: Sequence[TrialRecord], n: int = 1) -> list[Config]: ...


def _fresh_seed(seed: int | None) -> int:
    return int(np.random.SeedSequence(seed).generate_state(1)[0]) if seed is None else int(seed)


class RandomSearch:
    """Independent uniform draws (log-uniform on log scales).

    Args:
        seed: seeds the draws; with the same seed and history, the same configs come out.

    Example:
        >>> from torchhpo.space import Float, Space
        >>> RandomSearch(seed=0).ask(Space({"x": Float(0, 1)}), [], n=2) == RandomSearch(seed=0).ask(
        ...     Space({"x": Float(0, 1)}), [], n=2)
        True
    """

    def __init__(self, *, seed: int | None = None) -> None:
        self.seed = _fresh_seed(seed)

    def ask(self, space: Space, trials: Sequence[TrialRecord], n: int = 1) -> list[Config]:
        return space.sample(n, seed=np.random.SeedSequence([self.seed, len(trials)]))


class Sobol:
    """A scrambled Sobol sequence: spreads points more evenly than random draws (better coverage for small n).

    Args:
        seed: the scrambling seed.
    """

    def __init__(self, *, seed: int | None = None) -> None:
        self.seed = _fresh_seed(seed)

    def ask(self, space: Space, trials: Sequence[TrialRecord], n: int = 1) -> list[Config]:
        return space.sobol(n, seed=self.seed, skip=len(trials))


class GridSearch:
    """Every combination of a grid, each once; then the search is exhausted and the study stops cleanly.

    Args:
        points: how many points per continuous parameter (an int for all, or a dict by name); integers and
            choices take every value unless limited here. Spacing is linear, or log where the parameter is log.
        shuffle: visit the grid in a seeded random order instead of row-major order.
        seed: the shuffling seed.
    """

    def __init__(self, points: int | Mapping[str, int] | None = None, *, shuffle: bool = False,
                 seed: int | None = None) -> None:
        self.points = points
        self.shuffle = shuffle
        self.seed = _fresh_seed(seed)

    def configs(self, space: Space) -> list[Config]:
        """The whole grid, in visiting order."""
        grid = space.grid(self.points)
        if self.shuffle:
            np.random.default_rng(self.seed).shuffle(grid)
        return grid

    def ask(self, space: Space, trials: Sequence[TrialRecord], n: int = 1) -> list[Config]:
        seen = {_key(t.config) for t in trials}
        out = []
        for c in self.configs(space):
            if _key(c) not in seen:
                out.append(c)
                if len(out) == n:
                    break
        return out


def _key(config: Config) -> str:
    return json.dumps(config, sort_keys=True)


def observations(space: Space, trials: Sequence[TrialRecord], *, min_points: int = 6) -> list[tuple[Config, float]]:
    """What a model-based searcher learns from: ``(config, score)`` pairs, larger scores better.

    Without early-stopped trials: COMPLETED trials' final scores. Once trials were pruned or paused
    (multi-fidelity), BOHB's rule: the scores reported at the highest step that ``max(d + 2, min_points)`` trials
    reached (else the step most trials reached), so one model sees every bracket's results. FAILED trials get the
    worst score of the chosen data: a region where training diverges should not look unexplored.
    """
    if any(t.status in (Status.PRUNED, Status.PAUSED) for t in trials):
        counts: dict[int, int] = {}
        for t in trials:
            if t.status is not Status.FAILED:
                for step in t.reports:
                    counts[step] = counts.get(step, 0) + 1
        need = max(space.dim + 2, min_points)
        enough = [step for step, c in counts.items() if c >= need]
        step = max(enough) if enough else max(counts, key=lambda k: (counts[k], k)) if counts else None
        pairs = [(t.config, t.scores[step]) for t in trials
                 if step is not None and t.status is not Status.FAILED and step in t.reports]
    else:
        pairs = [(t.config, t.score) for t in trials if t.status is Status.COMPLETED and t.score is not None]
    failed = [t.config for t in trials if t.status is Status.FAILED]
    if pairs and failed:
        worst = min(score for _, score in pairs)
        pairs += [(c, worst) for c in failed]
    return pairs


def make_searcher(spec: Searcher | str | None, *, seed: int | None = None, **options: Any) -> Searcher:
    """A searcher from its name (``"grid"``, ``"random"``, ``"sobol"``, ``"tpe"``, ``"gp"``) or as given; ``None`` is random."""
    if spec is None:
        spec = "random"
    if not isinstance(spec, str):
        if not callable(getattr(spec, "ask", None)):
            raise TypeError(f"searcher must be a name or have ask(space, trials, n), got {type(spec).__name__}")
        return spec
    names: dict[str, Any] = {"grid": GridSearch, "random": RandomSearch, "sobol": Sobol}
    if spec == "gp":
        from torchhpo.gp import GP
        names["gp"] = GP
    if spec == "tpe":
        from torchhpo.tpe import TPE
        names["tpe"] = TPE
    if spec not in names:
        raise ValueError(f"searcher '{spec}' is unknown; choose one of {sorted([*names, 'gp', 'tpe'])} or pass an object")
    return names[spec](seed=seed, **options)
