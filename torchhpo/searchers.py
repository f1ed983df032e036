"""The ``Searcher`` contract, the model-free searchers (grid, random, quasi-random Sobol) and the name registry.

A searcher proposes a batch of configs from the whole history (running trials included, as pending points). It
is correct from history alone: the same seed and the same history give the same configs, so a resumed study
goes on where it stopped (the GP's default warm-started fits are the one exception: after a resume its fits start
cold once, so its proposals may differ slightly; ``GPOptions(warm_start=False)`` restores the rule).
``make_searcher`` imports a model-based searcher (``tpe``, ``gp``) by its path in ``SEARCHERS`` on first use;
those modules build on ``torchhpo.observations`` (whose ``observations`` is re-exported here), never on this one.
"""

from __future__ import annotations

import importlib
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from torchhpo.history import History
from torchhpo.observations import config_key, fresh_seed, observations, tried
from torchhpo.settings import Described
from torchhpo.space import Config, Space
from torchhpo.trial import TrialRecord

__all__ = ["GridSearch", "RandomSearch", "Searcher", "Sobol", "make_searcher", "observations"]


@runtime_checkable
class Searcher(Protocol):
    """Propose ``n`` configs given every trial so far (RUNNING ones are pending). Fewer than ``n`` (or none)
    means the search space is exhausted."""

    def ask(self, space: Space, trials: Sequence[TrialRecord], n: int = 1) -> list[Config]: ...


class RandomSearch(Described):
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
        self.seed = fresh_seed(seed)

    def ask(self, space: Space, trials: Sequence[TrialRecord], n: int = 1) -> list[Config]:
        return space.sample(n, seed=np.random.SeedSequence([self.seed, len(trials)]))


class Sobol(Described):
    """A scrambled Sobol sequence: spreads points more evenly than random draws (better coverage for small n).

    Args:
        seed: the scrambling seed.
    """

    def __init__(self, *, seed: int | None = None) -> None:
        self.seed = fresh_seed(seed)

    def ask(self, space: Space, trials: Sequence[TrialRecord], n: int = 1) -> list[Config]:
        return space.sobol(n, seed=self.seed, skip=len(trials))


class GridSearch(Described):
    """Every combination of a grid, each once; then the search is exhausted and the study stops cleanly.

    The grid is never built: point ``i`` comes from its mixed-radix digits (and, shuffled, from a seeded
    permutation of the indices), and the visited configs are remembered from the new trials only, so an ask costs
    the configs it proposes, not the grid or the history. A grid of more than 100,000 points is warned about.

    Args:
        points: how many points per continuous parameter (an int for all, or a dict by name); integers and
            choices take every value unless limited here. Spacing is linear, or log where the parameter is log.
        shuffle: visit the grid in a seeded random order instead of row-major order.
        seed: the shuffling seed.

    Example:
        >>> from torchhpo.space import Choice, Int, Space
        >>> GridSearch().ask(Space({"a": Int(1, 2), "b": Choice(["x", "y"])}), [], n=3)
        [{'a': 1, 'b': 'x'}, {'a': 1, 'b': 'y'}, {'a': 2, 'b': 'x'}]
    """

    WARN_POINTS = 100_000
    _CACHE = ("_lazy", "_token", "_seen", "_counted", "_next", "_warned")

    def __init__(self, points: int | Mapping[str, int] | None = None, *, shuffle: bool = False,
                 seed: int | None = None) -> None:
        self.points = points
        self.shuffle = shuffle
        self.seed = fresh_seed(seed)
        self._reset()

    def _reset(self) -> None:
        self._lazy: _Grid | None = None  # the grid of the space last asked about
        self._token: object | None = None  # the History whose trials' configs are in _seen
        self._seen: set[str] = set()
        self._counted = 0  # how many of its trials are in _seen
        self._next = 0  # every grid point before it was visited
        self._warned = False

    def __getstate__(self) -> dict[str, Any]:  # the caches (a permutation of the grid) are rebuilt on first use
        return {k: v for k, v in self.__dict__.items() if k not in self._CACHE}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def _grid_of(self, space: Space) -> _Grid:
        """The grid in visiting order, as a sequence that computes each point when indexed."""
        seed = self.seed if self.shuffle else None
        lazy = self._lazy
        if lazy is None or not (lazy.space is space or lazy.space == space) or (lazy.points, lazy.seed) != (
                self.points, seed):
            self._lazy = lazy = _Grid(space, self.points, seed)
            self._token = None
        return lazy

    def configs(self, space: Space) -> list[Config]:
        """The whole grid, in visiting order."""
        return list(self._grid_of(space))

    def ask(self, space: Space, trials: Sequence[TrialRecord], n: int = 1) -> list[Config]:
        grid = self._grid_of(space)
        if len(grid) > self.WARN_POINTS and not self._warned:
            self._warned = True
            warnings.warn(f"GridSearch: the grid has {len(grid):,} points ({grid.describe()}), more than a study "
                          "usually runs; shrink it with fewer points per parameter (points=3, or points={"
                          f"'{grid.largest()}': 3}}), or sample it: searcher='random' or 'sobol'", stacklevel=2)
        if isinstance(trials, History):  # the trials added since the last ask only
            if trials.token is not self._token or len(trials) < self._counted:
                self._token, self._seen, self._counted, self._next = trials.token, set(), 0, 0
            self._seen.update(config_key(t.config) for t in trials[self._counted:])
            self._counted, seen = len(trials), self._seen
            while self._next < len(grid) and config_key(grid[self._next]) in seen:
                self._next += 1
            first = self._next
        else:  # a plain list: every trial, but still not the grid
            seen, first = tried(trials), 0
        out = []
        for i in range(first, len(grid)):
            c = grid[i]
            if config_key(c) not in seen:
                out.append(c)
                if len(out) == n:
                    break
        return out


