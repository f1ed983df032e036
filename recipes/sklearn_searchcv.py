"""scikit-learn's GridSearchCV and RandomizedSearchCV, then TPE, on the digits data: the lecture's Python example.

The lecture wraps a model for scikit-learn and runs GridSearchCV (cv=2), then RandomizedSearchCV. SearchCV keeps
that interface and swaps in any torchhpo searcher: here a grid, then TPE over continuous log-scaled ranges, which
finds a better SVM in the same number of fits. Every option of SearchCV: docs/sklearn.md.

    python recipes/sklearn_searchcv.py                  # CPU, ~30 seconds
    python recipes/sklearn_searchcv.py --trials 60      # a longer TPE search
"""

from __future__ import annotations

import argparse

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

import torchhpo as th
from torchhpo.integrations.sklearn import SearchCV

# --- configuration -----------------------------------------------------------------------------------------------
GRID = {"svc__C": [0.1, 1.0, 10.0], "svc__gamma": [1e-3, 1e-2, 1e-1]}
CV = 2
SEED = 0
# ------------------------------------------------------------------------------------------------------------------


def main() -> tuple[SearchCV, SearchCV]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=9, help="TPE fits (default: as many as the grid has)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=SEED, stratify=y)
    model = make_pipeline(StandardScaler(), SVC())

    grid_space = th.Space({name: th.Choice(values) for name, values in GRID.items()})
    grid = SearchCV(model, grid_space, searcher="grid", n_trials=None, cv=CV, progress=not args.no_progress)
    grid.fit(X_train, y_train)

    tpe_space = th.Space({"svc__C": th.Float(1e-2, 1e3, log=True), "svc__gamma": th.Float(1e-5, 1.0, log=True)})
    tpe = SearchCV(model, tpe_space, searcher=th.TPE(n_initial=min(5, args.trials), seed=SEED), n_trials=args.trials,
                   cv=CV, seed=SEED, progress=not args.no_progress)
    tpe.fit(X_train, y_train)

    for name, search in (("grid", grid), ("tpe", tpe)):
        params = ", ".join(f"{k.split('__')[1]}={v:.3g}" for k, v in search.best_params_.items())
        print(f"{name:>4}: cv accuracy {search.best_score_:.4f}, test accuracy {search.score(X_test, y_test):.4f} "
              f"({params})")
    return grid, tpe


if __name__ == "__main__":
    main()
