"""Problems to tune: a CNN and an MLP on scikit-learn's bundled digits data, a 1-D CNN on generated signals (real
training; nothing downloads).

``digits_space()`` and ``train_digits_cnn(config, trial)`` are the embedded default job (``torchhpo run``) and the
recipes' shared model; ``TASKS`` names each network with its space, model and training function, which
``benchmarks/make_curves.py`` trains to make the learning-curve tables of the multi-fidelity benchmark (and
``torchhpo.simulate.Curves.load`` knows by name).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import nn

from torchhpo.space import Choice, Float, Int, Space
from torchhpo.trial import Trial

__all__ = ["TASKS", "DigitsCNN", "DigitsData", "DigitsMLP", "SignalsCNN", "Task", "digits_data", "digits_mlp_space",
           "digits_space", "signals_data", "signals_space", "train_digits_cnn", "train_digits_mlp", "train_signals_cnn"]

SIGNAL_CLASSES = 4  # motif shapes to tell apart
SIGNAL_LENGTH = 32  # samples per signal
MOTIF_WIDTH = 12  # samples per motif
SIGNAL_NOISE = 0.3  # standard deviation of the white noise around the motif
SIGNAL_TREND = 0.2  # standard deviation of the slope of each signal's linear trend


@dataclass(frozen=True)
class DigitsData:
    """Inputs and integer labels split train / validation / test: digits as ``n x 1 x 8 x 8`` float images in [0, 1]
    (``digits_data``), or ``n x 1 x L`` signals (``signals_data``)."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor

    def to(self, device: torch.device | str) -> DigitsData:
        return DigitsData(*(t.to(device) for t in (self.X_train, self.y_train, self.X_val, self.y_val,
                                                     self.X_test, self.y_test)))


