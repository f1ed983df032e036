"""Trials: the live handle a training function receives, and the record the study keeps.

``Trial`` is what ``train(config, trial)`` sees: ``config``, ``device``, ``fidelity``, ``epochs()``, ``report()``,
``save()`` / ``load()``. ``TrialRecord`` is what searchers, schedulers and storage see: config, status, value and
the reported learning curve. Steps count units of fidelity consumed: a report after the first epoch is step 1.
"""

from __future__ import annotations

import enum
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from torchhpo.space import Config

__all__ = ["Decision", "ReportFailed", "Status", "Trial", "TrainingDiverged", "TrialPaused", "TrialPruned", "TrialRecord"]


class Status(enum.Enum):
    """Where a trial stands."""

    RUNNING = "running"
    COMPLETED = "completed"
    PRUNED = "pruned"
    FAILED = "failed"
    PAUSED = "paused"  # waiting at a rung for its peers; the scheduler resumes it (from its checkpoint) or prunes it

    @property
    def finished(self) -> bool:
        return self in (Status.COMPLETED, Status.PRUNED, Status.FAILED)


class Decision(enum.Enum):
    """A scheduler's answer to a report."""

    CONTINUE = "continue"
    STOP = "stop"
    PAUSE = "pause"  # wait at this rung; the study resumes the trial later with the same number and record


class TrialPruned(Exception):
    """Raised by ``trial.report`` when the scheduler stops the trial. Control flow, not an error: let it propagate."""


class TrainingDiverged(ValueError):
    """Raised by ``trial.report`` for a NaN or infinite value; the trial then FAILS (the study goes on)."""


class ReportFailed(RuntimeError):
    """Raised by ``trial.report`` when the driver could not handle the report (its storage or scheduler raised);
    the message names the driver's error. The trial then FAILS with that reason, even if the training function
    catches this exception, and the study goes on."""


class TrialPaused(Exception):
    """Raised by ``trial.report`` when the scheduler pauses the trial at a rung. Control flow: let it propagate.

    Save a checkpoint (``trial.save``) before ``report`` so that the resumed trial goes on from there.
    """


@dataclass
class TrialRecord:
    """One trial as the study keeps it.

    ``value`` and ``reports`` are in the user's sign (``mode``); ``score`` and ``scores`` are the same numbers
    turned so that larger is better, which is what every searcher and scheduler reads.
    """

    number: int
    config: Config
    status: Status = Status.RUNNING
    value: float | None = None
    reports: dict[int, float] = field(default_factory=dict)
    reason: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    sign: int = 1

    @property
    def score(self) -> float | None:
        """``value`` turned to maximize (``None`` while unknown)."""
        return None if self.value is None else self.sign * self.value

    @property
    def scores(self) -> dict[int, float]:
        """``reports`` turned to maximize: step -> score."""
        return {s: self.sign * v for s, v in self.reports.items()}

    def copy(self) -> TrialRecord:
        """A copy whose config, reports and attrs can change without touching this record."""
        return TrialRecord(self.number, dict(self.config), self.status, self.value, dict(self.reports), self.reason,
                           self.started, self.finished, dict(self.attrs), self.sign)

    @property
    def duration(self) -> float | None:
        return None if self.finished is None else self.finished - self.started


Reporter = Callable[[int, int, float], Decision]


