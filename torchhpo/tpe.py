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

import numpy as np
import torch
from scipy.special import logsumexp, ndtr
from scipy.stats import truncnorm

from torchhpo.searchers import Sobol, _fresh_seed, _key, observations
from torchhpo.settings import Described
from torchhpo.space import Config, Space
from torchhpo.trial import Status, TrialRecord

__all__ = ["TPE", "ranked"]


class TPE(Described):
    """Tree-structured Parzen estimator over continuous, integer and categorical parameters.

    Args:
        n_initial: quasi-random (Sobol) trials before the model takes over.
        n_candidates: candidates drawn from the good density per suggestion.
        gamma: fraction of the history that counts as good (at most 25 trials, at least 1).
        seed: seeds the draws; the same seed and history give the same configs.

    Example:
        >>> import torchhpo as th
        >>> space = th.Space({"x": th.Float(-5.0, 5.0)})
        >>> study = th.Study(space, mode="min", searcher=TPE(seed=0), seed=0)
        >>> study.optimize(lambda c, t: (c["x"] - 2.0) ** 2, n_trials=40, progress=False).best.value < 0.1
        True
    """

    def __init__(self, *, n_initial: int = 10, n_candidates: int = 24, gamma: float = 0.1,
                 seed: int | None = None) -> None:
        if isinstance(n_initial, bool) or not isinstance(n_initial, int) or n_initial < 1:
            raise ValueError(f"TPE: n_initial={n_initial!r} must be an int >= 1")
        if isinstance(n_candidates, bool) or not isinstance(n_candidates, int) or n_candidates < 1:
            raise ValueError(f"TPE: n_candidates={n_candidates!r} must be an int >= 1")
        if not 0.0 < gamma < 1.0:
            raise ValueError(f"TPE: gamma={gamma!r} must be in (0, 1)")
        self.n_initial, self.n_candidates, self.gamma = n_initial, n_candidates, gamma
        self.seed = _fresh_seed(seed)

    def ask(self, space: Space, trials: Sequence[TrialRecord], n: int = 1) -> list[Config]:
        order = ranked(space, trials)
        if len(order) < self.n_initial:
            return Sobol(seed=self.seed).ask(space, trials, n)
        rng = np.random.default_rng([self.seed, len(trials)])
        n_good = min(max(1, math.ceil(self.gamma * len(order))), 25)
        good = space.encode(order[:n_good]).numpy()
        bad = order[n_good:] + [t.config for t in trials if t.status is Status.RUNNING]
        seen = {_key(t.config) for t in trials}
        out: list[Config] = []
        for _ in range(n):
            config = self._one(space, good, space.encode(bad).numpy().reshape(-1, space.dim), seen, rng)
            out.append(config)
            seen.add(_key(config))
            bad.append(config)  # the constant liar: a proposal counts as bad for the rest of the batch
        return out

    def _one(self, space: Space, good: np.ndarray, bad: np.ndarray, seen: set[str],
             rng: np.random.Generator) -> Config:
        """The best new candidate drawn from the good density (``good``, ``bad``: ``m x d`` unit-cube points)."""
        cat = space.categorical_dims
        l_density, g_density = _Parzen(space, good, cat), _Parzen(space, bad, cat)
        X = l_density.sample(self.n_candidates, rng)
        X = space.round(torch.from_numpy(X)).numpy()
        score = l_density.log_pdf(X) - g_density.log_pdf(X)
        for i in np.argsort(-score):
            config = space.decode(X[i : i + 1])[0]
            if _key(config) not in seen:
                return config
        for config in space.sample(64, seed=rng):  # every candidate was tried already: explore instead
            if _key(config) not in seen:
                return config
        return space.decode(X[int(np.argmax(score)) : int(np.argmax(score)) + 1])[0]


def ranked(space: Space, trials: Sequence[TrialRecord]) -> list[Config]:
    """The finished trials' configs, best first: what TPE splits into good and bad.

    Without early stopping: by final score (``searchers.observations``). Once trials were pruned or paused: by the
    highest step each reached, then by its score there; FAILED trials last. A trial that a scheduler promoted
    further beat its rivals at every lower rung, a surer sign than any one rung's scores when early epochs rank
    configs poorly (Optuna's TPE orders pruned trials so too). Against BOHB's rule (the scores at the highest step
    with enough trials; ``searchers.observations``), over 50 seeds with a first rung of 3 epochs: TPE + ASHA 234
    vs 290 epochs to the target on the digits-CNN table (its first 320 rows), 434 vs 488 on the digits-MLP table;
    TPE + Hyperband 333 vs 374 and 554 vs 684 (``benchmarks/multifidelity.py``).
    """
    if not any(t.status in (Status.PRUNED, Status.PAUSED) for t in trials):
        return [c for c, _ in sorted(observations(space, trials), key=lambda p: -p[1])]
    keyed = []
    for t in trials:
        if t.status not in (Status.FAILED, Status.RUNNING) and t.reports:
            step = max(t.reports)
            keyed.append(((step, t.sign * t.reports[step]), t.config))
    order = [c for _, c in sorted(keyed, key=lambda k: k[0], reverse=True)]
    return order + [t.config for t in trials if t.status is Status.FAILED]


class _Parzen:
    """A mixture over ``m`` observations plus a prior component, each a product kernel over the ``d`` columns."""

    def __init__(self, space: Space, X: np.ndarray, cat: list[int]) -> None:
        m, d = X.shape
        self.cat = cat
        self.num = [j for j in range(d) if j not in cat]
        self.levels = {j: len(space.levels(j)) for j in cat}
        self.mu = np.vstack([X, np.full((1, d), 0.5)])                      # (m + 1) x d, the last row is the prior
        sigma = 0.2 * max(m, 1) ** (-1.0 / (len(self.num) + 4)) if self.num else 1.0  # Scott's rule, unit range
        self.sigma = np.full((m + 1, 1), max(sigma, 1.0 / min(100, m + 1)))
        self.sigma[-1] = 1.0
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
