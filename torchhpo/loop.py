"""The optimize loop: start trials on an executor's free slots, hand their outcomes to the study, until a limit.

``Study.optimize`` calls ``run``. Each turn: resume the PAUSED trials the scheduler promotes, fill the other free
slots with failed configs to retry and then new configs (one ask, so a batch is proposed jointly), and wait for
outcomes. Once no new trial may start (``n_trials`` reached, the searcher exhausted) the scheduler settles the
paused trials with the peers there are. Past a limit that ends the call early (``timeout``, ``max_epochs_total``,
``target``, ``study.stop()``), nothing starts or resumes: running trials finish and paused ones stay PAUSED for a
later call.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor as Pool
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from torchhpo.checks import integer, number
from torchhpo.driver import Driver, headline
from torchhpo.executors import Executor, Outcome, TrainFn, make_executor
from torchhpo.executors.processes import refuse_rerun
from torchhpo.observations import config_key
from torchhpo.searchers import GridSearch, Searcher
from torchhpo.space import Config, Space
from torchhpo.storage import INTERRUPTED
from torchhpo.threads import usable_cpus
from torchhpo.trial import Status, Trial, TrialRecord

Study = Any  # torchhpo.study.Study, which imports this module: named, not imported, to keep the import graph a tree

__all__ = ["Callback", "FailingTrials", "run"]

Callback = Callable[[Study, TrialRecord], Any]

AHEAD_PER_SLOT = 4  # prefetched configs per slot at most: more would be proposed on an ever staler snapshot
ASK_MARGIN = 1.5  # an ask may take this much longer than the last one (its batch is larger, the cores busier)
RATE_WINDOW = 2  # the rate of new configs is measured over the last RATE_WINDOW x slots of them
PREFETCH = ("auto", "thread", "process", "off")
HINT_SHARE = 0.25  # a sequential run whose searcher asks took this share of its wall time is told of prefetch=...
HINT_SECONDS = 30.0  # ... when it ran at least this long

log = logging.getLogger("torchhpo")


class FailingTrials(RuntimeError):
    """The first trials of an ``optimize`` call all failed with the same error (``fail_fast``): the study stopped.
    The message holds the error and the first failed trial's traceback."""


def run(study: Study, driver: Driver, fn: TrainFn, n_trials: int | None, timeout: float | None, *, executor: Executor | None,
        devices: str | list[str] | None, batch: bool, retries: int, timeout_per_trial: float | None,
        progress: bool, fail_fast: int | None, callbacks: Sequence[Callback], max_epochs_total: int | None,
        target: float | None, prefetch: str = "auto") -> None:
    """``Study.optimize``'s loop (its docstring says what each argument does)."""
    if prefetch not in PREFETCH:
        raise ValueError(f"optimize: prefetch={prefetch!r} must be one of {list(PREFETCH)}")
    if n_trials is None and timeout is None and max_epochs_total is None and not isinstance(study.searcher, GridSearch):
        raise ValueError("optimize: give n_trials, timeout or max_epochs_total (only a grid search ends by itself)")
    integer("optimize: n_trials", n_trials, low=0, none=True)
    integer("optimize: retries", retries, low=0)
    number("optimize: timeout", timeout, strict=True, none=True)
    number("optimize: timeout_per_trial", timeout_per_trial, strict=True, none=True)
    integer("optimize: fail_fast", fail_fast, none=True)
    integer("optimize: max_epochs_total", max_epochs_total, none=True)
    number("optimize: target", target, low=-math.inf, none=True)
    if any(not callable(c) for c in callbacks):
        raise TypeError("optimize: callbacks must be a list of functions callback(study, record)")
    driver.fail_stale()
    driver.drop_checkpoints()
    if prefetch == "process":
        refuse_rerun()  # a spawned process re-running a script without a __main__ guard stops here
    own = executor is None
    executor = make_executor(executor, devices, timeout_per_trial=timeout_per_trial)
    mode = ("thread" if executor.concurrent else "off") if prefetch == "auto" else prefetch
    try:
        ahead = None if batch or mode == "off" else _Prefetch(executor.slots, driver.searcher, mode == "process")
    except BaseException:
        if own:
            executor.close()
        raise
    call = Call(study, driver, n_trials, timeout, fail_fast, callbacks, max_epochs_total, target, retries, progress)
    driver.stopping, driver.on_end = False, call.ended
    per_trial = None if timeout_per_trial is None else float(timeout_per_trial)
    running: set[int] = set()
    before = set(driver.live)  # trials of the user's own (ask without tell): not this call's to fail

    def start(trials: list[Trial]) -> None:
        running.update(t.number for t in trials)  # first: a failed submit is cleaned up like the others
        for trial in trials:
            executor.submit(fn, trial, timeout=per_trial)  # trial.reporter (the driver's hook) takes its reports

    begun, asking = time.monotonic(), 0.0  # the call's start; the seconds spent asking for new configs
    try:
        while True:
            if not call.over():
                free = 0 if batch and running else executor.slots - len(running)
                promoted = driver.promote(free, drain=False)  # promoted PAUSED trials go before new configs
                start(promoted)
                if free > len(promoted):
                    asked = time.monotonic()
                    start(call.next(free - len(promoted), ahead))
                    asking += time.monotonic() - asked
                if not running:  # nothing new may start: settle the paused ones with the peers there are
                    start(study.settle(executor.slots))
                if ahead is not None and len(running) >= executor.slots and call.room > 0 and not call.exhausted:
                    ahead.start(driver.space, driver.records, call.room)  # while the trials train
            if not running:
                break
            left = call.deadline - time.monotonic()  # past the deadline, just wait for the running trials
            for outcome in executor.wait(timeout=left if 0 < left < math.inf else None):
                running.discard(outcome.number)
                call.finish(outcome)
                if ahead is not None:
                    ahead.arrived()
            call.show()
        if prefetch == "auto" and ahead is None and not batch:  # a sequential run: nothing trained while it asked
            _hint(asking, time.monotonic() - begun)
    except BaseException:  # Ctrl-C, an error in a scheduler or the storage, FailingTrials: leave storage consistent
        for n in sorted(running | (set(driver.live) - before)):  # started here, submitted or not yet
            if not driver.records[n].status.is_final:
                study.tell(n, status=Status.FAILED, reason=INTERRUPTED)
        if not own:
            executor.close()  # its workers still run the abandoned trials
        raise
    finally:
        if ahead is not None:
            ahead.close()
        if own:
            executor.close()
        call.close()
        driver.on_end = None
        study.storage.flush()  # the .db file alone now holds the study: safe to copy