class Trial:
    """The live handle of one trial, passed to the training function.

    Args:
        number: the trial's number in its study.
        config: the hyperparameters to try.
        device: where to train (``torch.device``); ``"cpu"`` unless an executor assigned a GPU.
        max_epochs: the epoch budget ``epochs()`` iterates over (the scheduler may lower it).
        fidelity: fraction of the training data to use, in (0, 1] (1 unless the fidelity is data).
        checkpoint_dir: where ``save`` / ``load`` keep this trial's state.
        reporter: ``(number, step, value) -> Decision``, wired by the executor; ``None`` runs standalone.

    Example:
        >>> t = Trial(0, {"lr": 0.1}, max_epochs=3)
        >>> for epoch in t.epochs():
        ...     t.report(1.0 / (epoch + 1))
        >>> t.last_step
        3
    """

    def __init__(self, number: int, config: Config, *, device: str | torch.device = "cpu",
                 max_epochs: int | None = None, fidelity: float = 1.0, checkpoint_dir: str | Path | None = None,
                 reporter: Reporter | None = None) -> None:
        self.number = number
        self.config = config
        self.device = torch.device(device)
        self.max_epochs = max_epochs
        self.fidelity = fidelity
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.reporter = reporter
        self.last_step = 0
        self.pruned = False
        self._epoch: int | None = None

    def __getstate__(self) -> dict[str, Any]:  # the reporter is wired again where the trial runs
        state = dict(self.__dict__)
        state["reporter"] = None
        return state

    def __repr__(self) -> str:
        return f"Trial(number={self.number}, config={self.config}, device={self.device})"

    # --- the epoch hook ---------------------------------------------------------------------------------------
    def epochs(self, max_epochs: int | None = None) -> Iterator[int]:
        """Yield epoch indices 0, 1, 2, ... up to ``max_epochs`` (or the trial's budget).

        After a resume the loop continues from the epoch after the last ``save``. It ends early once the
        trial is pruned (``report`` raises ``TrialPruned`` inside the loop).
        """
        stop = self.max_epochs if max_epochs is None else max_epochs
        if stop is None:
            raise ValueError("epochs(): no epoch budget; pass max_epochs here, to @tune(max_epochs=...) or to the Study")
        if self.max_epochs is not None:
            stop = min(stop, self.max_epochs)
        saved = self._checkpoint()
        start = saved["epoch"] + 1 if saved is not None and saved["epoch"] is not None else 0
        self.last_step = max(self.last_step, start)
        for epoch in range(start, stop):
            if self.pruned:
                return
            self._epoch = epoch
            yield epoch

    def report(self, value: float, step: int | None = None) -> None:
        """Report an intermediate value (e.g. validation loss after an epoch).

        Args:
            value: the metric, in the study's sign.
            step: units of fidelity consumed so far; defaults to the epochs done (epoch index + 1 inside
                ``epochs()``), else one more than the last step.

        Raises:
            TrialPruned: the scheduler stopped the trial; let it propagate out of the training function.
            TrialPaused: the scheduler paused the trial at a rung; let it propagate (it is resumed later).
            TrainingDiverged: the value is NaN or infinite (a ``ValueError``; the trial is then marked FAILED).
        """
        value = float(value)
        if step is None:
            step = self._epoch + 1 if self._epoch is not None else self.last_step + 1
        if not math.isfinite(value):
            raise TrainingDiverged(f"trial {self.number} reported {value} at step {step}: the training diverged")
        self.last_step = step
        decision = Decision.CONTINUE if self.reporter is None else self.reporter(self.number, step, value)
        if decision is Decision.STOP:
            self.pruned = True
            raise TrialPruned(f"trial {self.number} pruned at step {step}")
        if decision is Decision.PAUSE:
            raise TrialPaused(f"trial {self.number} paused at step {step}")

    # --- checkpoints ------------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.checkpoint_dir is None else checkpoint_file(self.checkpoint_dir, self.number)

    def save(self, state: Any) -> None:
        """Checkpoint ``state`` (tensors, dicts, numbers) with the current epoch, so a resumed trial goes on."""
        path = self.checkpoint_path
        if path is None:
            raise RuntimeError("trial.save: this trial has no checkpoint_dir; run it through a Study")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"epoch": self._epoch, "state": state}, tmp)
        os.replace(tmp, path)  # atomic: a crash mid-save keeps the previous checkpoint

    def load(self) -> Any:
        """The state last passed to ``save``, or ``None`` when there is none. Tensors load on the CPU."""
        saved = self._checkpoint()
        return None if saved is None else saved["state"]

    def _checkpoint(self) -> dict[str, Any] | None:
        return None if self.checkpoint_path is None else read_checkpoint(self.checkpoint_path)


def checkpoint_file(directory: Path, number: int) -> Path:
    """Where trial ``number`` of a study whose checkpoint folder is ``directory`` keeps its checkpoint."""
    return directory / f"trial-{number}.pt"


def read_checkpoint(path: Path) -> dict[str, Any] | None:
    """``{"epoch": ..., "state": ...}`` as ``Trial.save`` wrote it, or ``None`` when there is none (on the CPU)."""
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)
