"""Hyperband over the digits CNN: learning rate, weight decay, depth, filters, dropout, batch size, optimizer.

Each trial trains at most 27 epochs; Hyperband (Li et al., 2018) starts many configs on a few epochs and gives
the survivors of each rung three times more. Trials that wait for their rung are paused and resumed from their
checkpoint (``trial.save`` / ``trial.load``), so no epoch is trained twice.

    python recipes/hyperband_cnn_digits.py                                   # CPU, 143 trials (one Hyperband round)
    python recipes/hyperband_cnn_digits.py --scheduler=asha --n_trials=60    # asynchronous, never waits
    python recipes/hyperband_cnn_digits.py --fidelity=data                   # rungs over fractions of the data
    python recipes/hyperband_cnn_digits.py --storage=runs/digits.db          # resumable: rerun to go on
    python recipes/hyperband_cnn_digits.py --device=cuda                     # one GPU

Every setting below can be overridden as ``--name=value``.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch import nn

import torchhpo as th
from torchhpo.problems import DigitsCNN, digits_data, digits_space, evaluate
from torchhpo.schedulers import make_scheduler

# --- configuration -------------------------------------------------------------------------------------------
max_epochs = 27        # R: epochs of a fully trained config
min_epochs = 1         # r: epochs at the first rung
eta = 3                # keep the top 1/eta at each rung
scheduler = "hyperband"  # "hyperband" | "sha" | "asha" | "median"
searcher = "random"    # "random" | "sobol" | "gp" (BOHB-style: the GP sees every bracket's results)
fidelity = "epochs"    # "epochs" | "data" (rung r of R trains max_epochs on the fraction r/R of the data)
n_trials = 143         # one round of Hyperband brackets for R=27, eta=3: 27 + 12 + 6 + 4 (+ repeats)
n_train = 500          # training samples (a small set keeps validation loss informative)
device = "cpu"
storage = ""           # a .db path to keep (and resume) the study; "" keeps it in memory
seed = 0
# -------------------------------------------------------------------------------------------------------------


def train(config: dict, trial: th.Trial) -> float:
    """Train one config; report validation loss after each epoch; checkpoint so that a paused trial resumes."""
    data = digits_data(n_train=n_train).to(trial.device)
    torch.manual_seed(seed + trial.number)
    model = DigitsCNN(config["layers"], config["filters"], config["dropout"]).to(trial.device)
    make = torch.optim.SGD if config["optimizer"] == "sgd" else torch.optim.AdamW
    extra = {"momentum": 0.9} if config["optimizer"] == "sgd" else {}
    opt = make(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"], **extra)
    gen = torch.Generator().manual_seed(seed + trial.number)
    saved = trial.load()
    if saved is not None:  # resumed after a pause: go on where it stopped
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        gen.set_state(saved["gen"])
    n = max(2, round(trial.fidelity * len(data.y_train)))
    X, y = data.X_train[:n], data.y_train[:n]
    loss = float("inf")
    for _ in trial.epochs():
        model.train()
        for idx in torch.randperm(n, generator=gen).to(trial.device).split(config["batch_size"]):
            if len(idx) < 2:  # batch norm needs two samples
                continue
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
            opt.step()
        loss, _ = evaluate(model, data.X_val, data.y_val)
        trial.save({"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state()})
        trial.report(loss)  # may raise TrialPruned / TrialPaused: let it propagate
    return loss


def main(**overrides: object) -> th.Study:
    """Run the study with the settings above, changed by ``overrides`` (``--name=value`` on the command line)."""
    settings = globals()
    for name, value in overrides.items():
        if name not in CONFIG:
            raise ValueError(f"unknown setting '{name}'; the settings are {sorted(CONFIG)}")
        settings[name] = type(CONFIG[name])(value)
    sched = make_scheduler(scheduler, seed=seed, max_epochs=max_epochs, **(
        {} if scheduler == "median" else {"min_epochs": min_epochs, "eta": eta}))
    study = th.Study(digits_space(), mode="min", searcher=searcher, scheduler=sched, storage=storage or None,
                     name="hyperband_cnn_digits", seed=seed, max_epochs=max_epochs, fidelity=fidelity)
    study.optimize(train, n_trials=n_trials, devices=device, progress=sys.stderr.isatty())
    best = study.best
    epochs = sum(len(t.reports) for t in study.trials)
    # the best trial's weights, as it saved them after its last epoch (the study keeps the best checkpoint)
    model = DigitsCNN(best.config["layers"], best.config["filters"], best.config["dropout"])
    model.load_state_dict(study.checkpoint(best)["model"])
    data = digits_data(n_train=n_train)
    _, test_acc = evaluate(model, data.X_test, data.y_test)
    print(f"{len(study.trials)} trials, {epochs} epochs reported ({epochs / max_epochs:.1f} full runs); "
          f"best validation loss {best.value:.4f} (trial {best.number}): {best.config}; its test accuracy "
          f"{test_acc:.4f}")
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
