"""What every executor shares: the contract (``Executor``, ``Outcome``), ``run_trial``, and the one guard that
every report of a trial passes through on its way to the driver."""

from __future__ import annotations

import gc
import numbers
import reprlib
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from torchhpo.checks import integer
from torchhpo.trial import Decision, Reporter, ReportFailed, Status, Trial, TrialPaused, TrialPruned, unusable_value

__all__ = ["Executor", "Outcome", "Refusal", "TrainFn", "answer_report", "decided", "error_text", "release_memory",
           "require_executor", "resolve_devices", "run_trial"]

TrainFn = Callable[[dict[str, Any], Trial], Any]


@dataclass
class Outcome:
    """What became of one trial: its status, final value (user's sign) and, when it failed, why."""

    number: int
    status: Status
    value: float | None = None
    reason: str | None = None
    seconds: float = 0.0  # time spent inside the user's function
    attrs: dict[str, Any] = field(default_factory=dict)  # what the trial stored with trial.set_attr


@runtime_checkable
class Executor(Protocol):
    """Runs trials for the driver (``Study.optimize``): everything the driver uses of an executor.

    The driver is single-threaded: it ``submit``s up to ``slots`` trials, then ``wait``s. While it waits, the
    executor answers each running trial's reports with that trial's own ``reporter`` (the driver's, as the trial had
    it when submitted), called in the driver's thread through ``answer_report``: searchers,
    schedulers and storage need no locks, and a report the driver cannot handle fails that trial alone, the same
    way on every executor. Whatever else goes wrong with one trial fails that trial with a reason; the study goes on.
    """

    slots: int
    """How many trials run at once: the driver never has more submitted that ``wait`` has not returned."""

    concurrent: bool
    """Whether trials run while the driver waits (worker processes, a cluster): the driver then asks the searcher
    for the next config meanwhile (``optimize(prefetch="auto")``). ``False`` when trials run inside ``submit`` or
    ``wait`` (in the driver's process, or on a simulated clock): by default nothing overlaps them, and asking after
    each result sees every result; ``Inline`` runs its trial inside ``wait``, so ``prefetch="thread"`` or
    ``"process"`` overlaps it with the next ask."""

    def submit(self, fn: TrainFn, trial: Trial, *, timeout: float | None = None) -> None:
        """Start ``fn(trial.config, trial)`` on a free slot; its reports go to the driver-side ``trial.reporter``
        (``None``: every report continues).

        ``timeout`` (seconds; ``None``: no limit) ends the trial FAILED ("timed out after N s") if it runs longer,
        counted from when it starts running; an executor that cannot stop a running trial refuses a timeout with
        ``ValueError``."""

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        """Block until at least one submitted trial ends (or ``timeout`` seconds pass); return those that ended,
        each submitted trial exactly once; ``[]`` when none is running."""

    def close(self) -> None:
        """Stop every worker; running trials are abandoned (the study marks them FAILED)."""


EXECUTOR_MEMBERS = (*Executor.__annotations__, *(name for name, member in vars(Executor).items()
                                                 if callable(member) and not name.startswith("_")))


def require_executor(executor: Any) -> Executor:
    """``executor`` when it has every member of the ``Executor`` protocol and a positive int ``slots``; else a
    ``TypeError`` that names what it lacks (or ``ValueError`` for its ``slots``)."""
    if not isinstance(executor, Executor):
        missing = [name for name in EXECUTOR_MEMBERS if getattr(executor, name, None) is None]
        raise TypeError(f"executor: {type(executor).__name__} lacks {', '.join(missing)}; an executor has slots "
                        "(int), concurrent (bool), submit(fn, trial, *, timeout=None), wait(timeout=None) and "
                        "close() (see torchhpo.executors.Executor)")
    integer(f"executor: {type(executor).__name__}.slots", executor.slots)
    return executor


# --- the report path --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Refusal:
    """The driver's answer to a report it could not handle, sent to the trial in place of a ``Decision`` (plain
    data: it crosses a pipe or Ray's object store)."""

    reason: str


def answer_report(reporter: Reporter | None, number: int, step: int, value: float) -> Decision | Refusal:
    """The driver's answer to trial ``number``'s report: ``reporter(number, step, value)``, where ``reporter`` is the
    driver-side ``trial.reporter``, called in the driver's thread.

    The one guard every executor puts around that call: an error there (the storage refusing the report, a
    scheduler's bug) or an answer that is not a ``Decision`` fails that trial alone (it gets a ``Refusal``)
    instead of ending the study; Ctrl-C still ends it. ``reporter=None`` (a trial without a study) continues.
    """
    if reporter is None:
        return Decision.CONTINUE
    try:
        decision = reporter(number, step, value)
    except Exception as e:
        return Refusal(f"the driver could not handle the report at step {step}: {error_text(e)}\n{_traceback()}")
    if not isinstance(decision, Decision):
        return Refusal(f"the driver could not handle the report at step {step}: the scheduler's on_report returned "
                       f"{_a(type(decision).__name__)} ({_short(decision)}); expected a Decision "
                       "(Decision.CONTINUE, STOP, PAUSE or COMPLETE)")
    return decision


