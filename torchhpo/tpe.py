"""TPE: the tree-structured Parzen estimator (Bergstra et al., NeurIPS 2011), multivariate, in the unit cube.

The history is split into the best ``gamma`` fraction ("good") and the rest ("bad"); a Parzen density is fitted
to each (a product of truncated Gaussians over continuous and integer columns, and smoothed one-hot kernels over
categorical columns, plus a broad prior component); candidates drawn from the good density are ranked by
``log l(x) - log g(x)`` and the best one is proposed. Running trials count as bad (a "constant liar"), so a batch
and asynchronous workers spread out instead of piling onto the same point.

It costs milliseconds per suggestion at any history size: the searcher to use when trials are cheap or many.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import ndtr
from scipy.stats import truncnorm

from torchhpo.checks import integer, number
from torchhpo.observations import config_key, fresh_seed, ranked
from torchhpo.settings import Described
from torchhpo.space import Config, Space
from torchhpo.trial import Status, TrialRecord

__all__ = ["TPE", "TPEOptions", "ranked"]


@dataclass(frozen=True)
class TPEOptions:
    """Knobs of the Parzen densities that rarely need changing (all in the unit cube's units).

    Attributes:
        max_good: at most this many trials count as good, however long the history: the good density stays
            concentrated on the best region instead of widening with ``gamma * n``.
        bandwidth: a kernel's width over a continuous or integer column is ``bandwidth`` times the larger gap to
            its neighbours in that column (the first and last observations use their inner gap): wide where
            observations are sparse, narrow where they cluster, whatever the column's role.
        min_bandwidth: the kernels never get narrower than this nor than ``1 / (m + 2)`` for ``m`` observations,
            so candidates still move between observations when many of them pile up.
        prior_bandwidth: the width of the broad prior component centred in the cube, which keeps every region
            reachable.
        categorical_smoothing: a categorical kernel puts ``categorical_smoothing / (m + 1)`` on every level
            beside 1 on its own (then normalized): smoother than the prior's share ``1 / (m + 1)``, so a level
            that no good trial holds yet is still drawn and a search does not lock onto the first good level.
        recent: in the bad density the ``recent`` newest trials weigh 1 and older ones less, down to ``1 / m``:
            the search has moved on from where early trials were drawn.
        explore_samples: random configs tried when every candidate was proposed before.
    """

    max_good: int = 25
    bandwidth: float = 1.0
    min_bandwidth: float = 0.01
    prior_bandwidth: float = 1.0
    categorical_smoothing: float = 4.0
    recent: int = 25
    explore_samples: int = 64

    def __post_init__(self) -> None:
        integer("TPEOptions: max_good", self.max_good)
        number("TPEOptions: bandwidth", self.bandwidth, strict=True)
        number("TPEOptions: min_bandwidth", self.min_bandwidth, strict=True)
        number("TPEOptions: prior_bandwidth", self.prior_bandwidth, strict=True)
        number("TPEOptions: categorical_smoothing", self.categorical_smoothing, strict=True)
        integer("TPEOptions: recent", self.recent)
        integer("TPEOptions: explore_samples", self.explore_samples)


class TPE(Described):
    """Tree-structured Parzen estimator over continuous, integer and categorical parameters.

    Args:
        n_initial: quasi-random (Sobol) trials before the model takes over.
        n_candidates: candidates drawn from the good density per suggestion; more of them exploit the density
            ratio harder.
        gamma: fraction of the history that counts as good (at least 1 trial, at most ``options.max_good``).
        seed: seeds the draws; the same seed and history give the same configs.
        options: a ``TPEOptions``.

    Example:
        >>> import torchhpo as th
        >>> space = th.Space({"x": th.Float(-5.0, 5.0)})
        >>> study = th.Study(space, mode="min", searcher=TPE(seed=0), seed=0)
        >>> study.optimize(lambda c, t: (c["x"] - 2.0) ** 2, n_trials=40, progress=False).best.value < 0.1
        True
    """

    def __init__(self, *, n_initial: int = 10, n_candidates: int = 64, gamma: float = 0.15,
                 seed: int | None = None, options: TPEOptions | None = None) -> None:
        self.n_initial = integer("TPE: n_initial", n_initial)
        self.n_candidates = integer("TPE: n_candidates", n_candidates)
        self.gamma = number("TPE: gamma", gamma, strict=True)
        if self.gamma >= 1.0:
            raise ValueError(f"TPE: gamma must be a number in (0, 1), got {gamma!r}")
        self.seed = fresh_seed(seed)
        self.options = options or TPEOptions()
        self._cache_space: Space | None = None
        # trial number -> (config, encoded row, active columns, key)
        self._cache: dict[int, tuple[Config, np.ndarray, np.ndarray, str]] = {}

    def ask(self, space: Space, trials: Sequence[TrialRecord], n: int = 1) -> list[Config]:
        order = ranked(space, trials)
        if len(order) < self.n_initial:  # the initial design: the Sobol sequence, continued past every trial
            return space.sobol(n, seed=self.seed, skip=len(trials))
        rng = np.random.default_rng([self.seed, len(trials)])
        rows, act, keys = self._encoded(space, trials)
        at = {id(t.config): i for i, t in enumerate(trials)}  # ranked hands back the trials' own config dicts
        n_good = min(max(1, math.ceil(self.gamma * len(order))), self.options.max_good)
        best = [at[id(c)] for c in order[:n_good]]
        good = _Parzen(space, rows[best], act[best], np.ones(n_good), self.options)
        # a trial's index is its age in the bad density; running trials are bad too (the constant liar)
        age = [at[id(c)] for c in order[n_good:]] + [i for i, t in enumerate(trials) if t.status is Status.RUNNING]
        bad, bad_act = rows[age], act[age]
        seen = set(keys)
        out: list[Config] = []
        for _ in range(n):
            g_density = _Parzen(space, bad, bad_act, self._weights(np.asarray(age)), self.options)
            config = self._one(space, good, g_density, seen, rng)
            out.append(config)
            seen.add(config_key(config))
            # a proposal counts as bad, and newest, for the rest of the batch
            bad = np.vstack([bad, space.encode([config]).numpy()])
            bad_act = np.vstack([bad_act, _active(space, config)])
            age.append(len(trials) + len(out))
        return out

    def _encoded(self, space: Space, trials: Sequence[TrialRecord]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Every trial's unit-cube row, active columns and config key, kept between asks (a trial's config never changes), so an
        ask costs milliseconds after thousands of trials instead of re-encoding the whole history."""
        if self._cache_space != space:
            self._cache_space, self._cache = space, {}
        fresh = [t for t in trials if (hit := self._cache.get(t.number)) is None or hit[0] != t.config]
        if fresh:
            new_rows = space.encode([t.config for t in fresh]).numpy()
            for t, row in zip(fresh, new_rows, strict=True):
                self._cache[t.number] = (t.config, row, _active(space, t.config), config_key(t.config))
        entries = [self._cache[t.number] for t in trials]
        rows = np.array([e[1] for e in entries]).reshape(-1, space.dim)
        return rows, np.array([e[2] for e in entries], dtype=bool).reshape(rows.shape), [e[3] for e in entries]

    def _weights(self, age: np.ndarray) -> np.ndarray:
        """Bad observations' weights: 1 for the ``recent`` newest, a linear ramp from ``1 / m`` for the older."""
        m, recent = len(age), self.options.recent
        if m <= recent:
            return np.ones(m)
        by_age = np.concatenate([np.linspace(1.0 / m, 1.0, m - recent), np.ones(recent)])
        return by_age[np.argsort(np.argsort(age, kind="stable"))]

    def _one(self, space: Space, good: _Parzen, bad: _Parzen, seen: set[str], rng: np.random.Generator) -> Config:
        """The best new candidate drawn from the good density."""
        X = space.round(torch.from_numpy(good.sample(self.n_candidates, rng))).numpy()
        A = space.active(X).numpy()
        score = good.log_pdf(X, A) - bad.log_pdf(X, A)
        for i in np.argsort(-score):
            config = space.decode(X[i : i + 1])[0]
            if config_key(config) not in seen:
                return config
        for config in space.sample(self.options.explore_samples, seed=rng):  # every candidate was tried already
            if config_key(config) not in seen:
                return config
        return space.decode(X[int(np.argmax(score)) : int(np.argmax(score)) + 1])[0]


class _Parzen:
    """A mixture over ``m`` weighted observations plus a prior component of weight 1 (as heavy as one
    observation), each a product kernel over the ``d`` columns. A column where an observation's parameter was
    inactive (a conditional parameter switched off) gives its kernel a neutral factor 1 there, and a point's
    density leaves out its own inactive columns: only what both configs hold is compared."""

    def __init__(self, space: Space, X: np.ndarray, A: np.ndarray, w: np.ndarray, options: TPEOptions) -> None:
        m, d = X.shape
        self.cat = space.categorical_dims
        self.num = [j for j in range(d) if j not in self.cat]
        self.levels = {j: len(space.levels(j)) for j in self.cat}
        self.mu = np.vstack([X, np.full((1, d), 0.5)])                      # (m + 1) x d, the last row is the prior
        self.act = np.vstack([A, np.ones((1, d), dtype=bool)])
        # inactive observations keep the prior's kernel: a candidate drawn from them gets a fresh value there
        self.mu[~self.act] = 0.5
        self.sigma = np.full((m + 1, d), options.prior_bandwidth)
        for j in self.num:
            on = np.flatnonzero(A[:, j])
            if len(on):
                self.sigma[on, j] = np.clip(options.bandwidth * _gaps(X[on, j : j + 1])[:, 0],
                                            max(1.0 / (len(on) + 2), options.min_bandwidth), 1.0)
        mu, s, on_num = self.mu[:, self.num], self.sigma[:, self.num], self.act[:, self.num]
        mass = ndtr((1.0 - mu) / s) - ndtr(-mu / s)                          # each kernel's share of [0, 1]
        self.prec = np.where(on_num, 1.0 / s**2, 0.0)                        # neutral where inactive
        self.log_norm = np.where(on_num, -np.log(s * math.sqrt(2 * math.pi)) - np.log(mass), 0.0)
        self.mu_prec = mu * self.prec
        self.mu2_prec = mu**2 * self.prec
        w = np.append(w, 1.0)
        self.log_w = np.log(w / w.sum())
        # categorical kernels: the observed level gets 1 + a, every level a, normalized; the prior row is uniform
        a = options.categorical_smoothing / (m + 1)
        self.p_other = {j: a / (1.0 + a * k) for j, k in self.levels.items()}
        self.log_p = {j: (math.log((1.0 + a) / (1.0 + a * k)), math.log(a / (1.0 + a * k))) for j, k in self.levels.items()}

    def _index(self, X: np.ndarray, j: int) -> np.ndarray:
        return np.minimum((X[..., j] * self.levels[j]).astype(int), self.levels[j] - 1)

    def log_pdf(self, X: np.ndarray, A: np.ndarray) -> np.ndarray:
        """``log p(x)`` for ``c x d`` points whose active columns are ``A``."""
        total = np.tile(self.log_w, (len(X), 1))                            # c x (m + 1)
        if self.num:  # sum_k a_k [log_norm_k - ((x_k - mu_k) / s_k)^2 / 2] as matrix products over the m kernels
            a = A[:, self.num].astype(float)
            x = X[:, self.num] * a
            total += a @ self.log_norm.T - 0.5 * ((x * x) @ self.prec.T - 2.0 * x @ self.mu_prec.T
                                                  + a @ self.mu2_prec.T)
        for j, k in self.levels.items():
            same = self._index(X, j)[:, None] == self._index(self.mu, j)[None, :]
            log_p = np.where(same, *self.log_p[j])
            log_p[:, -1] = -math.log(k)
            total += np.where(A[:, j, None] & self.act[None, :, j], log_p, 0.0)
        top = total.max(axis=1)
        return np.log(np.exp(total - top[:, None]).sum(axis=1)) + top

    def sample(self, c: int, rng: np.random.Generator) -> np.ndarray:
        """``c x d`` points: pick a component by weight, then draw each column from its kernel."""
        comp = rng.choice(len(self.mu), size=c, p=np.exp(self.log_w))
        X = np.empty((c, self.mu.shape[1]))
        if self.num:
            mu, s = self.mu[comp][:, self.num], self.sigma[comp][:, self.num]
            X[:, self.num] = truncnorm.rvs(-mu / s, (1.0 - mu) / s, loc=mu, scale=s, random_state=rng)
        for j, k in self.levels.items():
            own = self._index(self.mu, j)[comp]
            keep = rng.random(c) < 1.0 - k * self.p_other[j]                # else uniform, own included
            keep &= self.act[comp, j] & (comp < len(self.mu) - 1)          # the prior and inactive rows: uniform
            draw = np.where(keep, own, rng.integers(0, k, size=c))
            X[:, j] = (draw + 0.5) / k
        return X


def _active(space: Space, config: Config) -> np.ndarray:
    """The columns ``config`` holds (a config omits its inactive conditional parameters)."""
    return np.array([name in config for name in space.names], dtype=bool)


def _gaps(X: np.ndarray) -> np.ndarray:
    """Per column of ``m x k`` points in [0, 1]: each point's larger gap to its neighbours (the cube's edges
    count as neighbours, except that the lowest and highest points use their inner gap once ``m >= 2``, so an
    observation near an edge does not get a kernel as wide as the empty stretch beside it)."""
    m = len(X)
    order = np.argsort(X, axis=0)
    s = np.take_along_axis(X, order, axis=0)
    padded = np.vstack([np.zeros((1, X.shape[1])), s, np.ones((1, X.shape[1]))])
    gap = np.maximum(padded[1:-1] - padded[:-2], padded[2:] - padded[1:-1])
    if m >= 2:
        gap[0], gap[-1] = padded[2] - padded[1], padded[-2] - padded[-3]
    out = np.empty_like(gap)
    np.put_along_axis(out, order, gap, axis=0)
    return out
