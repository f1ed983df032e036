"""Executors run training functions somewhere and hand back outcomes; reports always reach the driver.

The driver (``Study.optimize``) is single-threaded: it ``submit``s trials and then ``wait``s; while waiting an
executor services the reports of its running trials by calling ``on_report`` in the driver's thread, so
searchers, schedulers and storage need no locks. Whatever goes wrong with one trial, in the trial or while the
driver handles its report, fails that trial with a reason, the same way on every executor; the study goes on.
"""

from __future__ import annotations

import contextlib
import gc
import math
import multiprocessing as mp
import numbers
import os
import reprlib
import signal
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_any
from typing import Any, Protocol, runtime_checkable

import torch

from torchhpo.trial import Decision, Reporter, ReportFailed, Status, Trial, TrialPaused, TrialPruned

__all__ = ["Executor", "Inline", "Outcome", "Processes", "Ray", "make_executor", "run_trial"]

TrainFn = Callable[[dict[str, Any], Trial], Any]
INLINE_TIMEOUT = ("Inline runs trials in the driver's own process and cannot stop one that runs too long; for "
                  "timeout_per_trial use worker processes: executor=th.Processes(devices=...) or devices=[...]")


@dataclass
class Outcome:
    """What became of one trial: its status, final value (user's sign) and, when it failed, why."""

    number: int
    status: Status
    value: float | None = None
    reason: str | None = None
    seconds: float = 0.0  # time spent inside the user's function
    attrs: dict[str, Any] = field(default_factory=dict)  # what the trial stored with trial.set_attr


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

    def wrapped(number: int, step: int, value: float) -> Any:
        nonlocal last, refused
        last = value
        try:
            return inner(number, step, value)
        except ReportFailed as e:
            refused = refused or e
            raise

    inner = trial.reporter
    if inner is not None:
        trial.reporter = wrapped
    try:
        returned = fn(trial.config, trial)
        if returned is None:
            value, reason = last, None if last is not None else "the training function returned None and reported nothing"
        else:
            value, reason = _as_value(returned)
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
        status, value, reason = Status.FAILED, None, describe(e) + "\n" + _traceback()
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


def _as_value(returned: Any) -> tuple[float | None, str | None]:
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
        return None, f"the training function returned {_a(kind)} that float() refused ({describe(e)}); {EXPECTED_VALUE}"
    if not math.isfinite(value):
        return None, f"the training function returned {value}"
    return value, None


def describe(e: BaseException) -> str:
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


@dataclass(frozen=True)
class _Refusal:
    """The driver's answer to a report it could not handle, sent to the trial in place of a ``Decision``."""

    reason: str


def _handle(on_report: Reporter, number: int, step: int, value: float) -> Decision | _Refusal:
    """``on_report(number, step, value)`` in the driver. An error there (the storage refusing the report, a
    scheduler's bug) or an answer that is not a ``Decision`` fails that trial alone (it gets a ``_Refusal``) instead
    of ending the study; Ctrl-C still ends it."""
    try:
        decision = on_report(number, step, value)
    except Exception as e:
        return _Refusal(f"the driver could not handle the report at step {step}: {describe(e)}\n{_traceback()}")
    if not isinstance(decision, Decision):
        return _Refusal(f"the driver could not handle the report at step {step}: the scheduler's on_report returned "
                        f"{_a(type(decision).__name__)} ({_short(decision)}); expected a Decision "
                        "(Decision.CONTINUE, STOP, PAUSE or COMPLETE)")
    return decision


def _decision(answer: Decision | _Refusal) -> Decision:
    """In the trial: the driver's answer to a report; ``ReportFailed`` (in the training function, so the trial
    fails with the driver's reason) when the driver could not handle it."""
    if isinstance(answer, _Refusal):
        raise ReportFailed(answer.reason)
    return answer


