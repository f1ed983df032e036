"""A conditional search space: the lecture's hyperopt MLP with one width per hidden layer, on scikit-learn's digits.

hyperopt's example nests its space: the number of hidden layers decides which layer widths exist. Here
``units_2`` exists only when there are 2 or 3 layers, ``units_3`` only with 3, and SGD's ``momentum`` only
when the optimizer is SGD (``when=``). Configs hold the active parameters alone, so a 1-layer trial is stored,
shown and counted as ``{"layers": 1, "units_1": ..., "optimizer": "adam", "lr": ...}``; TPE fits each width on
the trials that had it, the GP encodes an absent width at a fixed value (see docs/search.md).

    python recipes/conditional_mlp_digits.py                  # TPE, CPU, ~30 seconds
    python recipes/conditional_mlp_digits.py --searcher gp    # Bayesian optimization over the same space
"""

from __future__ import annotations

import argparse
import itertools

import torch
from torch import nn

import torchhpo as th
from torchhpo.problems import digits_data, evaluate

# --- configuration -----------------------------------------------------------------------------------------------
TRIALS = 20
EPOCHS = 5
BATCH_SIZE = 32
STORAGE = "runs/conditional_mlp_digits.db"
WIDTHS = [32, 64, 128, 256]
# ------------------------------------------------------------------------------------------------------------------

space = th.Space({
    "layers": th.Int(1, 3),
    "units_1": th.Choice(WIDTHS),
    "units_2": th.Choice(WIDTHS, when={"layers": [2, 3]}),
    "units_3": th.Choice(WIDTHS, when={"layers": 3}),
    "optimizer": th.Choice(["adam", "sgd"]),
    "momentum": th.Float(0.5, 0.99, when={"optimizer": "sgd"}),
    "lr": th.Float(1e-4, 1e-1, log=True),
})


def mlp(config: dict) -> nn.Sequential:
    """Linear -> ReLU blocks of the widths the config has (``units_1`` .. ``units_<layers>``), then 10 classes."""
    widths = [64] + [config[f"units_{i}"] for i in range(1, config["layers"] + 1)]
    blocks: list[nn.Module] = [nn.Flatten()]
    for a, b in itertools.pairwise(widths):
        blocks += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*blocks, nn.Linear(widths[-1], 10))


@th.tune(space, mode="max", max_epochs=EPOCHS)
def train(config, trial):
    """Train the MLP; report and return validation accuracy."""
    torch.manual_seed(trial.number)
    data = digits_data().to(trial.device)
    model = mlp(config).to(trial.device)
    if config["optimizer"] == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=config["momentum"])
    else:
        opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
    acc = 0.0
    for _ in trial.epochs():
        model.train()
        for idx in torch.randperm(len(data.y_train), device=trial.device).split(BATCH_SIZE):
            opt.zero_grad()
            nn.functional.cross_entropy(model(data.X_train[idx]), data.y_train[idx]).backward()
            opt.step()
        _, acc = evaluate(model, data.X_val, data.y_val)
        trial.report(acc)
    return acc


def main() -> th.Study:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=TRIALS)
    parser.add_argument("--searcher", default="tpe", choices=["tpe", "gp", "random", "sobol"])
    parser.add_argument("--storage", default=STORAGE)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    study = train.optimize(n_trials=args.trials, searcher=args.searcher, storage=args.storage, seed=args.seed,
                           executor=th.Inline(args.device), progress=not args.no_progress)
    best = study.best
    print(f"best of {len(study.trials)} trials: {best.config} validation accuracy {best.value:.3f}")
    by_depth = {d: sum(t.config["layers"] == d for t in study.trials) for d in (1, 2, 3)}
    print(f"trials by depth: {by_depth}")
    return study


if __name__ == "__main__":
    main()
