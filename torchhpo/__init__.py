"""torchhpo: PyTorch-native hyperparameter optimization.

Decorate a training function, declare a search space, and let a study find the best hyperparameters::

    import torchhpo as th

    @th.tune(th.Space({"lr": th.Float(1e-4, 1e-1, log=True)}), mode="max", max_epochs=10)
    def train(config, trial):
        ...

    study = train.optimize(n_trials=20, storage="runs/x.db")
"""

import typing as _typing

from torchhpo.executors import Inline, Processes, Ray
from torchhpo.schedulers import (
    ASHA,
    BudgetScheduler,
    FreezeThaw,
    Hyperband,
    MedianStopping,
    Patience,
    RungScheduler,
    Scheduler,
    Schedulers,
    SuccessiveHalving,
)
from torchhpo.searchers import GridSearch, RandomSearch, Sobol
from torchhpo.space import Choice, Float, Int, Space
from torchhpo.storage import MemoryStorage, SQLiteStorage
from torchhpo.study import FailingTrials, SearchExhausted, Study, tune
from torchhpo.tpe import TPE
from torchhpo.trial import Decision, ReportFailed, Status, Trial, TrialPaused, TrialPruned, TrialRecord

__version__ = "0.1.0"

__all__ = [
    "ASHA",
    "BudgetScheduler",
    "Choice",
    "Decision",
    "FailingTrials",
    "Float",
    "FreezeThaw",
    "GP",
    "GPOptions",
    "GridSearch",
    "Hyperband",
    "Inline",
    "Int",
    "MedianStopping",
    "MemoryStorage",
    "Patience",
    "Processes",
    "RandomSearch",
    "Ray",
    "ReportFailed",
    "RungScheduler",
    "SQLiteStorage",
    "Scheduler",
    "Schedulers",
    "SearchExhausted",
    "Sobol",
    "Space",
    "Status",
    "Study",
    "SuccessiveHalving",
    "TPE",
    "Trial",
    "TrialPaused",
    "TrialPruned",
    "TrialRecord",
    "bench",
    "plot",
    "tune",
]

if _typing.TYPE_CHECKING:
    from torchhpo import bench, plot
    from torchhpo.gp import GP, GPOptions

_LAZY = {"GP": "torchhpo.gp", "GPOptions": "torchhpo.gp", "bench": "torchhpo.bench", "plot": "torchhpo.plot"}
_MODULES = {"bench", "plot"}


def __getattr__(name: str) -> _typing.Any:
    """``th.GP`` and ``th.GPOptions`` import BoTorch on first use, not with ``import torchhpo``; ``th.bench`` (benchmark
    problems and ``compare``) and ``th.plot`` (matplotlib) load on first use too."""
    if name not in _LAZY:
        raise AttributeError(f"module 'torchhpo' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(_LAZY[name])
    value = module if name in _MODULES else getattr(module, name)
    globals()[name] = value
    return value
