"""Tune the digits CNN (learning rate, weight decay, width, depth, dropout) with GP Bayesian optimization.

Each trial trains the lecture's CNN (conv 3x3 -> batch norm -> ReLU -> max-pool blocks) on scikit-learn's digits
and returns the validation loss; the GP (LogEI) proposes the next config from all finished trials. Every trial
is kept in a SQLite file: rerun the same command to resume.

    python recipes/gp_cnn_digits.py                                   # 30 trials x 15 epochs, CPU (~5 minutes)
    python recipes/gp_cnn_digits.py --device cuda                     # one GPU
    python recipes/gp_cnn_digits.py --trials 4 --n-initial 2 --epochs 1 --storage ""   # smoke run, nothing kept
"""

from __future__ import annotations

import argparse
import tempfile

import torchhpo as th
from torchhpo.problems import DigitsCNN, digits_data, evaluate, train_digits_cnn

# --- configuration --------------------------------------------------------------------------------------------
SPACE = th.Space({
    "lr": th.Float(1e-4, 3e-1, log=True),
    "weight_decay": th.Float(1e-6, 1e-1, log=True),
    "filters": th.Int(4, 64, log=True),  # width
    "layers": th.Int(1, 3),  # depth
    "dropout": th.Float(0.0, 0.6),
})
TRIALS = 30
EPOCHS = 15
N_INITIAL = 8  # Sobol points before the GP
STORAGE = "runs/gp_cnn_digits.db"
SEED = 0
# ----------------------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=TRIALS)
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--storage", default=STORAGE, help="SQLite file ('' keeps the study in memory)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--n-initial", type=int, default=N_INITIAL, help="Sobol points before the GP")
    args = ap.parse_args()
    if args.storage:
        from pathlib import Path

        Path(args.storage).parent.mkdir(parents=True, exist_ok=True)
    study = th.Study(SPACE, mode="min", searcher=th.GP(n_initial=args.n_initial, seed=args.seed),
                     storage=args.storage or None, max_epochs=args.epochs, seed=args.seed)
    data = digits_data()
    study.optimize(lambda config, trial: train_digits_cnn(config, trial, data=data),
                   n_trials=max(0, args.trials - len(study.trials)), devices=[args.device], progress=False)
    best = study.best
    print(f"best validation loss {best.value:.4f} (trial {best.number} of {len(study.trials)}): {best.config}")

    print(f"test accuracy of the chosen config, retrained: {test_accuracy(best.config, args.epochs, args.device):.4f}")


def test_accuracy(config: dict, epochs: int, device: str) -> float:
    """Retrain ``config`` with the same training function (checkpointing to a temporary folder), then score the
    trained model on the held-out test split."""
    with tempfile.TemporaryDirectory() as tmp:
        trial = th.Trial(0, config, max_epochs=epochs, device=device, checkpoint_dir=tmp)
        train_digits_cnn(config, trial)
        model = DigitsCNN(config["layers"], config["filters"], config["dropout"]).to(device)
        model.load_state_dict(trial.load()["model"])
    data = digits_data().to(device)
    return evaluate(model, data.X_test, data.y_test)[1]


if __name__ == "__main__":
    main()
