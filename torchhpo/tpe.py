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
from scipy.special import logsumexp, ndtr
from scipy.stats import truncnorm

from torchhpo.checks import integer, number
from torchhpo.observations import config_key, fresh_seed, pending, ranked, tried
from torchhpo.settings import Described
from torchhpo.space import Config, Space
from torchhpo.trial import TrialRecord

__all__ = ["TPE", "TPEOptions", "ranked"]


@dataclass(frozen=True)
class TPEOptions:
    """Knobs of the Parzen densities that rarely need changing (all in the unit cube's units).

    Attributes:
        max_good: at most this many trials count as good, however long the history: the good density stays
            concentrated on the best region instead of widening with ``gamma * n``.
        bandwidth: the scale of Scott's rule, ``bandwidth * m ** (-1 / (k + 4))`` for ``m`` observations over
            ``k`` continuous and integer columns: a fifth of the unit range for one observation.
        min_bandwidth: the kernels never get narrower than this (nor than ``1 / (m + 1)``), so candidates still
            move between observations when many of them pile up.
        prior_bandwidth: the width of the broad prior component centred in the cube, which keeps every region
            reachable.
        explore_samples: random configs tried when every candidate was proposed before.
    """

    max_good: int = 25
    bandwidth: float = 0.2
    min_bandwidth: float = 0.01
    prior_bandwidth: float = 1.0
    explore_samples: int = 64

    def __post_init__(self) -> None:
        integer("TPEOptions: max_good", self.max_good)
        number("TPEOptions: bandwidth", self.bandwidth, strict=True)
        number("TPEOptions: min_bandwidth", self.min_bandwidth, strict=True)
        number("TPEOptions: prior_bandwidth", self.prior_bandwidth, strict=True)
        integer("TPEOptions: explore_samples", self.explore_samples)


class TPE(Described):
    """Tree-structured Parzen estimator over continuous, integer and categorical parameters.

    Args:
        n_initial: quasi-random (Sobol) trials before the model takes over.
        n_candidates: candidates drawn from the good density per suggestion.
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

    def __init__(self, *, n_initial: int = 10, n_candidates: int = 24, gamma: float = 0.1,
                 seed: int | None = None, options: TPEOptions | None = None) -> None:
        self.n_initial = integer("TPE: n_initial", n_initial)
        self.n_candidates = integer("TPE: n_candidates", n_candidates)
        self.gamma = number("TPE: gamma", gamma, strict=True)
        if self.gamma >= 1.0:
            raise ValueError(f"TPE: gamma must be a number in (0, 1), got {gamma!r}")
        self.seed = fresh_seed(seed)
        self.options = options or TPEOptions()

    def ask(self, space: Space, trials: Sequence[TrialRecord], n: int = 1) -> list[Config]:
        order = ranked(space, trials)
        if len(order) < self.n_initial:  # the initial design: the Sobol sequence, continued past every trial
            return space.sobol(n, seed=self.seed, skip=len(trials))
        rng = np.random.default_rng([self.seed, len(trials)])
        n_good = min(max(1, math.ceil(self.gamma * len(order))), self.options.max_good)
        good = space.encode(order[:n_good]).numpy()
        bad = order[n_good:] + pending(trials)
        seen = tried(trials)
        out: list[Config] = []
        for _ in range(n):
            config = self._one(space, good, space.encode(bad).numpy().reshape(-1, space.dim), seen, rng)
            out.append(config)
            seen.add(config_key(config))
            bad.append(config)  # the constant liar: a proposal counts as bad for the rest of the batch
        return out

    def _one(self, space: Space, good: np.ndarray, bad: np.ndarray, seen: set[str],
             rng: np.random.Generator) -> Config:
        """The best new candidate drawn from the good density (``good``, ``bad``: ``m x d`` unit-cube points)."""
        cat = space.categorical_dims
        l_density, g_density = _Parzen(space, good, cat, self.options), _Parzen(space, bad, cat, self.options)
        X = l_density.sample(self.n_candidates, rng)
        X = space.round(torch.from_numpy(X)).numpy()
        score = l_density.log_pdf(X) - g_density.log_pdf(X)
        for i in np.argsort(-score):
            config = space.decode(X[i : i + 1])[0]
            if config_key(config) not in seen:
                return config
        for config in space.sample(self.options.explore_samples, seed=rng):  # every candidate was tried already
            if config_key(config) not in seen:
                return config
        return space.decode(X[int(np.argmax(score)) : int(np.argmax(score)) + 1])[0]


class _Parzen:
    """A mixture over ``m`` observations plus a prior component, each a product kernel over the ``d`` columns."""

    def __init__(self, space: Space, X: np.ndarray, cat: list[int], options: TPEOptions) -> None:
        m, d = X.shape
        self.cat = cat
        self.num = [j for j in range(d) if j not in cat]
        self.levels = {j: len(space.levels(j)) for j in cat}
        self.mu = np.vstack([X, np.full((1, d), 0.5)])                      # (m + 1) x d, the last row is the prior
        sigma = options.bandwidth * max(m, 1) ** (-1.0 / (len(self.num) + 4)) if self.num else 1.0  # Scott's rule
        self.sigma = np.full((m + 1, 1), max(sigma, 1.0 / (m + 1), options.min_bandwidth))
        self.sigma[-1] = options.prior_bandwidth
        self.log_w = np.full(m + 1, -math.log(m + 1))
        self.eps = 1.0 / (1.0 + math.sqrt(m)) if m else 1.0                  # categorical smoothing

    def _index(self, X: np.ndarray, j: int) -> np.ndarray:
        return np.minimum((X[..., j] * self.levels[j]).astype(int), self.levels[j] - 1)

    def log_pdf(self, X: np.ndarray) -> np.ndarray:
        """``log p(x)`` for ``c x d`` points."""
        total = np.tile(self.log_w, (len(X), 1))                            # c x (m + 1)
        if self.num:
            x, mu = X[:, None, self.num], self.mu[None, :, self.num]        # c x 1 x k, 1 x (m + 1) x k
            s = self.sigma[None]
            z = (x - mu) / s
            mass = ndtr((1.0 - mu) / s) - ndtr(-mu / s)
            total += (-0.5 * z**2 - np.log(s * math.sqrt(2 * math.pi)) - np.log(mass)).sum(-1)
        for j in self.cat:
            k = self.levels[j]
            same = self._index(X, j)[:, None] == self._index(self.mu, j)[None, :]
            p = np.where(same, 1.0 - self.eps * (k - 1) / k, self.eps / k)
            p[:, -1] = 1.0 / k                                              # the prior is uniform
            total += np.log(p)
        return logsumexp(total, axis=1)

    def sample(self, c: int, rng: np.random.Generator) -> np.ndarray:
        """``c x d`` points: pick a component by weight, then draw each column from its kernel."""
        comp = rng.choice(len(self.mu), size=c, p=np.exp(self.log_w))
        X = np.empty((c, self.mu.shape[1]))
        for j in self.num:
            mu, s = self.mu[comp, j], self.sigma[comp, 0]
            X[:, j] = truncnorm.rvs(-mu / s, (1.0 - mu) / s, loc=mu, scale=s, random_state=rng)
        for j in self.cat:
            k = self.levels[j]
            own = self._index(self.mu, j)[comp]
            keep = rng.random(c) < 1.0 - self.eps                            # else uniform, own included
            keep[comp == len(self.mu) - 1] = False                          # prior rows draw uniformly
            draw = np.where(keep, own, rng.integers(0, k, size=c))
            X[:, j] = (draw + 0.5) / k
        return X
