"""torchhpo: PyTorch-native hyperparameter optimization.

Decorate a training function, declare a search space, and let a study find the best hyperparameters::

    import torchhpo as th

    @th.tune(th.Space({"lr": th.Float(1e-4, 1e-1, log=True)}), mode="max", max_epochs=10)
    def train(config, trial):
        ...

    study = train.optimize(n_trials=20, storage="runs/x.db")
"""

from torchhpo.executors import Inline, Processes, Ray
from torchhpo.schedulers import ASHA, Hyperband, MedianStopping, SuccessiveHalving
from torchhpo.searchers import GridSearch, RandomSearch, Sobol
from torchhpo.space import Choice, Float, Int, Space
from torchhpo.storage import MemoryStorage, SQLiteStorage
from torchhpo.study import SearchExhausted, Study, tune
from torchhpo.tpe import TPE
from torchhpo.trial import Decision, Status, Trial, TrialPaused, TrialPruned, TrialRecord

__version__ = "0.1.0"

__all__ = [
    "ASHA",
    "Choice",
    "Decision",
    "Float",
    "GridSearch",
    "Hyperband",
    "Inline",
    "Int",
    "MedianStopping",
    "MemoryStorage",
    "Processes",
    "RandomSearch",
    "Ray",
    "SQLiteStorage",
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
    "tune",
]
