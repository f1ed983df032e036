"""``Processes``: trials in spawned worker processes on this machine, each pinned to one device.

The driver and each worker talk over a pipe: the driver sends a trial (the training function travels once), the
worker sends its reports and blocks for each answer, then the outcome. A worker that dies, or whose trial runs past
its timeout, is killed with what its trial started and replaced; its trial fails with why.
"""

from __future__ import annotations

import contextlib
import gc
import math
import multiprocessing as mp
import os
import signal
import threading
import time
import weakref
from collections.abc import Iterator
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_any
from typing import Any

import torch

from torchhpo.checks import integer
from torchhpo.executors.base import (
    Outcome,
    Refusal,
    TrainFn,
    answer_report,
    decided,
    error_text,
    release_memory,
    resolve_devices,
    run_trial,
)
from torchhpo.threads import DRIVER_CPUS, Threads, trial_threads, usable_cpus
from torchhpo.trial import Decision, Reporter, Status, Trial

__all__ = ["MAIN_GUARD", "Processes", "death_reason", "refuse_rerun"]

WORKER_ENV = "TORCHHPO_WORKER"  # set while the driver starts a worker: "this process is a torchhpo worker"
RERAN_EXIT = 93  # a worker's exit code when it found itself re-running the user's script (no __main__ guard)
MAIN_GUARD = ("torchhpo: worker processes re-ran your script's top level: put the code that starts the study under "
              "`if __name__ == '__main__':` (each worker process imports your script to find the training function, "
              "so the script must not start a study when imported)")


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


def refuse_rerun() -> None:
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
        return decided(conn.recv())

    try:
        conn.send(("ready",))  # started: a death from now on fails a trial, not the whole executor
        key: int | None = None
        fn: Any = None
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
                        f"the worker could not unpickle the training function: {error_text(e)}"))))
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
        self.reporter: Reporter | None = None  # the driver-side trial's reporter: it answers the worker's reports
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
        threads: ``torch.set_num_threads`` in each worker, before its first trial. ``"auto"``:
            ``$TORCHHPO_THREADS`` if set, else the usable CPUs but one (left to the driver) divided among the
            workers, at least 1, at most ``$OMP_NUM_THREADS`` if set (``torchhpo.threads.trial_threads``).

    Example:
        >>> import torchhpo as th
        >>> study = th.Study(th.Space({"x": th.Float(0.0, 1.0)}), seed=0)
        >>> with th.Processes(devices=["cpu"] * 2) as ex:  # doctest: +SKIP
        ...     study.optimize(lambda c, t: (c["x"] - 0.5) ** 2, n_trials=8, executor=ex)
    """

    concurrent = True  # trials run while the driver waits: the study prefetches the next config meanwhile

    def __init__(self, devices: str | list[str] = "auto", per_device: int = 1, threads: Threads = "auto") -> None:
        integer("Processes: per_device", per_device)
        self.devices = resolve_devices(devices)
        for device in self.devices:
            _pin(device)  # an invisible GPU is refused here, not when the first trial starts
        self.slots = len(self.devices) * per_device
        self.threads = trial_threads("Processes", threads, (usable_cpus() - DRIVER_CPUS) / self.slots)
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
        return f"Processes(devices={self.devices}, slots={self.slots}, threads={self.threads})"

    def submit(self, fn: TrainFn, trial: Trial, *, timeout: float | None = None) -> None:
        i = next((i for i, w in enumerate(self._workers) if w is None or w.trial is None), None)
        if i is None:
            raise RuntimeError(f"Processes: all {self.slots} workers are busy; wait() for one before submitting")
        key, blob = self._pickled(fn)
        if all(w is None for w in self._workers):  # first use: start every worker now, so they warm up together
            refuse_rerun()  # a worker of a worker: the script has no __main__ guard
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
        w.key, w.trial, w.reporter, w.timeout, w.deadline = key, trial, trial.reporter, timeout, math.inf

    def _fresh(self, i: int) -> _Worker:
        """A new worker in slot ``i``, in place of the dead one there (killing what its trials left running)."""
        old = self._workers[i]
        if old is not None:
            self._check_started(old)
            old.kill()
        w = self._workers[i] = _Worker(self._ctx, self._slots[i], self.threads)
        return w

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

        An error while the driver handles a report fails that trial alone (``answer_report``), as on every
        executor."""
        try:
            while w.conn.poll():
                try:
                    msg = w.conn.recv()
                except (EOFError, OSError):
                    raise
                except Exception as e:  # only a report can hold the user's objects (its step): answer it
                    w.conn.send(Refusal(f"the driver could not read a report: {error_text(e)}"))
                    continue
                if msg[0] == "done":
                    w.trial = None
                    return [msg[1]]
                if msg[0] == "ready":
                    w.ready = True
                elif msg[0] == "started":
                    w.deadline = math.inf if w.timeout is None else time.monotonic() + w.timeout
                else:
                    w.conn.send(answer_report(w.reporter, *msg[1:]) if w.trial is not None else Decision.CONTINUE)
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
        assert trial is not None, "only a busy worker is replaced with its trial failed"
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

