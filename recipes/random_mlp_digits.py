"""Random search over an MLP on scikit-learn's digits: the lecture's hyperopt example, in PyTorch.

The lecture tunes num_hidden_layers in {1, 2, 3} and num_hidden_units in {32, 64, 128, 256} for an MLP on MNIST
(5 epochs, batch 32, objective -accuracy, 20 evaluations). Random search draws values at random, which avoids
re-evaluating the same value of an unimportant parameter; here the learning rate joins, on a log scale.

    python recipes/random_mlp_digits.py                     # CPU, ~20 seconds
    python recipes/random_mlp_digits.py --searcher sobol    # quasi-random: more even coverage
    python recipes/random_mlp_digits.py --device cuda       # one GPU
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import torchhpo as th
from torchhpo.problems import DigitsMLP, digits_data, evaluate

# --- configuration -----------------------------------------------------------------------------------------------
TRIALS = 20
EPOCHS = 5
BATCH_SIZE = 32
STORAGE = "runs/random_mlp_digits.db"
# ------------------------------------------------------------------------------------------------------------------

space = th.Space({
    "num_hidden_layers": th.Choice([1, 2, 3]),
    "num_hidden_units": th.Choice([32, 64, 128, 256]),
    "lr": th.Float(1e-4, 1e-1, log=True),
})


@th.tune(space, mode="max", max_epochs=EPOCHS)
def train(config, trial):
    """Train the MLP with Adam; report and return validation accuracy."""
    torch.manual_seed(trial.number)
    data = digits_data().to(trial.device)
    model = DigitsMLP(config["num_hidden_layers"], config["num_hidden_units"]).to(trial.device)
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
    parser.add_argument("--searcher", default="random", choices=["random", "sobol"])
    parser.add_argument("--storage", default=STORAGE)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    study = train.optimize(n_trials=args.trials, searcher=args.searcher, storage=args.storage, seed=args.seed,
                           executor=th.Inline(args.device), progress=not args.no_progress)
    best = study.best
    print(f"best of {len(study.trials)} trials: {best.config} validation accuracy {best.value:.3f}")
    return study


if __name__ == "__main__":
    main()
