import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

import torchhpo as th
from torchhpo.integrations.sklearn import SearchCV


def test_grid_matches_sklearn_gridsearchcv():
    """The lecture's GridSearchCV, cv=2: the same grid gives the same scores and the same winner."""
    from sklearn.model_selection import GridSearchCV

    X, y = load_wine(return_X_y=True)
    model = make_pipeline(StandardScaler(), SVC())
    grid = {"svc__C": [0.1, 1.0, 10.0], "svc__gamma": [0.01, 0.1]}
    ours = SearchCV(model, th.Space({k: th.Choice(v) for k, v in grid.items()}), searcher="grid", n_trials=None,
                    cv=2, progress=False).fit(X, y)
    theirs = GridSearchCV(model, grid, cv=2).fit(X, y)
    assert ours.best_score_ == pytest.approx(theirs.best_score_)
    assert ours.best_params_ == theirs.best_params_
    assert len(ours.cv_results_["params"]) == 6 and sorted(ours.cv_results_["rank_test_score"]) == [1, 2, 3, 4, 5, 6]
    assert ours.score(X, y) == pytest.approx(theirs.score(X, y))


def test_tpe_search_refits_and_predicts(tmp_path):
    X, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))
    space = th.Space({"logisticregression__C": th.Float(1e-4, 1e2, log=True)})
    search = SearchCV(model, space, n_trials=12, cv=3, scoring="roc_auc", storage=tmp_path / "cv.db", seed=0,
                      progress=False).fit(X, y)
    assert search.best_score_ > 0.98
    assert search.predict(X).shape == y.shape and search.predict_proba(X).shape == (len(y), 2)
    assert np.nanmax(search.cv_results_["mean_test_score"]) == search.best_score_
    assert len(th.Study.load(tmp_path / "cv.db").trials) == 12  # kept on disk


def test_failed_fits_are_recorded_not_raised():
    X, y = load_wine(return_X_y=True)
    space = th.Space({"C": th.Choice([-1.0, 1.0])})  # a negative C is invalid for SVC: that fit fails
    search = SearchCV(SVC(), space, searcher="grid", n_trials=None, cv=2, progress=False).fit(X, y)
    assert search.cv_results_["status"] == ["failed", "completed"]
    assert search.cv_results_["rank_test_score"].tolist() == [2, 1] and search.best_params_ == {"C": 1.0}