class _Grid(Sequence[Config]):
    """``space.grid(points)``, shuffled by ``np.random.default_rng(seed).shuffle`` when ``seed`` is given, without
    building it: point ``i`` from the mixed-radix digits of ``i`` (or of ``permutation[i]``: shuffling the list applies
    that permutation of the indices, drawn from the same generator)."""

    def __init__(self, space: Space, points: int | Mapping[str, int] | None, seed: int | None) -> None:
        self.space, self.axes = space, space.grid_axes(points)
        self.points = dict(points) if isinstance(points, Mapping) else points
        # a conditional grid is a tree (an inactive parameter adds no points), built once: its points are no product
        self._tree = space.grid(points) if space.conditional else None
        self.seed = seed
        self.size = len(self._tree) if self._tree is not None else math.prod(len(axis) for axis in self.axes)
        self._order: np.ndarray | None = None  # the permutation (size int64s), drawn at the first point asked for

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> Config:  # type: ignore[override]  # ints only
        if not -self.size <= i < self.size:
            raise IndexError(f"grid index {i} out of range for {self.size} points")
        if self.seed is not None and self._order is None:
            self._order = np.random.default_rng(self.seed).permutation(self.size)
        j = int(self._order[i]) if self._order is not None else i % self.size
        if self._tree is not None:
            return self._tree[j]
        values = []
        for axis in reversed(self.axes):
            j, digit = divmod(j, len(axis))
            values.append(axis[digit])
        return dict(zip(self.space.names, reversed(values), strict=True))

    def describe(self) -> str:
        return " × ".join(f"{name}: {len(axis)}" for name, axis in zip(self.space.names, self.axes, strict=True))

    def largest(self) -> str:
        return max(zip(self.space.names, self.axes, strict=True), key=lambda na: len(na[1]))[0]


def make_searcher(spec: Searcher | str | None, *, seed: int | None = None, **options: Any) -> Searcher:
    """A searcher from its name (``"grid"``, ``"random"``, ``"sobol"``, ``"tpe"``, ``"gp"``) or as given; ``None`` is random."""
    if spec is None:
        spec = "random"
    if not isinstance(spec, str):
        if not callable(getattr(spec, "ask", None)):
            raise TypeError(f"searcher must be a name or have ask(space, trials, n), got {type(spec).__name__}")
        return spec
    if spec not in SEARCHERS:
        raise ValueError(f"searcher '{spec}' is unknown; choose one of {sorted(SEARCHERS)} or pass an object")
    module, _, name = SEARCHERS[spec].partition(":")  # imported on first use: BoTorch only for "gp"
    return getattr(importlib.import_module(module), name)(seed=seed, **options)


SEARCHERS = {"grid": "torchhpo.searchers:GridSearch", "random": "torchhpo.searchers:RandomSearch",
             "sobol": "torchhpo.searchers:Sobol", "tpe": "torchhpo.tpe:TPE", "gp": "torchhpo.gp:GP"}
