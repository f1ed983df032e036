"""``SearchCV``: scikit-learn's ``GridSearchCV`` / ``RandomizedSearchCV`` interface, driven by any torchhpo searcher.

The lecture's Python example tunes a model with ``GridSearchCV(..., cv=2)`` and then ``RandomizedSearchCV``;
``SearchCV`` is the same estimator (``cv_results_``, ``best_*``, ``refit``, ``error_score``, ``n_jobs``, prediction
methods, tags) with every searcher of torchhpo (grid, random, Sobol, TPE, GP) and SQLite storage. It passes the
scikit-learn estimator checks that ``GridSearchCV`` passes (tests/test_sklearn.py runs them). docs/sklearn.md has
every option.

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

import copy
import math
import numbers
import os
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone, is_classifier
from sklearn.exceptions import FitFailedWarning, NotFittedError
from sklearn.metrics import check_scoring
from sklearn.model_selection import check_cv, cross_validate
from sklearn.utils import get_tags, indexable
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from torchhpo.checks import integer
from torchhpo.searchers import Searcher
from torchhpo.space import Space
from torchhpo.study import Study
from torchhpo.trial import Trial, TrialRecord

__all__ = ["SearchCV"]

FOLDS_ATTR = "cv_folds"  # the trial attribute holding its folds' scores, times and errors (JSON)
FIT_ERROR = "with the following error:\n"  # what precedes the traceback in cross_validate's failed-fit message
SINGLE = "score"  # the metric's name in cv_results_ keys when ``scoring`` gives one number (as scikit-learn names it)


def _require_refit(search: Any, attr: str) -> None:
    if not search.refit:
        raise AttributeError(f"{attr} needs the refitted best estimator, and this SearchCV has refit=False; fit "
                             "clone(estimator).set_params(**search.best_params_) yourself")


def _delegates(attr: str) -> Callable[[Any], bool]:
    """Whether the refitted estimator has ``attr`` (the unfitted one's answer before ``fit``), else
    ``AttributeError``: ``SearchCV`` offers a method only when the estimator does, so that
    ``hasattr(search, "predict_proba")`` answers as for the estimator."""
    def check(search: Any) -> bool:
        _require_refit(search, attr)
        getattr(search.best_estimator_ if hasattr(search, "best_estimator_") else search.estimator, attr)
        return True

    return check


class SearchCV(MetaEstimatorMixin, BaseEstimator):
    """Cross-validated search over an estimator's parameters; after ``fit`` it predicts with the refitted best one.

    Args:
        estimator: a scikit-learn estimator (cloned for every fit).
        space: the parameters to tune, named as ``estimator.set_params`` takes them: a ``th.Space`` or a dict of
            ``th.Float`` / ``th.Int`` / ``th.Choice``.
        searcher: a torchhpo searcher or its name (``"grid"``, ``"random"``, ``"sobol"``, ``"tpe"``, ``"gp"``);
            a searcher object is copied at each ``fit``, so the one given stays as it was.
        n_trials: configs to try (``None`` with ``searcher="grid"``: the whole grid).
        cv: folds, or a scikit-learn splitter or iterable of splits (``None``: 5 folds); stratified for a
            classifier, as in scikit-learn.
        scoring: a scorer name or callable (higher is better; ``None``: ``estimator.score``), or several as a list
            or dict: then ``refit`` names the one the search maximizes.
        refit: refit the best config on all the data (``best_estimator_``, prediction methods); with several
            metrics, the name of the one to maximize; a callable ``refit(cv_results_) -> index`` picks
            ``best_index_`` itself (the search maximizes the mean score).
        error_score: the score of a fit that raises (its config's mean score follows), or ``"raise"``: the first
            such error ends ``fit`` with it. When every fit fails, ``fit`` raises ``ValueError`` with the errors.
        return_train_score: also score the training folds (``mean_train_score``, ...).
        n_jobs: configs cross-validated at once: ``None`` or 1 in this process, more in that many worker processes
            (``th.Processes``; put the calling script's code under ``if __name__ == "__main__":``), -1 every core,
            -2 all but one.
        storage: ``None`` or a SQLite path: the study survives a crash, and the next ``fit`` goes on with it.
        seed: seeds the searcher.
        progress: show a progress bar.

    Attributes (after ``fit``):
        cv_results_: scikit-learn's layout (``params``, ``param_<name>`` masked arrays, ``split<i>_test_score``,
            ``mean_test_score``, ``std_test_score``, ``rank_test_score``, ``mean_fit_time``, ...; ``<metric>`` in
            place of ``score`` with several metrics) plus ``status`` (``"completed"`` or ``"failed"`` per trial).
        best_index_, best_params_, best_score_, best_estimator_, refit_time_, scorer_, n_splits_, multimetric_,
        classes_, n_features_in_, study_ (the closed ``Study``: trials, ``to_dataframe()``; not pickled).
    """

    def __init__(self, estimator: Any, space: Space | Mapping[str, Any], *, searcher: Searcher | str = "tpe",
                 n_trials: int | None = 20, cv: Any = 5, scoring: Any = None, refit: bool | str | Callable[..., Any] = True,
                 error_score: float | str = np.nan, return_train_score: bool = False, n_jobs: int | None = None,
                 storage: str | Path | None = None, seed: int | None = None, progress: bool = True) -> None:
        self.estimator, self.space, self.searcher, self.n_trials = estimator, space, searcher, n_trials
        self.cv, self.scoring, self.refit, self.error_score = cv, scoring, refit, error_score
        self.return_train_score, self.n_jobs = return_train_score, n_jobs
        self.storage, self.seed, self.progress = storage, seed, progress

    def __sklearn_tags__(self) -> Any:
        """The estimator's kind (classifier, regressor) and input tags (sparse, pairwise): ``is_classifier`` and
        the splits follow what is tuned."""
        tags = super().__sklearn_tags__()
        inner = get_tags(self.estimator)
        tags.estimator_type = inner.estimator_type
        tags.classifier_tags = copy.deepcopy(inner.classifier_tags)
        tags.regressor_tags = copy.deepcopy(inner.regressor_tags)
        tags.input_tags.pairwise = inner.input_tags.pairwise
        tags.input_tags.sparse = inner.input_tags.sparse
        return tags

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("study_", None)  # a database connection and locks do not pickle; Study.load(storage) re-opens it
        return state

    def fit(self, X: Any, y: Any = None, **params: Any) -> SearchCV:
        """Search with cross-validation, then (``refit``) fit the best config on all of ``X``, ``y``.

        ``params`` go to the estimator's ``fit`` (split with the folds when they have one entry per sample),
        except ``groups``, which goes to the splitter.
        """
        metric = self._check_options()
        scorers = _scorers(self.estimator, self.scoring)  # before the search: no scorer, no search
        space = self.space if isinstance(self.space, Space) else Space(self.space)
        X, y = indexable(X, y)
        params = dict(params)
        groups = params.pop("groups", None)
        splits = list(check_cv(self.cv, y, classifier=is_classifier(self.estimator)).split(X, y, groups))
        self.n_splits_ = len(splits)
        evaluate = _CrossValidation(self.estimator, X, y, splits, self.scoring, metric, params, self.error_score,
                                    self.return_train_score)
        searcher = self.searcher if isinstance(self.searcher, str) else copy.deepcopy(self.searcher)
        study = Study(space, mode="max", searcher=searcher, storage=self.storage,
                      name=f"SearchCV-{type(self.estimator).__name__}", seed=self.seed)
        try:
            first = len(study.trials)
            # failures are scores here (error_score), so fail_fast stays off, as scikit-learn's searches go on
            study.optimize(evaluate, n_trials=self.n_trials, devices=self._devices(), progress=self.progress,
                           fail_fast=None, callbacks=[evaluate.stop_on_error])
            trials = study.trials[first:]
        finally:
            study.close()
        self.study_ = study
        _raise_or_warn(trials, evaluate, self.n_splits_)
        self.cv_results_ = _cv_results(trials, self.n_splits_, self.error_score, self.return_train_score)
        self.multimetric_, self.scorer_ = metric != SINGLE, scorers
        self.best_index_ = self._best_index(metric)
        self.best_params_ = self.cv_results_["params"][self.best_index_]
        if not callable(self.refit):
            self.best_score_ = float(self.cv_results_[f"mean_test_{metric}"][self.best_index_])
        if self.refit:
            self.best_estimator_ = clone(self.estimator).set_params(**clone(self.best_params_, safe=False))
            start = time.perf_counter()
            self.best_estimator_.fit(X, **params) if y is None else self.best_estimator_.fit(X, y, **params)
            self.refit_time_ = time.perf_counter() - start
            if hasattr(self.best_estimator_, "feature_names_in_"):
                self.feature_names_in_ = self.best_estimator_.feature_names_in_
        return self

    def _check_options(self) -> str:
        """The options ``fit`` needs checked before it starts; returns the name of the metric the search maximizes."""
        integer("SearchCV: n_trials", self.n_trials, none=True)
        integer("SearchCV: n_jobs", self.n_jobs, low=-math.inf, none=True)
        if self.n_jobs == 0:
            raise ValueError("SearchCV: n_jobs must not be 0; None or 1 runs in this process, -1 uses every core")
        if not (self.error_score == "raise" or (isinstance(self.error_score, numbers.Real)
                                                and not isinstance(self.error_score, bool))):
            raise ValueError(f"SearchCV: error_score must be a number (np.nan by default) or 'raise', "
                             f"got {self.error_score!r}")
        if not (isinstance(self.refit, (bool, str)) or callable(self.refit)):
            raise ValueError(f"SearchCV: refit must be a bool, a metric name or a callable, got {self.refit!r}")
        if self.scoring is None or isinstance(self.scoring, str) or callable(self.scoring):
            return SINGLE
        names = list(self.scoring) if isinstance(self.scoring, (list, tuple, dict)) else []
        if not isinstance(self.refit, str) or self.refit not in names:
            raise ValueError(f"SearchCV: with several metrics ({names}), refit must name the one the search "
                             f"maximizes, got refit={self.refit!r}")
        return self.refit

    def _devices(self) -> list[str]:
        """One CPU per config cross-validated at once: one runs in this process, several in worker processes."""
        workers = 1 if self.n_jobs is None else self.n_jobs if self.n_jobs > 0 else (os.cpu_count() or 1) + 1 + self.n_jobs
        return ["cpu"] * max(workers, 1)

    def _best_index(self, metric: str) -> int:
        if not callable(self.refit):
            return int(np.argmin(self.cv_results_[f"rank_test_{metric}"]))
        chosen = self.refit(self.cv_results_)
        if not isinstance(chosen, numbers.Integral) or isinstance(chosen, bool):
            raise TypeError(f"SearchCV: refit(cv_results_) must return an int index, got {chosen!r}")
        index = int(chosen)
        if not 0 <= index < len(self.cv_results_["params"]):
            raise IndexError(f"SearchCV: refit(cv_results_) returned {index}, out of range for "
                             f"{len(self.cv_results_['params'])} configs")
        return index

    # --- what the refitted best estimator does ------------------------------------------------------------------
    def score(self, X: Any, y: Any = None) -> float:
        """The ``scoring`` metric (with several: the ``refit`` one) of ``best_estimator_`` on ``X``, ``y``;
        ``estimator.score`` when ``scoring`` is ``None``."""
        _require_refit(self, "score")
        check_is_fitted(self)
        scorer = self.scorer_[self.refit] if isinstance(self.scorer_, dict) else self.scorer_
        return float(scorer(self.best_estimator_, X, y))

    @property
    def n_features_in_(self) -> int:
        """The number of features ``fit`` saw (needs ``refit``)."""
        try:
            check_is_fitted(self)
        except NotFittedError as e:  # an AttributeError, so that hasattr says False before fit
            raise AttributeError(f"{type(self).__name__} has no n_features_in_ before fit") from e
        return int(self.best_estimator_.n_features_in_)

    @property
    def classes_(self) -> Any:
        """The class labels of the refitted classifier."""
        _delegates("classes_")(self)
        return self.best_estimator_.classes_

    @available_if(_delegates("predict"))
    def predict(self, X: Any) -> Any:
        """``best_estimator_.predict(X)``."""
        check_is_fitted(self)
        return self.best_estimator_.predict(X)

    @available_if(_delegates("predict_proba"))
    def predict_proba(self, X: Any) -> Any:
        """``best_estimator_.predict_proba(X)``, columns in the order of ``classes_``."""
        check_is_fitted(self)
        return self.best_estimator_.predict_proba(X)

    @available_if(_delegates("predict_log_proba"))
    def predict_log_proba(self, X: Any) -> Any:
        """``best_estimator_.predict_log_proba(X)``."""
        check_is_fitted(self)
        return self.best_estimator_.predict_log_proba(X)

    @available_if(_delegates("decision_function"))
    def decision_function(self, X: Any) -> Any:
        """``best_estimator_.decision_function(X)``."""
        check_is_fitted(self)
        return self.best_estimator_.decision_function(X)

    @available_if(_delegates("score_samples"))
    def score_samples(self, X: Any) -> Any:
        """``best_estimator_.score_samples(X)``."""
        check_is_fitted(self)
        return self.best_estimator_.score_samples(X)

    @available_if(_delegates("transform"))
    def transform(self, X: Any) -> Any:
        """``best_estimator_.transform(X)``."""
        check_is_fitted(self)
        return self.best_estimator_.transform(X)

    @available_if(_delegates("inverse_transform"))
    def inverse_transform(self, X: Any) -> Any:
        """``best_estimator_.inverse_transform(X)``."""
        check_is_fitted(self)
        return self.best_estimator_.inverse_transform(X)


# --- one config's cross-validation (runs where the trial runs: here or in a worker process) -----------------------
class _CrossValidation:
    """``fn(config, trial)`` for the study: cross-validates one config on the fixed splits, keeps each fold's scores,
    times and error in the trial's ``FOLDS_ATTR`` attribute, and returns the mean score of ``metric``.

    A fold that raises scores ``error_score``. With ``error_score="raise"`` its error ends the trial, is kept in
    ``raised`` when the trial ran in this process (so that ``fit`` re-raises it as it was), and stops the study."""

    def __init__(self, estimator: Any, X: Any, y: Any, splits: list[tuple[Any, Any]], scoring: Any, metric: str,
                 params: dict[str, Any], error_score: float | str, return_train_score: bool) -> None:
        self.estimator, self.X, self.y, self.splits, self.scoring, self.metric = estimator, X, y, splits, scoring, metric
        self.params, self.error_score, self.return_train_score = params, error_score, return_train_score
        self.raised: list[BaseException] = []

    def __call__(self, config: dict[str, Any], trial: Trial) -> float:
        model = clone(self.estimator).set_params(**clone(config, safe=False))
        folds: list[dict[str, Any]] = []
        for split in self.splits:
            fold, error = self._fold(model, split)
            folds.append(fold)
            if error is not None and self.error_score == "raise":
                trial.set_attr(FOLDS_ATTR, folds)
                self.raised.append(error)
                raise error
        trial.set_attr(FOLDS_ATTR, folds)
        mean = float(np.mean([_fold_score(fold, "test", self.metric, self.error_score) for fold in folds]))
        errors = [fold["error"] for fold in folds if "error" in fold]
        if errors and not math.isfinite(mean):
            raise RuntimeError(f"{len(errors)} of {len(folds)} fits failed, and error_score={self.error_score!r} "
                               f"makes the mean score {mean}; the first failure:\n{errors[0]}")
        return mean

    def _fold(self, model: Any, split: tuple[Any, Any]) -> tuple[dict[str, Any], Exception | None]:
        """One fold as ``{"fit_time", "score_time", "test": {metric: score}, "train": {...}}`` (JSON), with
        ``"error"`` (the traceback) and no scores when the fit raised; and that exception.

        As in scikit-learn, a scoring error is no failed fit: that score is ``error_score`` (with scikit-learn's
        warning); with ``error_score="raise"`` both raise."""
        start = time.perf_counter()
        try:
            out = cross_validate(model, self.X, self.y, cv=[split], scoring=self.scoring, params=self.params,
                                 return_train_score=self.return_train_score, error_score=self.error_score)
        except Exception as e:
            # with a numeric error_score this is cross_validate's "All the 1 fits failed": keep the traceback it quotes
            text = traceback.format_exc() if self.error_score == "raise" else str(e).split(FIT_ERROR, 1)[-1]
            if type(e.__cause__) is type(e) and type(e).__name__ == "InvalidParameterError":
                e = e.__cause__  # cross_validate re-raises the estimator's refusal of a parameter under its own name
            return {"fit_time": time.perf_counter() - start, "score_time": 0.0, "test": {}, "train": {},
                    "error": text}, e
        scores = {part: {key[len(part) + 1:]: _encode(out[key][0]) for key in out if key.startswith(part + "_")}
                  for part in ("test", "train")}
        return {"fit_time": float(out["fit_time"][0]), "score_time": float(out["score_time"][0]), **scores}, None

    def stop_on_error(self, study: Study, record: TrialRecord) -> None:
        """With ``error_score="raise"``, the study stops at the first fit that raised."""
        if self.error_score == "raise" and any("error" in fold for fold in record.user_attrs.get(FOLDS_ATTR, [])):
            study.stop()


def _encode(score: Any) -> float | str:
    """A score as JSON takes it: a float, or ``"nan"`` / ``"inf"`` / ``"-inf"`` (trial attributes are strict JSON)."""
    value = float(score)
    return value if math.isfinite(value) else repr(value)


def _fold_score(fold: dict[str, Any] | None, part: str, metric: str, error_score: float | str) -> float:
    """A fold's ``part`` (``"test"``/``"train"``) score of ``metric``: ``error_score`` when the fold raised, NaN
    when the trial never got to the fold (its worker died, a raised error stopped it)."""
    if fold is None:
        return math.nan
    if "error" in fold:
        return float(error_score)
    return float(fold[part].get(metric, math.nan))


def _scorers(estimator: Any, scoring: Any) -> Any:
    """``scorer_``: one scorer, or a dict of them when ``scoring`` names several (as scikit-learn keeps them)."""
    if scoring is None or isinstance(scoring, str) or callable(scoring):
        return check_scoring(estimator, scoring)
    named = scoring.items() if isinstance(scoring, dict) else ((name, name) for name in scoring)
    return {name: check_scoring(estimator, each) for name, each in named}


def _folds(record: TrialRecord) -> list[dict[str, Any]]:
    return record.user_attrs.get(FOLDS_ATTR, [])


def _raise_or_warn(trials: list[TrialRecord], evaluate: _CrossValidation, n_splits: int) -> None:
    """After the search, as scikit-learn's searches do: re-raise the error that stopped it
    (``error_score="raise"``); ``ValueError`` with every error when no fit succeeded; else a
    ``FitFailedWarning`` with the errors of the fits that failed."""
    if evaluate.error_score == "raise":
        for record in trials:
            error = next((fold["error"] for fold in _folds(record) if "error" in fold), None)
            if error is not None:
                if evaluate.raised:  # the trial ran in this process: its exception, traceback and all
                    raise evaluate.raised[0]
                raise RuntimeError(f"trial {record.number} ({record.config}) raised in its worker process "
                                   f"(error_score='raise'):\n{error}")
    if not trials:
        raise ValueError("SearchCV: the searcher proposed no config (is its grid already done in this storage?)")
    errors: list[str] = []
    for record in trials:
        folds = _folds(record)
        errors += [fold["error"] for fold in folds if "error" in fold]
        errors += [f"{record.reason}\n"] * (n_splits - len(folds))  # folds never run: the trial failed outside
    if not errors:
        return
    summary = "\n".join(f"{'-' * 80}\n{count} fits failed with the following error:\n{error}"
                        for error, count in Counter(errors).items())
    fits = n_splits * len(trials)
    if len(errors) == fits:
        raise ValueError(f"\nAll the {fits} fits failed.\nIt is very likely that your model is misconfigured.\n"
                         f"You can try to debug the error by setting error_score='raise'.\n\n"
                         f"Below are more details about the failures:\n{summary}")
    warnings.warn(f"\n{len(errors)} fits failed out of a total of {fits}.\nThe score on these train-test partitions "
                  f"for these parameters will be set to {evaluate.error_score}.\nIf these failures are not expected, "
                  f"you can try to debug them by setting error_score='raise'.\n\nBelow are more details about the "
                  f"failures:\n{summary}", FitFailedWarning, stacklevel=3)


def _cv_results(trials: list[TrialRecord], n_splits: int, error_score: float | str,
                return_train_score: bool) -> dict[str, Any]:
    """``cv_results_`` in scikit-learn's layout for this fit's trials, plus ``status``. A fold that raised scores
    ``error_score``; a config whose mean is NaN ranks last."""
    folds = [_folds(record) for record in trials]
    metrics = list(dict.fromkeys(name for each in folds for fold in each for name in fold["test"])) or [SINGLE]

    def table(part: str, metric: str | None = None) -> np.ndarray:
        return np.array([[fold[part] if metric is None else _fold_score(fold, part, metric, error_score)
                          for fold in _padded(each, n_splits)] for each in folds], dtype=float)

    results: dict[str, Any] = {}
    for part in ("fit_time", "score_time"):
        times = table(part)
        results[f"mean_{part}"], results[f"std_{part}"] = times.mean(axis=1), times.std(axis=1)
    results.update(_param_columns([record.config for record in trials]))
    results["params"] = [dict(record.config) for record in trials]
    for metric in metrics:
        for part in ("test", "train") if return_train_score else ("test",):
            scores = table(part, metric)
            for i in range(n_splits):
                results[f"split{i}_{part}_{metric}"] = scores[:, i]
            means = scores.mean(axis=1)
            results[f"mean_{part}_{metric}"], results[f"std_{part}_{metric}"] = means, scores.std(axis=1)
            if part == "test":
                results[f"rank_test_{metric}"] = _rank(means)
    results["status"] = [record.status.value for record in trials]
    return results


def _padded(folds: list[dict[str, Any]], n_splits: int) -> list[dict[str, Any]]:
    """A trial's folds, those it never ran as NaN times with no scores."""
    missing = {"fit_time": math.nan, "score_time": math.nan, "test": {}, "train": {}}
    return folds + [missing] * (n_splits - len(folds))


def _param_columns(configs: list[dict[str, Any]]) -> dict[str, np.ma.MaskedArray]:
    """``param_<name>``: one masked array per parameter, masked where a config lacks it (an inactive conditional
    parameter); numbers keep a numeric dtype, strings and mixed values are objects, as in scikit-learn."""
    columns: dict[str, np.ma.MaskedArray] = {}
    for name in dict.fromkeys(name for config in configs for name in config):
        present = {i: config[name] for i, config in enumerate(configs) if name in config}
        try:
            inferred = np.array(list(present.values()))
            dtype = inferred.dtype if inferred.dtype.kind != "U" and inferred.ndim == 1 else np.dtype(object)
        except ValueError:  # sequences of different lengths
            dtype = np.dtype(object)
        column = np.ma.MaskedArray(np.empty(len(configs), dtype=dtype), mask=True)
        for i, value in present.items():
            column[i] = value
        columns[f"param_{name}"] = column
    return columns


def _rank(means: np.ndarray) -> np.ndarray:
    """Rank 1 for the best mean, ties sharing the lower rank; NaN means tie with the worst (all 1 when all NaN)."""
    if np.isnan(means).all():
        return np.ones(len(means), dtype=np.int32)
    filled = np.where(np.isnan(means), np.nanmin(means) - 1, means)
    return rankdata(-filled, method="min").astype(np.int32)