@runtime_checkable
class Executor(Protocol):
    """Runs trials. ``slots`` is how many run at once."""

    slots: int

    def submit(self, fn: TrainFn, trial: Trial, on_report: Reporter, timeout: float | None = None) -> None:
        """Start ``fn(trial.config, trial)``; its reports go to ``on_report`` (in the driver's thread).

        ``timeout`` (seconds; optional, the study passes it only when the user sets ``timeout_per_trial``) ends
        the trial FAILED ("timed out after N s") if it runs longer."""

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

    def submit(self, fn: TrainFn, trial: Trial, on_report: Reporter, timeout: float | None = None) -> None:
        if timeout is not None:
            raise ValueError(INLINE_TIMEOUT)
        trial.device = torch.device(self.device)
        trial.reporter = lambda number, step, value: _decision(_handle(on_report, number, step, value))
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


def release_memory() -> None:
    """Free the GPU memory a finished trial left behind (its garbage cycles, then the cached blocks), if CUDA is
    in use; on the CPU, reference counting and the automatic collector already do."""
    if torch.cuda.is_initialized():
        gc.collect()
        torch.cuda.empty_cache()


def death_reason(exitcode: int | None) -> str:
    """``"worker died: signal SIGKILL (-9) ..."`` or ``"worker died: exit code 3"`` for a process's exit."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (out of memory? the kernel's OOM killer sends SIGKILL)" if exitcode == -signal.SIGKILL else ""
        return f"worker died: signal {name} ({exitcode}){hint}"
    return f"worker died: exit code {exitcode}"


# --- local worker processes -----------------------------------------------------------------------------------
WORKER_ENV = "TORCHHPO_WORKER"  # set while the driver starts a worker: "this process is a torchhpo worker"
RERAN_EXIT = 93  # a worker's exit code when it found itself re-running the user's script (no __main__ guard)
MAIN_GUARD = ("torchhpo: worker processes re-ran your script's top level: put the code that starts the study under "
              "`if __name__ == '__main__':` (each worker process imports your script to find the training function, "
              "so the script must not start a study when imported)")


def _refuse_rerun() -> None:
    """Stop a spawned process that is re-running the user's script (no ``__main__`` guard) and reached a study
    with worker processes: ``make_executor`` calls this before the study starts a trial (so no stray trial reaches
    the storage), ``Processes.submit`` before it starts workers. Building a ``Processes`` at a script's top level
    starts nothing, and stays allowed.

    A torchhpo worker exits at once and quietly with ``RERAN_EXIT``: its driver says why, once, instead of every
    worker printing a traceback and starting workers of its own. Any other spawned process raises the error.
    """
    if not getattr(mp.current_process(), "_inheriting", False):  # set while a spawned child imports __main__
        return
    if os.environ.get(WORKER_ENV) == "1":
        raise SystemExit(RERAN_EXIT)
    raise RuntimeError(MAIN_GUARD)


def _kill_group(leader: int | None) -> None:
    """SIGKILL the process group a worker leads: the worker and whatever its trials started (subprocesses,
    DataLoader workers) unless those moved to a group of their own. No such group (the worker died before it made
    one, or POSIX is missing): nothing to do. A group's id stays taken while a process is in it, so ``leader``
    cannot name a stranger's group."""
    if leader is None or not hasattr(os, "killpg"):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(leader, signal.SIGKILL)


