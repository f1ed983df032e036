"""``Inline``: trials run in the driver's own process, one at a time."""

from __future__ import annotations

import torch

from torchhpo.executors.base import Outcome, TrainFn, answer_report, decided, resolve_devices, run_trial
from torchhpo.trial import Trial

__all__ = ["INLINE_TIMEOUT", "Inline"]

INLINE_TIMEOUT = ("Inline runs trials in the driver's own process and cannot stop one that runs too long; for "
                  "timeout_per_trial use worker processes: executor=th.Processes(devices=...) or devices=[...]")


class Inline:
    """Runs each trial in the calling process, one at a time: no start-up cost, easiest to debug.

    Args:
        device: the device trials see as ``trial.device`` (``"auto"``: the first GPU if any, else the CPU).
    """

    slots = 1
    concurrent = False  # the trial runs inside submit: nothing runs while the driver waits

    def __init__(self, device: str | torch.device = "auto") -> None:
        self.device = resolve_devices(device)[0]
        self._done: list[Outcome] = []

    def submit(self, fn: TrainFn, trial: Trial, *, timeout: float | None = None) -> None:
        if timeout is not None:
            raise ValueError(INLINE_TIMEOUT)
        reporter = trial.reporter
        trial.device = torch.device(self.device)
        trial.reporter = lambda number, step, value: decided(answer_report(reporter, number, step, value))
        try:
            self._done.append(run_trial(fn, trial))
        finally:
            trial.reporter = reporter

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        self._done = []