def decided(answer: Decision | Refusal) -> Decision:
    """In the trial: the driver's answer to a report; ``ReportFailed`` (raised in the training function, so that
    the trial fails with the driver's reason) when the driver could not handle it."""
    if isinstance(answer, Refusal):
        raise ReportFailed(answer.reason)
    return answer


# --- running one trial --------------------------------------------------------------------------------------------
def run_trial(fn: TrainFn, trial: Trial) -> Outcome:
    """Call ``fn(config, trial)`` and turn whatever happens into an ``Outcome``; never raises but for Ctrl-C.

    A returned real number (an int or float, a NumPy scalar, a 0-d tensor) completes the trial; ``None`` falls
    back to the last reported value. ``TrialPruned`` prunes it; ``TrialPaused`` pauses it (the study may resume
    it). An exception, another returned type, a NaN/inf, a CUDA out-of-memory or a report the driver could not
    handle (``ReportFailed``, even if ``fn`` caught it) fails it with the reason (traceback kept). The outcome
    holds only plain values, so it always pickles.
    """
    start = time.perf_counter()
    last: float | None = None
    refused: ReportFailed | None = None

    inner = trial.reporter
    if inner is not None:
        def recorded(number: int, step: int, value: float) -> Decision:
            nonlocal last, refused
            last = value
            try:
                return inner(number, step, value)
            except ReportFailed as e:
                refused = refused or e
                raise

        trial.reporter = recorded
    try:
        returned = fn(trial.config, trial)
        if returned is None:
            value, reason = last, None if last is not None else "the training function returned None and reported nothing"
        else:
            value, reason = _returned_value(returned)
        status = Status.COMPLETED if reason is None else Status.FAILED
    except TrialPruned:
        status, value, reason = Status.PRUNED, last, None
    except TrialPaused:
        status, value, reason = Status.PAUSED, last, None
    except torch.cuda.OutOfMemoryError:
        status, value, reason = Status.FAILED, None, "CUDA out of memory\n" + _traceback()
        torch.cuda.empty_cache()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:
        status, value, reason = Status.FAILED, None, error_text(e) + "\n" + _traceback()
    finally:
        trial.reporter = inner
    if refused is not None:  # the driver could not take one of its reports: whatever came after does not count
        status, reason = Status.FAILED, str(refused)
    if status is Status.FAILED:
        value = None
    return Outcome(trial.number, status, None if value is None else float(value), reason, time.perf_counter() - start,
                   dict(trial.user_attrs))


EXPECTED_VALUE = ("expected a real number: a Python int or float, a NumPy scalar or a 0-d tensor (e.g. loss.item()), "
                  "or None after trial.report(...)")


def _returned_value(returned: Any) -> tuple[float | None, str | None]:
    """What a training function returned, as ``(value, None)``, or ``(None, why it is not a value)``."""
    kind = type(returned).__name__
    if isinstance(returned, torch.Tensor):
        if returned.ndim != 0:
            return None, f"the training function returned a Tensor of shape {tuple(returned.shape)}; {EXPECTED_VALUE}"
        if returned.dtype == torch.bool or returned.is_complex():
            return None, f"the training function returned a 0-d Tensor of dtype {returned.dtype}; {EXPECTED_VALUE}"
    elif isinstance(returned, bool) or not isinstance(returned, numbers.Real):  # '1.5' is not 1.5; True is not 1
        return None, f"the training function returned {_a(kind)} ({_short(returned)}); {EXPECTED_VALUE}"
    try:
        value = float(returned)
    except OverflowError:
        return None, f"the training function returned {_a(kind)} too large for a float ({_short(returned)})"
    except Exception as e:
        return None, f"the training function returned {_a(kind)} that float() refused ({error_text(e)}); {EXPECTED_VALUE}"
    why = unusable_value(value)
    if why is not None:
        return None, f"the training function returned {value}: {why}"
    return value, None


# --- shared helpers -----------------------------------------------------------------------------------------------
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


def release_memory() -> None:
    """Free the GPU memory a finished trial left behind (its garbage cycles, then the cached blocks), if CUDA is
    in use; on the CPU, reference counting and the automatic collector already do."""
    if torch.cuda.is_initialized():
        gc.collect()
        torch.cuda.empty_cache()


def error_text(e: BaseException) -> str:
    """``"ValueError: bad lr"`` for an exception; never raises, even when its ``__str__`` does (its repr then
    stands in, or its type's name)."""
    name = type(e).__name__
    try:
        return f"{name}: {e}"
    except Exception:
        pass
    try:
        return repr(e)
    except Exception:
        return f"{name} (its message could not be formatted)"


def _traceback() -> str:
    """The traceback being handled, or ``""`` when even that cannot be formatted."""
    try:
        return traceback.format_exc()
    except Exception:
        return ""


def _short(value: Any) -> str:
    """A short repr of a user's object, whatever its ``__repr__`` does."""
    try:
        return reprlib.repr(value)
    except Exception:
        return f"<{type(value).__name__} object>"


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"