def _watch_parent(parent: int) -> None:
    """End this worker, and what its trial started, when the driver is gone (killed without a chance to close
    us): no orphans."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        if hasattr(os, "getpgrp") and os.getpgrp() == os.getpid():
            _kill_group(os.getpid())
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="torchhpo-parent-watch").start()


def _worker_main(conn: Connection, device: str, threads: int, parent: int) -> None:
    """A worker's loop: receive a trial, run it, reporting over ``conn`` and blocking for each decision."""
    import cloudpickle

    if hasattr(os, "setpgrp"):
        os.setpgrp()  # lead a process group of our own (the driver stays out): killing it ends what trials start
    os.environ.pop(WORKER_ENV, None)  # only for this process's start, not for the processes trials start
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle; it stops us cleanly
    _watch_parent(parent)
    torch.set_num_threads(threads)
    gc.freeze()  # the imported modules never die: keep them out of collections (a full one costs ~0.2 s here)

    def reporter(number: int, step: int, value: float) -> Decision:
        conn.send(("report", number, step, value))
        return _decision(conn.recv())

    try:
        conn.send(("ready",))  # started: a death from now on fails a trial, not the whole executor
        key, fn = None, None
        while True:
            msg = conn.recv()
            if msg[0] == "stop":
                return
            _, fn_key, blob, trial = msg
            if fn_key != key:
                try:
                    key, fn = fn_key, cloudpickle.loads(blob)
                except Exception as e:  # e.g. a module the worker cannot import
                    key = None
                    conn.send(("done", Outcome(trial.number, Status.FAILED, reason=(
                        f"the worker could not unpickle the training function: {describe(e)}"))))
                    continue
            trial.device, trial.reporter = torch.device(device), reporter
            conn.send(("started",))  # the trial's clock (timeout_per_trial) starts now, not at submit
            outcome = run_trial(fn, trial)
            conn.send(("done", outcome))
            del trial
            release_memory()
    except (EOFError, OSError):  # the driver closed its end, or is gone
        return


class _Worker:
    """The driver's handle on one worker process and the trial it runs."""

    def __init__(self, ctx: Any, slot: str, threads: int) -> None:
        self.slot = slot
        self.conn, child = ctx.Pipe()
        visible, seen_as = _pin(slot)
        self.process = ctx.Process(target=_worker_main, args=(child, seen_as, threads, os.getpid()),
                                   name=f"torchhpo-worker-{slot}", daemon=False)  # daemons may not fork DataLoaders
        with _environment(CUDA_VISIBLE_DEVICES=visible, **{WORKER_ENV: "1"}):  # spawn copies them: set before
            self.process.start()                                                 # the child imports torch
        child.close()
        self.ready = False  # it said it started (imports done): until then a death means it cannot start at all
        self.key: int | None = None  # the training function this worker holds
        self.trial: Trial | None = None
        self.on_report: Reporter | None = None
        self.deadline = math.inf
        self.timeout: float | None = None

    def kill(self) -> None:
        """Kill the worker and every process in its group (what its trials started), and reap it."""
        _kill_group(self.process.pid)
        if self.process.is_alive():  # it had not made its group yet
            self.process.kill()
        self.process.join(5.0)
        self.conn.close()

    def started(self) -> bool:
        """Whether it said it started, reading what it sent before it died."""
        with contextlib.suppress(EOFError, OSError):
            while not self.ready and self.conn.poll():
                self.ready = self.conn.recv()[0] == "ready"
        return self.ready


def _pin(slot: str) -> tuple[str | None, str]:
    """``(CUDA_VISIBLE_DEVICES, trial.device)`` for a worker on ``slot``: GPU 3 is seen as cuda:0; CPU hides GPUs.

    The index counts the GPUs the driver sees: under ``CUDA_VISIBLE_DEVICES=2,3``, ``cuda:1`` is GPU 3.
    """
    dev = torch.device(slot)
    if dev.type == "cuda":
        index = dev.index or 0
        seen = [s.strip() for s in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if s.strip()]
        if "CUDA_VISIBLE_DEVICES" not in os.environ:
            return str(index), "cuda:0"
        if index >= len(seen):
            raise ValueError(f"Processes: device {slot} is not visible here (CUDA_VISIBLE_DEVICES="
                             f"{os.environ['CUDA_VISIBLE_DEVICES']!r}); use cuda:0 to cuda:{len(seen) - 1}")
        return seen[index], "cuda:0"
    if dev.type == "cpu":
        return "", "cpu"
    return None, slot


