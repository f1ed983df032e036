"""Executors run training functions somewhere and hand back outcomes; reports always reach the driver.

The driver (``Study.optimize``) is single-threaded: it ``submit``s trials and then ``wait``s; while waiting an
executor services the reports of its running trials by calling ``on_report`` in the driver's thread, so
searchers, schedulers and storage need no locks.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from torchhpo.trial import Reporter, Status, Trial, TrialPaused, TrialPruned

__all__ = ["Executor", "Inline", "Outcome", "make_executor", "run_trial"]

TrainFn = Callable[[dict[str, Any], Trial], Any]


@dataclass
class Outcome:
    """What became of one trial: its status, final value (user's sign) and, when it failed, why."""

    number: int
    status: Status
    value: float | None = None
    reason: str | None = None
    seconds: float = 0.0  # time spent inside the user's function


def run_trial(fn: TrainFn, trial: Trial) -> Outcome:
    """Call ``fn(config, trial)`` and turn whatever happens into an ``Outcome``; never raises but for Ctrl-C.

    A returned number completes the trial; ``None`` falls back to the last reported value. ``TrialPruned``
    prunes it; ``TrialPaused`` pauses it (the study may resume it). An exception, a NaN/inf, or a CUDA
    out-of-memory fails it with the reason (traceback kept).
    """
    start = time.perf_counter()
    last = None

    def wrapped(number: int, step: int, value: float) -> Any:
        nonlocal last
        last = value
        return inner(number, step, value)

    inner = trial.reporter
    if inner is not None:
        trial.reporter = wrapped
    try:
        value = fn(trial.config, trial)
        status, reason = Status.COMPLETED, None
        if value is None:
            value = last
            reason = None if value is not None else "the training function returned None and reported nothing"
        if reason is None:
            value = float(value)
            if not math.isfinite(value):
                reason = f"the training function returned {value}"
        if reason is not None:
            status, value = Status.FAILED, None
    except TrialPruned:
        status, value, reason = Status.PRUNED, last, None
    except TrialPaused:
        status, value, reason = Status.PAUSED, last, None
    except torch.cuda.OutOfMemoryError:
        status, value, reason = Status.FAILED, None, "CUDA out of memory\n" + traceback.format_exc()
        torch.cuda.empty_cache()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - a failed trial is data, whatever it raised
        status, value, reason = Status.FAILED, None, f"{type(e).__name__}: {e}\n" + traceback.format_exc()
    finally:
        trial.reporter = inner
    return Outcome(trial.number, status, value, reason, time.perf_counter() - start)


@runtime_checkable
class Executor(Protocol):
    """Runs trials. ``slots`` is how many run at once."""

    slots: int

    def submit(self, fn: TrainFn, trial: Trial, on_report: Reporter) -> None:
        """Start ``fn(trial.config, trial)``; its reports go to ``on_report`` (in the driver's thread)."""

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        """Block until at least one submitted trial ends (or ``timeout`` seconds pass); return those that ended."""

    def close(self) -> None:
        """Stop every worker; running trials are abandoned (the study marks them FAILED)."""


class Inline:
    """Runs each trial in the calling process, one at a time: no start-up cost, easiest to debug.

    Args:
        device: the device trials see as ``trial.device`` (``"auto"``: the first GPU if any, else the CPU).
    """

    slots = 1

    def __init__(self, device: str | torch.device = "auto") -> None:
        self.device = resolve_devices(device)[0]
        self._done: list[Outcome] = []

    def submit(self, fn: TrainFn, trial: Trial, on_report: Reporter) -> None:
        trial.device = torch.device(self.device)
        trial.reporter = on_report
        self._done.append(run_trial(fn, trial))

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        self._done = []


def resolve_devices(devices: str | torch.device | list[str] | None) -> list[str]:
    """``"auto"``/``None`` -> every visible GPU (``["cuda:0", ...]``), else ``["cpu"]``; a name or list as given."""
    if devices is None or devices == "auto":
        n = torch.cuda.device_count()
        return [f"cuda:{i}" for i in range(n)] if n else ["cpu"]
    if isinstance(devices, (str, torch.device)):
        return [str(torch.device(devices))]
    out = [str(torch.device(d)) for d in devices]
    if not out:
        raise ValueError("devices is empty; give at least one device, e.g. ['cpu'] or 'auto'")
    return out


def make_executor(executor: Executor | None, devices: str | list[str] | None = None) -> Executor:
    """The executor to use: as given, else ``Inline`` on the one device ``devices`` names."""
    if executor is not None:
        if devices is not None:
            raise ValueError("give either executor= or devices=, not both; an executor carries its own devices")
        return executor
    found = resolve_devices(devices)
    if len(found) > 1:
        raise ValueError(f"devices={found} needs an executor of several workers; none is available yet")
    return Inline(found[0])
