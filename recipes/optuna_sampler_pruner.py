"""An existing Optuna study of a digits MLP, switched to torchhpo's GP and Hyperband in one line.

The objective below is plain Optuna (``trial.suggest_*``, ``trial.report``, ``trial.should_prune``); the study runs
once with Optuna's TPESampler and HyperbandPruner and once with ``TorchHPOSampler(th.GP())`` and
``TorchHPOPruner(th.Hyperband(...))``, the same objective, budget and seed. Nothing else changes: storage,
``n_jobs``, ``enqueue_trial`` and the dashboard work as before (docs/optuna.md).

    python recipes/optuna_sampler_pruner.py                       # CPU, 40 trials of up to 27 epochs each
    python recipes/optuna_sampler_pruner.py --smoke               # seconds: 5 trials of up to 3 epochs
    python recipes/optuna_sampler_pruner.py --n_trials=80 --storage=sqlite:///runs/optuna.db   # resumable
"""

from __future__ import annotations

import argparse

import optuna
import torch
from torch import nn

import torchhpo as th
from torchhpo.integrations.optuna import TorchHPOPruner, TorchHPOSampler
from torchhpo.problems import DigitsMLP, digits_data, evaluate

# --- configuration -------------------------------------------------------------------------------------------
max_epochs = 27        # a fully trained trial; Hyperband's rungs are 1, 3, 9 and 27 epochs
n_trials = 40
n_train = 500          # training samples
storage = ""           # an Optuna storage URL (sqlite:///runs/optuna.db) to keep the studies; "" keeps them in memory
seed = 0
# -------------------------------------------------------------------------------------------------------------
SMOKE = {"max_epochs": 3, "n_trials": 5, "n_train": 100}


def objective(trial: optuna.Trial) -> float:
    """Train one MLP on the digits; report validation loss after each epoch (Optuna's steps count from 0)."""
    lr = trial.suggest_float("lr", 1e-4, 3e-1, log=True)
    layers = trial.suggest_int("layers", 1, 3)
    units = trial.suggest_int("units", 16, 256, log=True)
    dropout = trial.suggest_float("dropout", 0.0, 0.5, step=0.1)
    optimizer = trial.suggest_categorical("optimizer", ["adamw", "sgd"])
    batch_size = trial.suggest_categorical("batch_size", [16, 32, 64])
    data = digits_data(n_train=n_train)
    torch.manual_seed(seed + trial.number)
    model = DigitsMLP(layers, units, dropout)
    make = torch.optim.SGD if optimizer == "sgd" else torch.optim.AdamW
    opt = make(model.parameters(), lr=lr, **({"momentum": 0.9} if optimizer == "sgd" else {}))
    loss = float("inf")
    for epoch in range(max_epochs):
        model.train()
        for idx in torch.randperm(len(data.y_train)).split(batch_size):
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(data.X_train[idx]), data.y_train[idx]).backward()
            opt.step()
        loss, _ = evaluate(model, data.X_val, data.y_val)
        trial.report(loss, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return loss


def run(name: str, sampler: optuna.samplers.BaseSampler, pruner: optuna.pruners.BasePruner) -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=storage or None, load_if_exists=True, direction="minimize",
                                sampler=sampler, pruner=pruner)
    study.optimize(objective, n_trials=n_trials)
    epochs = sum(len(t.intermediate_values) for t in study.trials)
    pruned = sum(t.state is optuna.trial.TrialState.PRUNED for t in study.trials)
    print(f"{name}: best val loss {study.best_value:.4f} in {len(study.trials)} trials ({pruned} pruned, {epochs} "
          f"epochs = {epochs / max_epochs:.1f} full runs): {study.best_params}")
    return study


def main(**overrides: object) -> None:
    """Run both studies with the settings above, changed by ``overrides`` (``--name=value``; ``--smoke``)."""
    settings = globals()
    for name, value in overrides.items():
        if name not in CONFIG:
            raise ValueError(f"unknown setting '{name}'; the settings are {sorted(CONFIG)} and --smoke")
        settings[name] = type(CONFIG[name])(value)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)  # a small MLP: one thread is fastest and leaves the other cores free
    run("optuna (TPESampler + HyperbandPruner)", optuna.samplers.TPESampler(seed=seed),
        optuna.pruners.HyperbandPruner(1, max_epochs, 3))
    # the one-line switch: the same study with torchhpo's GP and Hyperband
    run("torchhpo (GP + Hyperband)", TorchHPOSampler(th.GP(seed=seed), seed=seed),
        TorchHPOPruner(th.Hyperband(1, max_epochs, 3)))


CONFIG = {k: v for k, v in dict(globals()).items() if not k.startswith("_") and isinstance(v, (int, float, str))}



def parse(argv: list[str] | None = None) -> dict[str, object]:
    """The settings given on the command line (``--name=value``), over ``SMOKE``'s with ``--smoke``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, value in CONFIG.items():
        parser.add_argument(f"--{name}", type=type(value), default=None, help=f"default: {value!r}")
    parser.add_argument("--smoke", action="store_true", help=f"a seconds-long run: {SMOKE}")
    args = vars(parser.parse_args(argv))
    given = {k: v for k, v in args.items() if k != "smoke" and v is not None}
    return {**SMOKE, **given} if args["smoke"] else given


if __name__ == "__main__":
    main(**parse())
