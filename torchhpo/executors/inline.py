"""``Inline``: trials run in the driver's own process, one at a time."""

from __future__ import annotations

import torch

from torchhpo.executors.base import Outcome, TrainFn, answer_report, decided, resolve_devices, run_trial
from torchhpo.threads import DRIVER_CPUS, Threads, trial_threads, usable_cpus
from torchhpo.trial import Trial

__all__ = ["INLINE_TIMEOUT", "Inline"]

INLINE_TIMEOUT = ("Inline runs trials in the driver's own process and cannot stop one that runs too long; for "
                  "timeout_per_trial use worker processes: executor=th.Processes(devices=...) or devices=[...]")


class Inline:
    """Runs each trial in the calling process, one at a time: no start-up cost, easiest to debug.

    Args:
        device: the device trials see as ``trial.device`` (``"auto"``: the first GPU if any, else the CPU).
        threads: ``torch.set_num_threads`` while a trial runs; the caller's count comes back after it.
            ``"auto"``: ``$TORCHHPO_THREADS`` if set, else every usable CPU but one (left to the driver), at least
            1, at most ``$OMP_NUM_THREADS`` if set (``torchhpo.threads.trial_threads``).
    """

    slots = 1
    # the trial runs inside wait, in the driver's thread: by default the study does not ask in the background
    # meanwhile, so that every ask sees every result (optimize(prefetch=...) overlaps them)
    concurrent = False

    def __init__(self, device: str | torch.device = "auto", *, threads: Threads = "auto") -> None:
        self.device = resolve_devices(device)[0]
        self.threads = trial_threads("Inline", threads, usable_cpus() - DRIVER_CPUS)
        self._queued: list[tuple[TrainFn, Trial]] = []

    def submit(self, fn: TrainFn, trial: Trial, *, timeout: float | None = None) -> None:
        """Queue the trial; ``wait`` runs it (after the study has started a background ask, when it prefetches)."""
        if timeout is not None:
            raise ValueError(INLINE_TIMEOUT)
        self._queued.append((fn, trial))

    def _run(self, fn: TrainFn, trial: Trial) -> Outcome:
        reporter = trial.reporter
        trial.device = torch.device(self.device)
        trial.reporter = lambda number, step, value: decided(answer_report(reporter, number, step, value))
        callers = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return run_trial(fn, trial)
        finally:
            torch.set_num_threads(callers)
            trial.reporter = reporter

    def __repr__(self) -> str:
        return f"Inline(device={self.device!r}, threads={self.threads})"

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        """Run the queued trial(s), one after the other, and return their outcomes (``timeout`` cannot apply: a
        trial in this process cannot be interrupted)."""
        done = []
        while self._queued:
            done.append(self._run(*self._queued.pop(0)))
        return done

    def close(self) -> None:
        self._queued = []