def _hint(asking: float, wall: float) -> None:
    """Tell the user of ``prefetch="process"`` when the searcher's asks took much of a sequential run's time."""
    if wall >= HINT_SECONDS and asking >= HINT_SHARE * wall and usable_cpus() > 1:
        log.warning("the searcher's asks took %.0f%% of this optimize call's %.0f s, during which no trial trained; "
                    "optimize(prefetch='process') proposes the next configs in a process of its own on a spare core "
                    "while the trials train (docs/parallel.md, 'Asynchronous refill or batches')",
                    100 * asking / wall, wall)


class Call:
    """One ``optimize`` call: its limits, its retry queue, what it saw end (progress, ``fail_fast``, callbacks)."""

    def __init__(self, study: Study, driver: Driver, n_trials: int | None, timeout: float | None, fail_fast: int | None,
                 callbacks: Sequence[Callback], max_epochs_total: int | None, target: float | None, retries: int,
                 progress: bool) -> None:
        self.study, self.driver, self.fail_fast, self.callbacks = study, driver, fail_fast, list(callbacks)
        self.max_epochs_total, self.target, self.retries = max_epochs_total, target, retries
        self.room = math.inf if n_trials is None else n_trials  # new configs this call may still start
        self.deadline = math.inf if timeout is None else time.monotonic() + timeout
        self.exhausted = False
        self.new: set[int] = set()  # the new trials this call started (what n_trials counts)
        self.n = self.failed = self.pruned = 0
        self.retry: list[tuple[Config, int, int]] = []  # (config, number, attempt) of failed trials to run again
        self._first: list[TrialRecord] | None = []  # the first trials that ended, while all of them failed
        self._reached = False
        self.bar = None
        if progress:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=n_trials, desc="trials", unit="trial", dynamic_ncols=True)

    def over(self) -> bool:
        """No trial may start or resume any more: the deadline, the epoch budget, the target, or ``stop()``."""
        return (time.monotonic() >= self.deadline or self._reached or self.driver.stopping
                or (self.max_epochs_total is not None and self.driver.epochs >= self.max_epochs_total))

    def next(self, free: int, prefetch: _Prefetch | None) -> list[Trial]:
        """Up to ``free`` trials to start: failed configs to retry first, then up to ``room`` new ones (the
        prefetched configs first)."""
        trials = [self.driver.start(config, source="retry", retry_of=number, attempt=attempt)
                  for config, number, attempt in self.retry[:free]]
        del self.retry[: len(trials)]
        k = int(min(free - len(trials), self.room))
        take = None if prefetch is None else lambda: prefetch.take(k, self.driver.records)
        fresh = self.driver.ask_new(k, take) if k > 0 and not self.exhausted else []
        self.exhausted = len(fresh) < k
        self.room -= len(fresh)
        self.new.update(t.number for t in fresh)
        return trials + fresh

    def finish(self, outcome: Outcome) -> None:
        """An executor's outcome: a PAUSED trial waits for the scheduler; any other ends (``ended`` runs)."""
        record = self.driver.records[outcome.number]
        record.attrs["seconds"] = record.attrs.get("seconds", 0.0) + outcome.seconds  # summed over resumes
        if outcome.attrs:
            record.attrs["user"] = {**record.user_attrs, **outcome.attrs}
        if record.status.is_final:  # already told (e.g. by a callback's study.tell or another driver)
            return
        self.study.tell(outcome.number, outcome.value, status=outcome.status, reason=outcome.reason)
        attempt = record.attrs.get("attempt", 0)
        if record.status is Status.FAILED and attempt < self.retries:
            self.retry.append((record.config, record.number, attempt + 1))

    def ended(self, record: TrialRecord) -> None:
        """A trial ended during this call (``Study.tell`` calls this): count it, check ``target`` and
        ``fail_fast``, run the callbacks."""
        self.n += record.number in self.new  # the bar counts the n_trials new ones; retries and resumes are extra
        self.failed += record.status is Status.FAILED
        self.pruned += record.status is Status.PRUNED
        score = record.score if record.status is Status.COMPLETED else None
        if self.target is not None and score is not None and score >= record.as_score(self.target):
            self._reached = True
        self._fail_fast(record)
        for callback in self.callbacks:
            callback(self.study, record)

    def _fail_fast(self, record: TrialRecord) -> None:
        if self.fail_fast is None or self._first is None:
            return
        if record.status is not Status.FAILED or record.reason == INTERRUPTED:
            self._first = None  # something worked: keep going whatever fails later
            return
        if "retry_of" in record.attrs:  # k configs failing, not k attempts of one
            return
        self._first.append(record)
        if len(self._first) == self.fail_fast and len({headline(r.reason) for r in self._first}) == 1:
            first = self._first[0]
            raise FailingTrials(
                f"the first {self.fail_fast} trials all failed with the same error, so the study stopped: "
                f"{headline(first.reason)}\nFix the training function (trial {first.number}'s reason follows), or "
                f"pass fail_fast=None to optimize to keep going.\n\n{first.reason}")
        if len(self._first) >= self.fail_fast:
            self._first = None

    def show(self) -> None:
        """Progress: trials of this call that ended (paused ones have not), the best value so far, and how many
        failed or were pruned. O(1)."""
        if self.bar is None or self.n == self.bar.n:
            return
        self.bar.n = self.n
        top = self.driver.top
        postfix: dict[str, Any] = {"best": f"{top[0].value:.4g}"} if top else {}
        postfix.update({k: v for k, v in (("failed", self.failed), ("pruned", self.pruned)) if v})
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.show()
            self.bar.close()


