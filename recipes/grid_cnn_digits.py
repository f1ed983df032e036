"""Grid search over a small CNN on scikit-learn's digits: the lecture's first example, in PyTorch.

The lecture loops over num_layers in {2, 3, 4} x num_filters in {32, 64, 128}, builds blocks of
conv 3x3 (same padding) -> batch norm -> ReLU -> max-pool 2, then a linear classifier, trains with Adam and keeps
the configuration with the best final validation accuracy. Here torchhpo's GridSearch does the loop and a SQLite
file keeps every trial (re-running the command resumes and skips the grid points already done).

    python recipes/grid_cnn_digits.py                       # CPU, ~1 minute
    python recipes/grid_cnn_digits.py --device cuda         # one GPU
    torchhpo show runs/grid_cnn_digits.db                   # the table of trials afterwards
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import torchhpo as th
from torchhpo.problems import DigitsCNN, digits_data, evaluate

# --- configuration -----------------------------------------------------------------------------------------------
LAYERS = [2, 3, 4]
FILTERS = [32, 64, 128]
EPOCHS = 15
LR = 1e-3
BATCH_SIZE = 32
STORAGE = "runs/grid_cnn_digits.db"
# ------------------------------------------------------------------------------------------------------------------

space = th.Space({"num_layers": th.Choice(LAYERS), "num_filters": th.Choice(FILTERS)})


def train(config, trial):
    """Train the CNN for ``trial.max_epochs`` epochs with Adam; report and return validation accuracy."""
    torch.manual_seed(0)
    data = digits_data().to(trial.device)
    model = DigitsCNN(config["num_layers"], config["num_filters"]).to(trial.device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
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
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--storage", default=STORAGE)
    parser.add_argument("--device", default="auto", help="'auto' (first GPU, else CPU), 'cpu' or 'cuda'")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    study = th.Study(space, mode="max", searcher=th.GridSearch(), storage=args.storage, max_epochs=args.epochs)
    study.optimize(train, executor=th.Inline(args.device), progress=not args.no_progress)
    print(f"{'layers':>6} {'filters':>7} {'val acc':>7}")
    for t in sorted(study.trials, key=lambda t: (t.config["num_layers"], t.config["num_filters"])):
        value = float("nan") if t.value is None else t.value
        print(f"{t.config['num_layers']:>6} {t.config['num_filters']:>7} {value:>7.3f}")
    print(f"best: {study.best.config} validation accuracy {study.best.value:.3f}")
    return study


if __name__ == "__main__":
    main()
