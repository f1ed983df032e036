"""torchhpo: PyTorch-native hyperparameter optimization.

Decorate a training function, declare a search space, and let a study find the best hyperparameters::

    import torchhpo as th

    @th.tune(th.Space({"lr": th.Float(1e-4, 1e-1, log=True)}), mode="max", max_epochs=10)
    def train(config, trial):
        ...

    study = train.optimize(n_trials=20, storage="runs/x.db")
"""

from torchhpo import bench
from torchhpo.executors import Inline
from torchhpo.gp import GP, GPOptions
from torchhpo.searchers import GridSearch, RandomSearch, Sobol
from torchhpo.space import Choice, Float, Int, Space
from torchhpo.storage import MemoryStorage, SQLiteStorage
from torchhpo.study import SearchExhausted, Study, tune
from torchhpo.trial import Decision, Status, Trial, TrialPruned, TrialRecord

__version__ = "0.1.0"

__all__ = [
    "GP",
    "Choice",
    "Decision",
    "Float",
    "GPOptions",
    "GridSearch",
    "Inline",
    "Int",
    "MemoryStorage",
    "RandomSearch",
    "SQLiteStorage",
    "SearchExhausted",
    "Sobol",
    "Space",
    "Status",
    "Study",
    "Trial",
    "TrialPruned",
    "TrialRecord",
    "bench",
    "tune",
]
