"""Torch CPU threads: how many each trial gets (``trial_threads``, used by every executor) and how many a model
fitted in the driver gets (``model_threads``: a GP suggestion, the freeze-thaw curve model).

Small models gain nothing from intra-op threads and lose much when the cores are busy: an OpenMP team waits for
its slowest thread at every operation, so a 27 x 27 batched solve that takes 0.1 ms on one thread took 2-5 ms on
two while other processes used both cores (benchmarks/threads.py has the model figures).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from torchhpo.checks import integer

__all__ = ["DRIVER_CPUS", "MODEL_THREADS_MIN_POINTS", "OMP_ENV", "THREADS_ENV", "Threads", "model_threads",
           "trial_threads", "usable_cpus"]

Threads = int | str | None  # an executor's threads= argument: a count, or "auto" (None: the same)
THREADS_ENV = "TORCHHPO_THREADS"  # a thread count for every trial, set outside the script (a job file, a shell)
OMP_ENV = "OMP_NUM_THREADS"
DRIVER_CPUS = 1  # left to the driver: its searcher runs beside the trials (prefetching), and OpenMP threads wait
                 # for the slowest of their team at every operation, so a trial that takes every core stalls
                 # whenever anything else runs
MODEL_THREADS_MIN_POINTS = 2000  # training points from which a CPU model keeps the caller's threads


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the OS has one (``taskset``, container and
    SLURM cpusets), else ``os.cpu_count()``."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def trial_threads(owner: str, threads: Threads, cpus: float) -> int:
    """How many torch threads (``torch.set_num_threads``) each trial of an executor gets.

    ``threads`` as an int: that many. ``"auto"`` (or ``None``): ``$TORCHHPO_THREADS`` when it is set; else the
    ``cpus`` one trial may use, rounded down, at least 1 and at most ``$OMP_NUM_THREADS`` when that is set (the
    ceiling torch itself keeps in a plain script). The executors give ``cpus``: ``Inline`` the usable CPUs but
    ``DRIVER_CPUS``, ``Processes`` that divided among its workers, ``Ray`` a trial's ``resources_per_trial["cpu"]``.
    """
    if threads is not None and threads != "auto":
        if isinstance(threads, str):
            raise ValueError(f"{owner}: threads must be a positive int or 'auto', got {threads!r}")
        return integer(f"{owner}: threads", threads)
    given = os.environ.get(THREADS_ENV, "").strip()
    if given:
        if not given.isdigit() or int(given) < 1:
            raise ValueError(f"{THREADS_ENV}={given!r}: expected a positive int (torch threads per trial); unset it "
                             "for the automatic count")
        return int(given)
    count = max(1, int(cpus))
    ceiling = os.environ.get(OMP_ENV, "").strip()
    if ceiling.isdigit() and int(ceiling) >= 1:  # OpenMP ignores anything else too
        count = min(count, int(ceiling))
    return count


@contextmanager
def model_threads(points: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run a model's fit and prediction in the driver on ``DRIVER_CPUS`` torch threads while it has fewer than
    ``MODEL_THREADS_MIN_POINTS`` training points on the CPU (the caller's count comes back after); larger CPU
    models and GPU models keep the caller's count. ``torch.set_num_threads`` is process-wide: a trial that
    ``Inline`` runs in another thread at the same time (``prefetch="thread"``) shares the setting."""
    callers = torch.get_num_threads()
    if torch.device(device).type != "cpu" or points >= MODEL_THREADS_MIN_POINTS or callers <= DRIVER_CPUS:
        yield
        return
    torch.set_num_threads(DRIVER_CPUS)
    try:
        yield
    finally:
        torch.set_num_threads(callers)