class _Prefetch:
    """Keeps proposals ready for the slots that free next, so that a freed slot refills at once instead of
    idling through a model fit.

    While every slot is busy, a background ask proposes as many configs as slots are likely to free before it
    returns (``want``), on a snapshot of the records (running trials pending). A newer ask starts as soon as a
    result arrives, and its batch replaces what is left of the previous one: freed slots take from the latest fit.
    The driver takes (waits for) an ask in flight before asking the searcher itself. A proposal misses the
    results that arrived while it was computed and those that arrive before it is taken; configs equal to one
    started after its snapshot are dropped.

    The background ask runs in a thread of the driver, on the study's searcher (so the searcher never runs twice
    at once), or with ``process`` in a process of its own, on a copy of the searcher sent there once: a model
    fitted there does not hold the driver's interpreter lock, so the driver keeps answering reports and a trial
    training in the driver's own thread (``Inline``) keeps its speed. The copy's state (warm starts, caches) stays
    in that process; the process starts in the background (seconds: it imports torch and the searcher's
    libraries), and until it is ready the asks run in a thread."""

    def __init__(self, slots: int, searcher: Searcher, process: bool) -> None:
        self._slots, self._searcher = slots, searcher
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="torchhpo-prefetch")
        self._process: Pool | None = None
        self._up: Any = None  # process: the start-up, done once the copy of the searcher is ready there
        if process:
            import multiprocessing as mp

            import cloudpickle
            try:
                blob = cloudpickle.dumps(searcher)
            except Exception as e:
                raise TypeError(f"optimize: prefetch='process' sends the searcher to a process of its own, but "
                                f"{type(searcher).__name__} cannot be pickled ({type(e).__name__}: {e}); use "
                                "prefetch='thread'") from e
            self._process = ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn"),
                                                initializer=_receive, initargs=(blob,))
            self._up = self._process.submit(_ready)
        self._future: Any = None  # the ask in flight
        self._ready: list[Config] = []  # the latest batch's configs not taken yet
        self._since = 0  # how many trials its snapshot held: later ones may repeat its configs
        self._fresh = False  # no result arrived since the last ask's snapshot
        self._seconds = 0.0  # how long the last ask took
        self._starts: deque[float] = deque(maxlen=RATE_WINDOW * slots)  # when the latest new configs were taken

    def want(self) -> int:
        """How many configs the next ask proposes: the new configs the slots will take while it runs (at the rate
        of the latest ones, over ``ASK_MARGIN`` times the last ask's duration), one more for the slot that frees as
        it returns; at least one per slot (all may free at once), at most ``AHEAD_PER_SLOT`` per slot."""
        n, first, last = len(self._starts), self._starts[0] if self._starts else 0.0, self._starts[-1] if self._starts else 0.0
        rate = (n - 1) / (last - first) if last > first else 0.0
        need = 1 + math.ceil(rate * ASK_MARGIN * self._seconds)
        return max(self._slots, min(AHEAD_PER_SLOT * self._slots, need))

    def arrived(self) -> None:
        """A result arrived (a trial ended or paused): the next ``start`` asks again, on records that hold it."""
        self._fresh = False

    def start(self, space: Space, records: list[TrialRecord], room: float) -> None:
        """Ask in the background unless an ask is in flight, or the ready configs cover ``want`` and no result
        arrived since their snapshot (``room``: how many new configs the call may still start): in the model
        process once it is up, else in the thread."""
        want = int(min(self.want(), room))
        if self._future is not None or (self._fresh and len(self._ready) >= want):
            return
        self._fresh = True
        snapshot = [r.copy() for r in records]
        if self._process is not None and self._up.done():
            self._up.result()  # a process that could not start raises here
            self._future = self._process.submit(_remote_ask, space, snapshot, want)
        else:
            self._future = self._thread.submit(_timed_ask, self._searcher, space, snapshot, want)

    def take(self, k: int, records: Sequence[TrialRecord]) -> list[Config] | None:
        """Up to ``k`` configs from the latest batch, none equal to a trial started after its snapshot (fewer: the
        caller asks the searcher for the rest); ``None`` when nothing was prefetched. Waits for the ask in flight
        when the ready configs are fewer than ``k``, so that no ask is in flight when the caller asks itself."""
        self._ready = _unstarted(self._ready, records[self._since:])
        if self._future is not None and (self._future.done() or len(self._ready) < k):
            future, self._future = self._future, None
            configs, self._since, self._seconds = future.result()
            self._ready = _unstarted(configs, records[self._since:])
        elif not self._ready:
            return None
        out, self._ready = self._ready[:k], self._ready[k:]
        now = time.monotonic()
        self._starts.extend(now for _ in out)
        return out

    def close(self) -> None:
        """Stop asking. A thread's ask in flight runs to its end (a thread cannot be stopped, and the study's
        searcher must not be left mid-ask); a model process is stopped at once, its ask in flight abandoned: no
        one takes its configs now, and a GP fit can take seconds."""
        abandoned, self._future = self._future is not None and not self._future.done(), None
        self._thread.shutdown(wait=True)
        if self._process is not None:
            if abandoned:  # terminate the worker: shutdown would wait for its ask to finish first
                for worker in list((getattr(self._process, "_processes", None) or {}).values()):
                    worker.terminate()
            self._process.shutdown(wait=True, cancel_futures=True)


