"""Executors run training functions somewhere and hand back outcomes; reports always reach the driver.

One file per executor, and what they share:

- ``base``: the contract (``Executor``, ``Outcome``, ``TrainFn``), ``run_trial`` (one call of a training function
  turned into an ``Outcome``) and ``answer_report``, the one guard around every report the driver answers;
- ``inline``: ``Inline``, trials in the driver's own process;
- ``processes``: ``Processes``, trials in worker processes on this machine;
- ``ray``: ``Ray``, trials as tasks on a Ray cluster;
- here: ``make_executor``, which picks one for ``Study.optimize``.
"""

from __future__ import annotations

from torchhpo.executors.base import Executor, Outcome, TrainFn, require_executor, resolve_devices, run_trial
from torchhpo.executors.inline import INLINE_TIMEOUT, Inline
from torchhpo.executors.processes import Processes, refuse_rerun
from torchhpo.executors.ray import Ray
from torchhpo.threads import Threads

__all__ = ["Executor", "Inline", "Outcome", "Processes", "Ray", "TrainFn", "make_executor", "resolve_devices",
           "run_trial"]


def make_executor(executor: Executor | None, devices: str | list[str] | None = None, *,
                  timeout_per_trial: float | None = None, threads: Threads = "auto") -> Executor:
    """The executor to use: as given (``TypeError`` naming what it lacks when it does not follow the ``Executor``
    protocol); else ``Processes`` over ``devices`` when they are several (or when ``timeout_per_trial`` needs a
    worker that can be killed), else ``Inline`` on the one device; ``threads`` goes to the one built (torch threads
    per trial, see ``torchhpo.threads.trial_threads``).

    A process re-running a script without a ``__main__`` guard is stopped here, before its study starts a trial."""
    if executor is not None:
        if devices is not None:
            raise ValueError("give either executor= or devices=, not both; an executor carries its own devices")
        require_executor(executor)
        if timeout_per_trial is not None and isinstance(executor, Inline):
            raise ValueError(INLINE_TIMEOUT)
        if isinstance(executor, Processes):
            refuse_rerun()
        return executor
    found = resolve_devices(devices)
    if len(found) > 1 or timeout_per_trial is not None:
        refuse_rerun()
        return Processes(found, threads=threads)
    return Inline(found[0], threads=threads)
