"""``SearchCV``: scikit-learn's ``GridSearchCV`` / ``RandomizedSearchCV`` interface, driven by any torchhpo searcher.

The lecture's Python example tunes a model with ``GridSearchCV(..., cv=2)`` and then ``RandomizedSearchCV``;
``SearchCV`` is the same estimator interface with every searcher of torchhpo (grid, random, Sobol, TPE, GP),
SQLite storage and failed fits recorded instead of raised.

Example:
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> import torchhpo as th
    >>> X, y = load_iris(return_X_y=True)
    >>> search = SearchCV(LogisticRegression(max_iter=500), th.Space({"C": th.Float(1e-3, 1e3, log=True)}),
    ...                   searcher="sobol", n_trials=4, cv=3, seed=0, progress=False).fit(X, y)
    >>> 0.9 < search.best_score_ <= 1.0
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone
from sklearn.model_selection import cross_validate

from torchhpo.searchers import Searcher
from torchhpo.space import Space
from torchhpo.study import Study
from torchhpo.trial import Status, Trial, TrialRecord

__all__ = ["SearchCV"]


class SearchCV(MetaEstimatorMixin, BaseEstimator):
    """Cross-validated search over an estimator's parameters; after ``fit`` it is the refitted best estimator.

    Args:
        estimator: a scikit-learn estimator (cloned for every fit).
        space: the parameters to tune, named as ``estimator.set_params`` takes them.
        searcher: a torchhpo searcher or its name (``"grid"``, ``"random"``, ``"sobol"``, ``"tpe"``, ``"gp"``).
        n_trials: configs to try (``None`` with ``searcher="grid"``: the whole grid).
        cv: folds, or a scikit-learn splitter.
        scoring: a scikit-learn scorer name or callable (higher is better); ``None`` uses ``estimator.score``.
        storage: ``None`` or a SQLite path: the study survives a crash and resumes.
        seed: seeds the searcher.
        progress: show a progress bar.

    Attributes (after ``fit``):
        best_params_, best_score_, best_estimator_, cv_results_ (dict of arrays), study_ (the ``Study``).
    """

    def __init__(self, estimator: Any, space: Space, *, searcher: Searcher | str = "tpe", n_trials: int | None = 20,
                 cv: Any = 5, scoring: Any = None, storage: str | Path | None = None, seed: int | None = None,
                 progress: bool = True) -> None:
        self.estimator, self.space, self.searcher, self.n_trials = estimator, space, searcher, n_trials
        self.cv, self.scoring, self.storage, self.seed, self.progress = cv, scoring, storage, seed, progress

    def fit(self, X: Any, y: Any = None, **fit_params: Any) -> SearchCV:
        """Run the search with cross-validation, then refit the best parameters on all of ``X``, ``y``."""
        study = Study(self.space, mode="max", searcher=self.searcher, storage=self.storage,
                      name=f"SearchCV-{type(self.estimator).__name__}", seed=self.seed)

        def evaluate(config: dict[str, Any], trial: Trial) -> float:
            model = clone(self.estimator).set_params(**config)
            scores = cross_validate(model, X, y, cv=self.cv, scoring=self.scoring, params=fit_params,
                                    error_score="raise")
            trial_scores[trial.number] = scores["test_score"]
            return float(np.mean(scores["test_score"]))

        trial_scores: dict[int, np.ndarray] = {}
        first = len(study.trials)
        study.optimize(evaluate, n_trials=self.n_trials, progress=self.progress)
        best = study.best
        self.study_ = study
        assert best.value is not None  # a completed trial has one
        self.best_params_, self.best_score_ = dict(best.config), best.value
        self.best_estimator_ = clone(self.estimator).set_params(**best.config).fit(X, y, **fit_params)
        self.cv_results_ = _cv_results(study, study.trials[first:], trial_scores)
        return self

    def predict(self, X: Any) -> Any:
        return self.best_estimator_.predict(X)

    def predict_proba(self, X: Any) -> Any:
        return self.best_estimator_.predict_proba(X)

    def score(self, X: Any, y: Any = None) -> float:
        return self.best_estimator_.score(X, y)


def _cv_results(study: Study, trials: list[TrialRecord], fold_scores: dict[int, np.ndarray]) -> dict[str, Any]:
    """``cv_results_`` in scikit-learn's layout (``params``, ``param_*``, ``mean_test_score``, ``rank_test_score``)
    for this fit's trials; failed fits score NaN and rank last."""
    means = np.array([t.value if t.status is Status.COMPLETED else np.nan for t in trials], dtype=float)
    stds = np.array([np.std(fold_scores[t.number]) if t.number in fold_scores else np.nan for t in trials])
    order = np.argsort(-np.nan_to_num(means, nan=-np.inf), kind="stable")
    rank = np.empty(len(trials), dtype=int)
    rank[order] = np.arange(1, len(trials) + 1)
    results: dict[str, Any] = {"params": [t.config for t in trials], "mean_test_score": means,
                               "std_test_score": stds, "rank_test_score": rank,
                               "status": [t.status.value for t in trials]}
    for name in study.space.names:
        results[f"param_{name}"] = np.array([t.config[name] for t in trials], dtype=object)
    return results
