import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.exceptions import FitFailedWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.estimator_checks import parametrize_with_checks

import torchhpo as th
from torchhpo.integrations.sklearn import SearchCV

CHECKED = [
    SearchCV(LogisticRegression(), {"C": th.Float(0.1, 10.0, log=True)}, searcher="random", n_trials=2, cv=2, seed=0,
             progress=False),
    SearchCV(Ridge(), th.Space({"alpha": th.Choice([0.1, 1.0])}), searcher="grid", n_trials=None, cv=2,
             progress=False),
]


def failing_as_gridsearchcv_does(estimator):
    """The checks GridSearchCV fails with the same estimator (Ridge does not warn on a 2-d y): nothing more."""
    return {"check_supervised_y_2d": "GridSearchCV(Ridge()) fails it too"} if isinstance(estimator.estimator, Ridge) else {}


@parametrize_with_checks(CHECKED, expected_failed_checks=failing_as_gridsearchcv_does)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def wine_grid(**options):
    model = make_pipeline(StandardScaler(), SVC())
    grid = {"svc__C": [0.1, 1.0, 10.0], "svc__gamma": [0.01, 0.1]}
    ours = SearchCV(model, th.Space({k: th.Choice(v) for k, v in grid.items()}), searcher="grid", n_trials=None, cv=2,
                    progress=False, **options)
    return ours, GridSearchCV(model, grid, cv=2, **{k: v for k, v in options.items() if k != "n_jobs"})


def test_cv_results_match_gridsearchcv():
    """The lecture's GridSearchCV, cv=2: the same keys, shapes, fold scores, ranks and winner."""
    X, y = load_wine(return_X_y=True)
    ours, theirs = wine_grid(return_train_score=True)
    ours.fit(X, y), theirs.fit(X, y)
    assert set(ours.cv_results_) == {*theirs.cv_results_, "status"}
    assert ours.cv_results_["params"] == theirs.cv_results_["params"]
    for key, value in theirs.cv_results_.items():
        if key.startswith(("split", "mean_test", "std_test", "mean_train", "std_train", "rank")):
            np.testing.assert_allclose(ours.cv_results_[key], value, err_msg=key)
        elif key.startswith("param_"):
            assert ours.cv_results_[key].dtype == value.dtype and ours.cv_results_[key].tolist() == value.tolist()
        elif key != "params":
            assert ours.cv_results_[key].shape == value.shape, key
    assert (ours.best_index_, ours.best_params_, ours.n_splits_) == (theirs.best_index_, theirs.best_params_, 2)
    assert ours.best_score_ == pytest.approx(theirs.best_score_) and ours.refit_time_ > 0
    assert ours.score(X, y) == pytest.approx(theirs.score(X, y))
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    np.testing.assert_allclose(ours.decision_function(X), theirs.decision_function(X))


def test_worker_processes_give_the_same_results():
    X, y = load_wine(return_X_y=True)
    alone, _ = wine_grid()
    workers, _ = wine_grid(n_jobs=2)
    alone.fit(X, y), workers.fit(X, y)
    for key in ("params", "split0_test_score", "split1_test_score", "rank_test_score"):
        np.testing.assert_array_equal(workers.cv_results_[key], alone.cv_results_[key])
    assert workers.best_params_ == alone.best_params_


def test_tpe_search_refits_predicts_pickles_and_stores(tmp_path):
    X, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))
    space = th.Space({"logisticregression__C": th.Float(1e-4, 1e2, log=True)})
    search = SearchCV(model, space, n_trials=12, cv=3, scoring="roc_auc", storage=tmp_path / "cv.db", seed=0,
                      progress=False).fit(X, y)
    assert is_classifier(search) and is_regressor(SearchCV(Ridge(), space))
    assert search.best_score_ > 0.98 and search.score(X, y) == pytest.approx(search.scorer_(search, X, y))
    assert search.predict(X).shape == y.shape and search.predict_proba(X).shape == (len(y), 2)
    assert np.nanmax(search.cv_results_["mean_test_score"]) == search.best_score_
    assert len(th.Study.load(tmp_path / "cv.db").trials) == 12  # kept on disk
    assert len(search.study_.trials) == 12
    copy = pickle.loads(pickle.dumps(search))  # the study (a database connection) stays behind
    assert not hasattr(copy, "study_") and (copy.predict_proba(X) == search.predict_proba(X)).all()