_remote: Searcher | None = None  # the searcher of a model process (prefetch="process")


def _receive(blob: bytes) -> None:
    """A model process's start: one torch thread (the driver's core), the searcher it asks."""
    global _remote
    import pickle

    import torch
    torch.set_num_threads(1)
    _remote = pickle.loads(blob)


def _ready() -> bool:
    return _remote is not None


def _remote_ask(space: Space, snapshot: list[TrialRecord], n: int) -> tuple[list[Config], int, float]:
    """``_timed_ask`` on the model process's searcher."""
    assert _remote is not None
    return _timed_ask(_remote, space, snapshot, n)


def _timed_ask(searcher: Searcher, space: Space, snapshot: list[TrialRecord], n: int) -> tuple[list[Config], int, float]:
    """``searcher.ask`` on ``snapshot``, with the snapshot's length and the seconds the ask took."""
    begin = time.monotonic()
    configs = searcher.ask(space, snapshot, n)
    return configs, len(snapshot), time.monotonic() - begin


def _unstarted(configs: list[Config], later: Sequence[TrialRecord]) -> list[Config]:
    """``configs`` without those of the trials ``later`` (started after the snapshot they were proposed on)."""
    keys = {config_key(r.config) for r in later}
    return [c for c in configs if config_key(c) not in keys]