@contextlib.contextmanager
def _environment(**values: str | None) -> Iterator[None]:
    """Set environment variables inside a ``with`` block (``None`` leaves one as it is)."""
    saved = {k: os.environ.get(k) for k, v in values.items() if v is not None}
    os.environ.update({k: v for k, v in values.items() if v is not None})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Processes:
    """Runs trials in spawned worker processes, each pinned to one device, reused from trial to trial.

    A worker on ``"cuda:3"`` starts with ``CUDA_VISIBLE_DEVICES=3`` and sees ``trial.device == cuda:0``; a CPU
    worker sees no GPU. The training function travels to each worker once (cloudpickle: functions from
    ``__main__``, closures and lambdas work). A worker that dies (signal, segfault, out of memory) fails its
    trial with the exit code or signal and is replaced; a trial past its timeout is killed the same way. Each
    worker leads a process group, so the processes a trial starts die with its worker. Workers import the main
    script again: a script without an ``if __name__ == "__main__":`` guard stops with an error that says so.

    Args:
        devices: one device per worker group (``["cuda:0", "cuda:1"]``, ``["cpu"] * 2``) or ``"auto"`` (every
            visible GPU, else one CPU).
        per_device: how many workers share each device.
        threads: ``torch.set_num_threads`` in each worker; default: the machine's cores divided among workers.

    Example:
        >>> import torchhpo as th
        >>> study = th.Study(th.Space({"x": th.Float(0.0, 1.0)}), seed=0)
        >>> with th.Processes(devices=["cpu"] * 2) as ex:  # doctest: +SKIP
        ...     study.optimize(lambda c, t: (c["x"] - 0.5) ** 2, n_trials=8, executor=ex)
    """

    concurrent = True  # trials run while the driver waits: the study prefetches the next config meanwhile

    def __init__(self, devices: str | list[str] = "auto", per_device: int = 1, threads: int | None = None) -> None:
        if isinstance(per_device, bool) or not isinstance(per_device, int) or per_device < 1:
            raise ValueError(f"Processes: per_device must be a positive int (trials at once on each device), "
                             f"got {per_device!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"Processes: threads must be a positive int or None, got {threads!r}")
        self.devices = resolve_devices(devices)
        for device in self.devices:
            _pin(device)  # an invisible GPU is refused here, not when the first trial starts
        self.slots = len(self.devices) * per_device
        self.threads = threads or max(1, (os.cpu_count() or 1) // self.slots)
        self._slots = [d for d in self.devices for _ in range(per_device)]
        self._ctx = mp.get_context("spawn")
        self._workers: list[_Worker | None] = [None] * self.slots
        self._fn: tuple[Any, int, bytes] | None = None
        self._finalizer = weakref.finalize(self, _kill_all, self._workers)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Processes(devices={self.devices}, slots={self.slots})"

    def submit(self, fn: TrainFn, trial: Trial, on_report: Reporter, timeout: float | None = None) -> None:
        i = next((i for i, w in enumerate(self._workers) if w is None or w.trial is None), None)
        if i is None:
            raise RuntimeError(f"Processes: all {self.slots} workers are busy; wait() for one before submitting")
        key, blob = self._pickled(fn)
        if all(w is None for w in self._workers):  # first use: start every worker now, so they warm up together
            _refuse_rerun()  # a worker of a worker: the script has no __main__ guard
            self._workers[:] = [_Worker(self._ctx, slot, self.threads) for slot in self._slots]
        w = self._workers[i]
        if w is None or not w.process.is_alive():  # e.g. it died right after sending its last outcome
            w = self._fresh(i)
        try:
            w.conn.send(("run", key, blob if w.key != key else None, trial))
        except OSError:  # it died since: start another (or say why none can start)
            w.process.join(5.0)
            w = self._fresh(i)
            w.conn.send(("run", key, blob, trial))
        w.key, w.trial, w.on_report, w.timeout, w.deadline = key, trial, on_report, timeout, math.inf

    def _fresh(self, i: int) -> _Worker:
        """A new worker in slot ``i``, in place of the dead one there (killing what its trials left running)."""
        old = self._workers[i]
        if old is not None:
            self._check_started(old)
            old.kill()
        self._workers[i] = _Worker(self._ctx, self._slots[i], self.threads)
        return self._workers[i]

    def _check_started(self, w: _Worker) -> None:
        """Stop every worker and raise when the dead ``w`` never started: a worker that cannot start would fail
        every trial the same way, so the study ends at once with why, instead of trial after trial."""
        if w.process.is_alive() or w.started():
            return
        w.process.join(5.0)
        code = w.process.exitcode
        self.close()
        if code == RERAN_EXIT:
            raise RuntimeError(MAIN_GUARD)
        raise RuntimeError(f"Processes: the worker process for {w.slot} died while starting, before it could run a "
                           f"trial ({death_reason(code)}); what it printed above (on stderr) says why (e.g. an import "
                           "error in your script, or too little memory)")

    def _pickled(self, fn: TrainFn) -> tuple[int, bytes]:
        if self._fn is None or self._fn[0] is not fn:
            import cloudpickle

            try:
                blob = cloudpickle.dumps(fn)
            except Exception as e:
                raise TypeError(f"Processes: the training function cannot be pickled to send it to the workers "
                                f"({type(e).__name__}: {e}); make what it captures picklable, or use Inline()") from e
            self._fn = (fn, 0 if self._fn is None else self._fn[1] + 1, blob)
        return self._fn[1], self._fn[2]

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        end = math.inf if timeout is None else time.monotonic() + timeout
        out: list[Outcome] = []
        while not out:
            busy = [w for w in self._workers if w is not None and w.trial is not None]
            if not busy:
                break
            limit = min(end, *(w.deadline for w in busy)) - time.monotonic()
            ready = set(wait_any([w.conn for w in busy] + [w.process.sentinel for w in busy],
                                 timeout=None if limit == math.inf else max(0.0, limit)))
            for w in busy:
                if w.conn in ready or w.process.sentinel in ready:
                    out.extend(self._service(w))
                elif time.monotonic() >= w.deadline:
                    out.append(self._replace(w, f"timed out after {w.timeout:g} s"))
            if time.monotonic() >= end:
                break
        return out

    def _service(self, w: _Worker) -> list[Outcome]:
        """Answer ``w``'s reports and collect its outcome; a dead worker fails its trial and is replaced.

        An error while the driver handles a report fails that trial alone (``_handle``), as on every executor."""
        try:
            while w.conn.poll():
                try:
                    msg = w.conn.recv()
                except (EOFError, OSError):
                    raise
                except Exception as e:  # only a report can hold the user's objects (its step): answer it
                    w.conn.send(_Refusal(f"the driver could not read a report: {describe(e)}"))
                    continue
                if msg[0] == "done":
                    w.trial = None
                    return [msg[1]]
                if msg[0] == "ready":
                    w.ready = True
                elif msg[0] == "started":
                    w.deadline = math.inf if w.timeout is None else time.monotonic() + w.timeout
                else:
                    answer = _handle(w.on_report, *msg[1:]) if w.trial is not None and w.on_report else Decision.CONTINUE
                    w.conn.send(answer)
        except (EOFError, OSError):  # its end closed: it is exiting (or it closed the pipe itself: then kill it)
            w.process.join(5.0)
            if w.process.is_alive():
                return [self._replace(w, "the worker's connection to the driver broke (it closed its end)")]
        if w.process.is_alive():
            return []
        w.process.join()
        self._check_started(w)
        return [self._replace(w, death_reason(w.process.exitcode))]

    def _replace(self, w: _Worker, reason: str) -> Outcome:
        """Kill ``w`` and what its trial started, start a fresh worker in its slot, and fail its trial with
        ``reason``."""
        trial = w.trial
        self._fresh(self._workers.index(w))
        return Outcome(trial.number, Status.FAILED, reason=reason)

    def close(self) -> None:
        """Stop every worker (idle ones politely, busy ones by force); the executor can be used again after."""
        for w in self._workers:
            if w is not None and w.trial is None:
                try:
                    w.conn.send(("stop",))
                except OSError:
                    pass
        for w in self._workers:
            if w is not None:
                if w.trial is None:
                    w.process.join(2.0)
                w.kill()
        self._workers[:] = [None] * self.slots


def _kill_all(workers: list[_Worker | None]) -> None:
    """The finalizer of a ``Processes`` never closed: no worker, nor what its trials started, outlives it."""
    for w in workers:
        if w is not None:
            w.kill()


# --- Ray ------------------------------------------------------------------------------------------------------
def _import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ImportError("th.Ray needs Ray: pip install 'torchhpo[ray]' (or pip install 'ray[default]')") from e
    return ray


class _Mailbox:
    """The Ray actor (async) between trials and the driver: a trial's report waits here for the driver's decision."""

    def __init__(self) -> None:
        import asyncio

        self._reports: list[tuple[int, int, float]] = []
        self._started: list[int] = []
        self._arrived = asyncio.Event()
        self._decisions: dict[int, Any] = {}

    async def report(self, number: int, step: int, value: float) -> Decision | _Refusal:
        import asyncio

        decision = asyncio.get_running_loop().create_future()
        self._decisions[number] = decision
        self._reports.append((number, step, value))
        self._arrived.set()
        return await decision

    async def start(self, number: int) -> None:
        self._started.append(number)
        self._arrived.set()

    async def poll(self, timeout: float) -> tuple[list[int], list[tuple[int, int, float]]]:
        """The trials started and the reports waiting for a decision since the last poll; waits up to ``timeout``
        seconds for one to arrive."""
        import asyncio

        if not self._reports and not self._started:
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        self._arrived.clear()
        out = self._started, self._reports
        self._started, self._reports = [], []
        return out

    async def decide(self, number: int, decision: Decision | _Refusal) -> None:
        waiting = self._decisions.pop(number, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(decision)


def _ray_trial(fn: TrainFn, trial: Trial, mailbox: Any, gpus: float, threads: int) -> Outcome:
    """One trial as a Ray task: reports go through the mailbox actor and block for the driver's decision."""
    import ray

    torch.set_num_threads(threads)
    trial.device = torch.device("cuda:0" if gpus > 0 and torch.cuda.is_available() else "cpu")
    trial.reporter = lambda number, step, value: _decision(ray.get(mailbox.report.remote(number, step, value)))
    mailbox.start.remote(trial.number)  # the trial's clock (timeout_per_trial) starts now, not at submit
    try:
        return run_trial(fn, trial)
    finally:
        trial.reporter = None
        release_memory()


class Ray:
    """Runs trials as Ray tasks on a Ray cluster; the study, searcher, scheduler and storage stay in the driver.

    Reports travel through an async actor: the trial blocks on it until the driver, polling it in ``wait()``,
    decides. A task whose worker dies fails its trial ("worker died: ...") and Ray starts a new worker.

    Args:
        address: ``None`` starts (or joins the already started) local Ray; ``"auto"`` joins the cluster this
            machine belongs to (``ray start --head`` / ``ray start --address=...``); ``"ray://host:10001"`` a
            remote one.
        resources_per_trial: Ray resources of one trial, e.g. ``{"cpu": 1, "gpu": 1}`` (fractions allowed); a
            ``ValueError`` when no node of the cluster has that much.
        slots: trials at once; default: as many as the cluster's CPUs and GPUs hold.
        threads: ``torch.set_num_threads`` in each trial (default: its CPUs, at least 1).

    Example:
        >>> import torchhpo as th
        >>> ex = th.Ray(address="auto", resources_per_trial={"cpu": 2, "gpu": 1})  # doctest: +SKIP
    """

    concurrent = True  # trials run while the driver waits: the study prefetches the next config meanwhile

    def __init__(self, address: str | None = None, resources_per_trial: dict[str, float] | None = None, *,
                 slots: int | None = None, threads: int | None = None) -> None:
        res = {"cpu": 1.0, "gpu": 0.0, **(resources_per_trial or {})}
        bad = set(res) - {"cpu", "gpu"} or any(not isinstance(v, (int, float)) or v < 0 for v in res.values())
        if bad or res["cpu"] + res["gpu"] == 0:
            raise ValueError(f"Ray: resources_per_trial must be like {{'cpu': 1, 'gpu': 0}} with non-negative numbers, "
                             f"not all zero; got {resources_per_trial!r}")
        if slots is not None and (isinstance(slots, bool) or not isinstance(slots, int) or slots < 1):
            raise ValueError(f"Ray: slots must be a positive int or None, got {slots!r}")
        ray = _import_ray()
        self._own = not ray.is_initialized()
        if self._own:
            ray.init(address=address, include_dashboard=False, logging_level="warning")
        self.resources = res
        total = ray.cluster_resources()
        unfit = _unfit(res, total, _node_resources(ray))
        if unfit is not None:  # no trial could ever be scheduled: say so now instead of waiting forever
            if self._own:
                ray.shutdown()
            raise ValueError(unfit)
        fits = [total.get(k.upper(), 0.0) / v for k, v in res.items() if v > 0]
        self.slots = slots or max(1, int(min(fits) + 1e-9))
        self.threads = threads or max(1, int(res["cpu"]))
        self._task = ray.remote(_ray_trial).options(num_cpus=res["cpu"], num_gpus=res["gpu"], max_retries=0)
        self._mailbox = ray.remote(_Mailbox).options(num_cpus=0).remote()
        self._poll: Any = None
        self._fn: tuple[Any, Any] | None = None
        self._running: dict[Any, tuple[Trial, Reporter, float, float | None]] = {}  # ref -> trial, hook, deadline

    def __enter__(self) -> Ray:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ray(resources_per_trial={self.resources}, slots={self.slots})"

    def submit(self, fn: TrainFn, trial: Trial, on_report: Reporter, timeout: float | None = None) -> None:
        ray = _import_ray()
        if len(self._running) >= self.slots:
            raise RuntimeError(f"Ray: all {self.slots} slots are busy; wait() for one before submitting")
        if self._fn is None or self._fn[0] is not fn:
            self._fn = (fn, ray.put(fn))  # shipped to the object store once, not once per trial
        ref = self._task.remote(self._fn[1], trial, self._mailbox, self.resources["gpu"], self.threads)
        self._running[ref] = (trial, on_report, math.inf, timeout)

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        ray = _import_ray()
        end = math.inf if timeout is None else time.monotonic() + timeout
        out: list[Outcome] = []
        while self._running and not out:
            if self._poll is None:
                self._poll = self._mailbox.poll.remote(0.5)
            limit = min(end, *(d for _, _, d, _ in self._running.values())) - time.monotonic()
            ready, _ = ray.wait([self._poll, *self._running], num_returns=1,
                                timeout=None if limit == math.inf else max(0.0, limit))
            if self._poll in ready:
                self._answer(*ray.get(self._poll))
                self._poll = None
            out += [self._collect(ref) for ref in ready if ref in self._running]
            out += self._expire()
            if time.monotonic() >= end:
                break
        return out

    def _answer(self, started: list[int], reports: list[tuple[int, int, float]]) -> None:
        for ref, (trial, hook, _, timeout) in self._running.items():
            if trial.number in started:
                self._running[ref] = (trial, hook, math.inf if timeout is None else time.monotonic() + timeout, timeout)
        hooks = {trial.number: hook for trial, hook, _, _ in self._running.values()}
        for number, step, value in reports:
            answer = _handle(hooks[number], number, step, value) if number in hooks else Decision.STOP
            self._mailbox.decide.remote(number, answer)

    def _collect(self, ref: Any) -> Outcome:
        ray = _import_ray()
        trial = self._running.pop(ref)[0]
        try:
            return ray.get(ref)
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.OutOfMemoryError) as e:
            message = describe(e).partition(": ")[2].strip() or type(e).__name__
            return Outcome(trial.number, Status.FAILED, reason=f"worker died: {message.splitlines()[0]}")
        except ray.exceptions.RayError as e:  # e.g. the function could not be unpickled on the worker
            return Outcome(trial.number, Status.FAILED, reason=describe(e))

    def _expire(self) -> list[Outcome]:
        ray, now, out = _import_ray(), time.monotonic(), []
        for ref, (trial, _, deadline, timeout) in list(self._running.items()):
            if now >= deadline:
                ray.cancel(ref, force=True)  # kills the worker process; Ray starts another
                del self._running[ref]
                out.append(Outcome(trial.number, Status.FAILED, reason=f"timed out after {timeout:g} s"))
        return out

    def close(self) -> None:
        """Cancel the running trials (their workers are killed); shut Ray down only if this executor started it
        (it cannot be used again then; one given a running Ray can)."""
        ray = _import_ray()
        for ref in self._running:
            ray.cancel(ref, force=True)
        self._running.clear()
        self._poll = None
        if self._own and ray.is_initialized():
            ray.shutdown()
            self._own = False


def _node_resources(ray: Any) -> list[dict[str, float]]:
    """The resources of each live node of the Ray cluster (empty when Ray cannot say)."""
    try:
        return [dict(node.get("Resources", {})) for node in ray.nodes() if node.get("Alive", True)]
    except Exception:  # an older or remote Ray without node listings: the cluster's totals still guard
        return []


def _unfit(res: dict[str, float], total: dict[str, float], nodes: list[dict[str, float]]) -> str | None:
    """Why a trial asking for ``res`` (``{"cpu": 1, "gpu": 0}``) could never be scheduled on a Ray cluster with
    these ``total`` resources (``{"CPU": 8.0, "GPU": 1.0}``) and ``nodes``, or ``None`` when it fits somewhere."""
    for key in ("cpu", "gpu"):
        want, have = res[key], total.get(key.upper(), 0.0)
        if want > have + 1e-9:
            fix = (f"drop '{key}' or connect to a cluster with {key.upper()}s" if have == 0 else
                   f"lower '{key}' to at most {have:g}, or connect to a larger cluster")
            return (f"Ray: resources_per_trial asks for {_count(want, key)} per trial; this Ray cluster has "
                    f"{_count(have, key)}: {fix}")
    if nodes and not any(all(node.get(k.upper(), 0.0) + 1e-9 >= v for k, v in res.items()) for node in nodes):
        each = "; ".join(f"{_count(n.get('CPU', 0.0), 'cpu')} and {_count(n.get('GPU', 0.0), 'gpu')}" for n in nodes)
        return (f"Ray: resources_per_trial asks for {_count(res['cpu'], 'cpu')} and {_count(res['gpu'], 'gpu')} per "
                f"trial, and a trial runs on one node; no node of this Ray cluster has that much (its nodes: {each}): "
                "lower resources_per_trial to what one node has")
    return None


def _count(n: float, key: str) -> str:
    """``"1 GPU"``, ``"2 CPUs"``, ``"0.5 GPU"``."""
    return f"{n:g} {key.upper()}{'s' if n > 1 or n == 0 else ''}"


def make_executor(executor: Executor | None, devices: str | list[str] | None = None, *,
                  timeout_per_trial: float | None = None) -> Executor:
    """The executor to use: as given; else ``Processes`` over ``devices`` when they are several (or when
    ``timeout_per_trial`` needs a worker that can be killed), else ``Inline`` on the one device.

    A process re-running a script without a ``__main__`` guard is stopped here, before its study starts a trial."""
    if executor is not None:
        if devices is not None:
            raise ValueError("give either executor= or devices=, not both; an executor carries its own devices")
        if timeout_per_trial is not None and isinstance(executor, Inline):
            raise ValueError(INLINE_TIMEOUT)
        if isinstance(executor, Processes):
            _refuse_rerun()
        return executor
    found = resolve_devices(devices)
    if len(found) > 1 or timeout_per_trial is not None:
        _refuse_rerun()
        return Processes(found)
    return Inline(found[0])
