"""Freeze-thaw over the digits CNN: trials train in short increments and resume when their predicted curve earns it.

Every config trains ``min_epochs`` and pauses (its checkpoint kept); whenever a worker is free, ``th.FreezeThaw``
fits a Gaussian process to every trial's partial learning curve and either resumes the paused trial most likely to
beat the best fully trained one (per epoch it still needs) or lets the searcher start a new config
(docs/pruning.md, "Freeze-thaw").

    python recipes/freeze_thaw_cnn_digits.py                             # CPU, GP searcher, 60 configs
    python recipes/freeze_thaw_cnn_digits.py --searcher=tpe --n_trials=100
    python recipes/freeze_thaw_cnn_digits.py --storage=runs/ft.db        # resumable: rerun to go on
    python recipes/freeze_thaw_cnn_digits.py --device=cuda               # one GPU

Every setting below can be overridden as ``--name=value``.
"""

from __future__ import annotations

import argparse
import sys

import torchhpo as th
from torchhpo.problems import TASKS, digits_data, digits_space, evaluate, train_digits_cnn

# --- configuration -------------------------------------------------------------------------------------------
max_epochs = 27        # epochs of a fully trained config
min_epochs = 1         # every config trains this much before its first pause
growth = 1.5           # a resumed trial trains to its next pause step, this many times the last one
searcher = "gp"        # "gp" | "tpe" | "random"
n_trials = 60          # new configs (resumes are extra)
device = "cpu"
storage = ""           # a .db path to keep (and resume) the study; "" keeps it in memory
seed = 0
# -------------------------------------------------------------------------------------------------------------


def main(**overrides: object) -> th.Study:
    """Run the study with the settings above, changed by ``overrides`` (``--name=value`` on the command line)."""
    settings = globals()
    for name, value in overrides.items():
        if name not in CONFIG:
            raise ValueError(f"unknown setting '{name}'; the settings are {sorted(CONFIG)}")
        settings[name] = type(CONFIG[name])(value)
    scheduler = th.FreezeThaw(min_epochs, max_epochs, growth=growth)
    study = th.Study(digits_space(), mode="min", searcher=searcher, scheduler=scheduler, storage=storage or None,
                     name="freeze_thaw_cnn_digits", seed=seed, max_epochs=max_epochs)
    study.optimize(lambda config, trial: train_digits_cnn(config, trial, seed=seed), n_trials=n_trials,
                   devices=device, progress=sys.stderr.isatty())
    best = study.best
    epochs = sum(len(t.reports) for t in study.trials)
    model = TASKS["digits_cnn"].model(best.config)  # the best trial's weights, as it saved them
    model.load_state_dict(study.checkpoint(best)["model"])
    data = digits_data()
    _, test_acc = evaluate(model, data.X_test, data.y_test)
    per = scheduler.cpu_seconds / max(scheduler.decisions, 1)
    print(f"{len(study.trials)} trials, {epochs} epochs reported ({epochs / max_epochs:.1f} full runs), "
          f"{scheduler.decisions} model decisions ({per:.2f} CPU s each); best validation loss {best.value:.4f} "
          f"(trial {best.number}): {best.config}; its test accuracy {test_acc:.4f}")
    return study


CONFIG = {k: v for k, v in dict(globals()).items() if not k.startswith("_") and isinstance(v, (int, float, str))}



def parse(argv: list[str] | None = None) -> dict[str, object]:
    """The settings as given on the command line: one ``--name=value`` option per setting above."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, value in CONFIG.items():
        parser.add_argument(f"--{name}", type=type(value), default=value, help=f"default: {value!r}")
    return vars(parser.parse_args(argv))


if __name__ == "__main__":
    main(**parse())