def test_a_failing_config_scores_error_score_and_is_reported():
    X, y = load_wine(return_X_y=True)
    space = th.Space({"C": th.Choice([-1.0, 1.0])})  # a negative C is invalid for SVC: that config's fits fail
    with pytest.warns(FitFailedWarning, match="2 fits failed out of a total of 4"):
        search = SearchCV(SVC(), space, searcher="grid", n_trials=None, cv=2, progress=False).fit(X, y)
    assert search.cv_results_["status"] == ["failed", "completed"]
    assert search.cv_results_["rank_test_score"].tolist() == [2, 1] and search.best_params_ == {"C": 1.0}
    assert np.isnan(search.cv_results_["split0_test_score"][0])
    with pytest.warns(FitFailedWarning):
        scored = SearchCV(SVC(), space, searcher="grid", n_trials=None, cv=2, error_score=0.0, progress=False).fit(X, y)
    assert scored.cv_results_["mean_test_score"][0] == 0.0 and scored.cv_results_["status"] == ["completed"] * 2


def test_error_score_raise_surfaces_the_estimators_own_error():
    X, y = load_wine(return_X_y=True)
    space = th.Space({"C": th.Choice([-1.0, 1.0])})
    search = SearchCV(SVC(), space, searcher="grid", n_trials=None, cv=2, error_score="raise", progress=False)
    with pytest.raises(ValueError, match="'C' parameter of SVC must be a float in the range"):
        search.fit(X, y)
    assert len(search.study_.trials) == 1  # stopped at the first error


def test_every_fit_failing_raises_with_the_errors():
    X, y = load_wine(return_X_y=True)
    search = SearchCV(SVC(), {"C": th.Choice([-1.0, -2.0])}, searcher="grid", n_trials=None, cv=2, progress=False)
    with pytest.raises(ValueError, match=r"(?s)All the 4 fits failed.*'C' parameter of SVC"):
        search.fit(X, y)


def test_several_metrics_refit_and_its_variants():
    X, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression())
    space = {"logisticregression__C": th.Choice([0.01, 1.0])}
    kwargs = dict(searcher="grid", n_trials=None, cv=2, progress=False)
    search = SearchCV(model, space, scoring=["accuracy", "roc_auc"], refit="roc_auc", **kwargs).fit(X, y)
    assert search.multimetric_ and {"rank_test_accuracy", "split1_test_roc_auc"} <= set(search.cv_results_)
    assert search.best_score_ == search.cv_results_["mean_test_roc_auc"].max()
    assert search.score(X, y) == pytest.approx(search.scorer_["roc_auc"](search.best_estimator_, X, y))
    with pytest.raises(ValueError, match="refit must name the one the search maximizes"):
        SearchCV(model, space, scoring=["accuracy", "roc_auc"], **kwargs).fit(X, y)
    lowest_c = SearchCV(model, space, refit=lambda results: 0, **kwargs).fit(X, y)
    assert lowest_c.best_index_ == 0 and not hasattr(lowest_c, "best_score_")
    unfitted = SearchCV(model, space, refit=False, **kwargs).fit(X, y)
    assert "C" in str(unfitted.best_params_) and not hasattr(unfitted, "predict") and not hasattr(unfitted, "classes_")


def test_searcher_object_is_left_as_given():
    X, y = load_wine(return_X_y=True)
    tpe = th.TPE(n_initial=2, seed=0)
    search = SearchCV(SVC(), {"C": th.Float(0.1, 10.0, log=True)}, searcher=tpe, n_trials=3, cv=2, progress=False)
    before = pickle.dumps(tpe)
    search.fit(X, y)
    assert pickle.dumps(tpe) == before and clone(search).searcher is not tpe


def test_inactive_conditional_parameters_are_masked():
    try:
        space = th.Space({"kernel": th.Choice(["linear", "rbf"]),
                          "gamma": th.Float(1e-3, 1.0, log=True, when={"kernel": "rbf"})})
    except TypeError:
        pytest.skip("this torchhpo has no conditional parameters (when=) yet")
    X, y = load_wine(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search = SearchCV(SVC(), space, searcher="random", n_trials=6, cv=2, seed=0, progress=False).fit(X, y)
    gamma = search.cv_results_["param_gamma"]
    linear = np.array([params["kernel"] == "linear" for params in search.cv_results_["params"]])
    assert (gamma.mask == linear).all() and gamma.dtype == float