@lru_cache(maxsize=8)
def digits_data(n_train: int = 500, n_val: int = 500, seed: int = 0) -> DigitsData:
    """A seeded split of the 1,797 digits: ``n_train`` to train, ``n_val`` to validate, the rest to test.

    A small training set (500 by default) keeps validation loss from saturating, so configs can be told apart.
    """
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    if n_train + n_val >= len(labels):
        raise ValueError(f"digits_data: n_train + n_val = {n_train + n_val} must leave a test set of the "
                         f"{len(labels)} samples")
    order = np.random.default_rng(seed).permutation(len(labels))
    X = torch.tensor(images[order] / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(labels[order], dtype=torch.long)
    a, b = n_train, n_train + n_val
    return DigitsData(X[:a], y[:a], X[a:b], y[a:b], X[b:], y[b:])


@lru_cache(maxsize=8)
def signals_data(n_train: int = 256, n_val: int = 256, n_test: int = 512, seed: int = 0) -> DigitsData:
    """Generated 1-D signals (``n x 1 x 32``) of 4 classes: class ``c``'s motif, a Hann-windowed sine of ``c + 1``
    periods over 12 samples, at a random position with a random amplitude in [0.5, 1.5], on a random linear trend
    (slope's standard deviation 0.2) plus white noise (standard deviation 0.3).

    The same seed gives the same tensors everywhere (numpy's generator, no download). The noise, the motif's
    unknown position and a small training set (256) keep the task from saturating: the best configs reach ~87% in 81
    epochs, and slow ones are still learning.
    """
    rng = np.random.default_rng(seed)
    n = n_train + n_val + n_test
    t = np.arange(MOTIF_WIDTH) / MOTIF_WIDTH
    motifs = np.hanning(MOTIF_WIDTH) * np.sin(2 * np.pi * np.arange(1, SIGNAL_CLASSES + 1)[:, None] * t)  # C x W
    labels = rng.integers(0, SIGNAL_CLASSES, n)
    start = rng.integers(0, SIGNAL_LENGTH - MOTIF_WIDTH + 1, n)
    amplitude = rng.uniform(0.5, 1.5, n)
    trend = rng.normal(0.0, SIGNAL_TREND, (n, 1)) * np.linspace(-1.0, 1.0, SIGNAL_LENGTH)  # n x L
    signals = trend + rng.normal(0.0, SIGNAL_NOISE, (n, SIGNAL_LENGTH))  # n x L
    signals[np.arange(n)[:, None], start[:, None] + np.arange(MOTIF_WIDTH)] += amplitude[:, None] * motifs[labels]
    X = torch.tensor(signals, dtype=torch.float32).reshape(n, 1, SIGNAL_LENGTH)
    y = torch.tensor(labels, dtype=torch.long)
    a, b = n_train, n_train + n_val
    return DigitsData(X[:a], y[:a], X[a:b], y[a:b], X[b:], y[b:])


class DigitsCNN(nn.Module):
    """The lecture's CNN: ``layers`` blocks of conv 3x3 (same padding) -> batch norm -> ReLU -> max-pool 2, then
    dropout and a linear classifier over 10 classes. Input ``n x 1 x 8 x 8``, output ``n x 10`` logits."""

    def __init__(self, layers: int = 2, filters: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        channels, size = 1, 8
        for _ in range(layers):
            blocks += [nn.Conv2d(channels, filters, 3, padding=1), nn.BatchNorm2d(filters), nn.ReLU(),
                       nn.MaxPool2d(2, ceil_mode=True)]
            channels, size = filters, math.ceil(size / 2)
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels * size * size, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class DigitsMLP(nn.Module):
    """A multilayer perceptron on the flattened 8 x 8 digits: ``layers`` blocks of linear -> ReLU -> dropout of
    ``units`` each, then a linear classifier over 10 classes. Input ``n x 1 x 8 x 8`` (or ``n x 64``)."""

    def __init__(self, layers: int = 2, units: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Flatten()]
        width = 64
        for _ in range(layers):
            blocks += [nn.Linear(width, units), nn.ReLU(), nn.Dropout(dropout)]
            width = units
        self.net = nn.Sequential(*blocks, nn.Linear(width, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SignalsCNN(nn.Module):
    """A 1-D CNN: ``layers`` blocks of conv (``kernel`` wide, same padding) -> batch norm -> ReLU -> max-pool 2, then
    a global average over time (the motif may sit anywhere), dropout and a linear classifier over 4 classes. Input
    ``n x 1 x L``, output ``n x 4`` logits."""

    def __init__(self, layers: int = 2, filters: int = 16, kernel: int = 5, dropout: float = 0.0) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        channels = 1
        for _ in range(layers):
            blocks += [nn.Conv1d(channels, filters, kernel, padding=kernel // 2), nn.BatchNorm1d(filters), nn.ReLU(),
                       nn.MaxPool1d(2, ceil_mode=True)]
            channels = filters
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, SIGNAL_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(2))


def digits_space() -> Space:
    """The digits CNN's hyperparameters: learning rate, weight decay, depth, filters, dropout, batch size, optimizer."""
    return Space({
        "lr": Float(1e-4, 3e-1, log=True),
        "weight_decay": Float(1e-6, 1e-1, log=True),
        "layers": Int(1, 4),
        "filters": Int(4, 64, log=True),
        "dropout": Float(0.0, 0.6),
        "batch_size": Choice([16, 32, 64, 128]),
        "optimizer": Choice(["adam", "sgd"]),
    })


def digits_mlp_space() -> Space:
    """The digits MLP's hyperparameters: the CNN's, with ``units`` per layer (16 to 512, log scale) in place of
    ``filters``."""
    return Space({("units" if n == "filters" else n): (Int(16, 512, log=True) if n == "filters" else p)
                  for n, p in digits_space().params.items()})


def signals_space() -> Space:
    """The signals CNN's hyperparameters: the digits CNN's (``layers`` 1 to 3, ``filters`` 4 to 64) and the kernel
    width."""
    return Space({
        "lr": Float(1e-4, 3e-1, log=True),
        "weight_decay": Float(1e-6, 1e-1, log=True),
        "layers": Int(1, 3),
        "filters": Int(4, 32, log=True),
        "kernel": Choice([3, 5, 7, 9]),
        "dropout": Float(0.0, 0.6),
        "batch_size": Choice([32, 64, 128, 256]),
        "optimizer": Choice(["adam", "sgd"]),
    })


def _optimizer(config: dict[str, Any], params: Any) -> torch.optim.Optimizer:
    if config.get("optimizer", "adam") == "sgd":
        return torch.optim.SGD(params, lr=config["lr"], momentum=0.9, weight_decay=config.get("weight_decay", 0.0))
    return torch.optim.AdamW(params, lr=config["lr"], weight_decay=config.get("weight_decay", 0.0))


def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """``(mean cross-entropy, accuracy)`` of ``model`` on ``X``, ``y``."""
    model.eval()
    with torch.no_grad():
        logits = model(X)
        loss = nn.functional.cross_entropy(logits, y).item()
        acc = (logits.argmax(1) == y).float().mean().item()
    return loss, acc


def train_digits_cnn(config: dict[str, Any], trial: Trial, *, data: DigitsData | None = None,
                     seed: int = 0) -> float:
    """Train the digits CNN, reporting validation loss after every epoch; return the last validation loss.

    Uses ``trial.device``, resumes from ``trial.load()`` when a checkpoint exists, checkpoints after each epoch,
    and trains on the first ``trial.fidelity`` fraction of the training set (the data-subset fidelity).
    """
    return _train(TASKS["digits_cnn"].model, config, trial, data, seed)


def train_digits_mlp(config: dict[str, Any], trial: Trial, *, data: DigitsData | None = None,
                     seed: int = 0) -> float:
    """Train the digits MLP; otherwise as ``train_digits_cnn`` (report, resume, checkpoints, data fidelity)."""
    return _train(TASKS["digits_mlp"].model, config, trial, data, seed)


def train_signals_cnn(config: dict[str, Any], trial: Trial, *, data: DigitsData | None = None,
                      seed: int = 0) -> float:
    """Train the 1-D CNN on ``signals_data()``; otherwise as ``train_digits_cnn`` (report, resume, checkpoints,
    data fidelity)."""
    return _train(TASKS["signals_cnn"].model, config, trial, data or signals_data(), seed)


def _train(build: Callable[[dict[str, Any]], nn.Module], config: dict[str, Any], trial: Trial,
           data: DigitsData | None, seed: int) -> float:
    data = (data or digits_data()).to(trial.device)
    torch.manual_seed(seed + max(trial.number, 0))
    model = build(config).to(trial.device)
    opt = _optimizer(config, model.parameters())
    n = max(1, round(trial.fidelity * len(data.y_train)))
    X, y = data.X_train[:n], data.y_train[:n]
    gen = torch.Generator().manual_seed(seed + max(trial.number, 0))
    saved = trial.load()
    if saved is not None:  # the random streams too, so that a paused and resumed run equals an uninterrupted one
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        gen.set_state(saved["gen"])
        torch.set_rng_state(saved["rng"])
    loss = math.inf
    for _ in trial.epochs():
        model.train()
        for idx in torch.randperm(n, generator=gen).to(trial.device).split(config.get("batch_size", 32)):
            if len(idx) < 2:  # batch norm needs two samples
                continue
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
            opt.step()
        loss, _ = evaluate(model, data.X_val, data.y_val)
        if trial.checkpoint_dir is not None:
            trial.save({"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
                        "rng": torch.get_rng_state()})
        trial.report(loss)
    return loss


@dataclass(frozen=True)
class Task:
    """A network to tune: its search space, its model built from a config, its training function
    ``train(config, trial) -> last validation loss`` (reports every epoch, resumes from checkpoints) and the data
    that function trains on by default (what ``make_curves.py`` evaluates the accuracies on)."""

    name: str
    space: Callable[[], Space]
    model: Callable[[dict[str, Any]], nn.Module]
    train: Callable[..., float]
    data: Callable[[], DigitsData] = digits_data


TASKS: dict[str, Task] = {
    "digits_cnn": Task("digits_cnn", digits_space,
                       lambda c: DigitsCNN(c.get("layers", 2), c.get("filters", 32), c.get("dropout", 0.0)),
                       train_digits_cnn),
    "digits_mlp": Task("digits_mlp", digits_mlp_space,
                       lambda c: DigitsMLP(c.get("layers", 2), c.get("units", 64), c.get("dropout", 0.0)),
                       train_digits_mlp),
    "signals_cnn": Task("signals_cnn", signals_space,
                        lambda c: SignalsCNN(c.get("layers", 2), c.get("filters", 16), c.get("kernel", 5),
                                             c.get("dropout", 0.0)),
                        train_signals_cnn, signals_data),
}
