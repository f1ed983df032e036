"""One driver of a study: the in-memory mirror of its trials, and every change this driver makes to a trial.

The ``Study`` is the user's handle; its ``Driver`` does the work. It keeps every trial's record in a ``History``
(so searchers, schedulers and the reporter never read the database), takes in what other drivers of the
study wrote (``sync``: their new trials, reports and ends), and changes a trial only storage first: a write the
storage refuses (or that another driver won) leaves the mirror as it was. Several threads may share a driver
(``lock``); several processes share a study through its storage.
"""

from __future__ import annotations

import bisect
import copy
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from torchhpo.checkpoints import Checkpoints
from torchhpo.checks import number as checked_number
from torchhpo.fidelity import EpochFidelity
from torchhpo.history import History
from torchhpo.schedulers import BudgetScheduler, RungScheduler, Scheduler
from torchhpo.searchers import Searcher
from torchhpo.settings import describe, reseeded
from torchhpo.space import Config, Space
from torchhpo.storage import Heartbeat, SQLiteStorage, Storage
from torchhpo.trial import Decision, Status, Trial, TrialRecord, unusable_value

__all__ = ["Driver", "headline"]

log = logging.getLogger("torchhpo")


def headline(reason: str | None) -> str:
    """The first line of a failure's reason (the error, without its traceback)."""
    text = (reason or "").strip()
    return text.splitlines()[0] if text else "no reason given"


class Timing(Protocol):
    """Where a driver reads its heartbeat settings (``Study``: see its attributes of these names)."""

    stale_after: float
    heartbeat_interval: float


def _best_first(record: TrialRecord) -> tuple[float, int]:
    """The order of ``Driver.top``: by score, best first, then by number."""
    return -(record.score if record.score is not None else -math.inf), record.number


class Driver:
    """This process's work on study ``name`` in ``storage``: see the module docstring.

    ``settings`` is how the study runs (searcher, scheduler, seed, budgets), stored with it when this driver
    starts its first trial.
    """

    def __init__(self, space: Space, mode: str, storage: Storage, name: str, searcher: Searcher,
                 scheduler: Scheduler | None, *, max_epochs: int | None, fidelity: EpochFidelity, keep: int | None,
                 seed: int | None, timing: Timing) -> None:
        self.timing = timing  # read at each use: a change on the Study (its class or the object) takes effect
        self.space, self.sign, self.storage = space, 1 if mode == "max" else -1, storage
        self.searcher, self.scheduler = searcher, scheduler
        self.budgets = scheduler if isinstance(scheduler, BudgetScheduler) else None
        self.rung = scheduler if isinstance(scheduler, RungScheduler) else None
        self.fidelity = fidelity
        self.max_epochs, self.keep = max_epochs, keep
        self.settings: dict[str, Any] = {"searcher": describe(searcher), "scheduler": describe(scheduler), "seed": seed,
                         "max_epochs": max_epochs, "fidelity": fidelity.name, "keep_checkpoints": keep}
        self.lock = threading.RLock()  # ask, tell and reports may come from several threads
        self.records = History(storage.open(name, space, mode))
        for r in self.records:
            r.sign, r.config = self.sign, space.validate(r.config)  # JSON gives tuples back as lists
        self.top: list[TrialRecord] = []  # the best completed trials, best first (``keep`` of them)
        for r in self.records:
            self._rank(r)
        self.checkpoints = Checkpoints(storage, name)
        self.live: dict[int, Trial] = {}  # this driver's RUNNING trials
        self._steps = {r.number: max(r.reports) for r in self.records if r.reports}  # each trial's highest step
        self.epochs: float = sum(self._steps.values())  # epochs reported, all trials (max_epochs_total)
        self.stopping = False  # study.stop() was called
        self.on_end: Callable[[TrialRecord], None] | None = None  # the optimize call's: told of each end
        self._heart: Heartbeat | None = None
        self._closed = False
        self._reaped_at = -math.inf
        self._settled = False  # settings written and paused trials checked, at the first trial this driver starts
        self._logged_traceback = False

    @property
    def stale_after(self) -> float:
        """Seconds without a heartbeat after which another driver's RUNNING trial counts as interrupted."""
        return checked_number("stale_after", self.timing.stale_after, strict=True)

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between this driver's heartbeats for its RUNNING trials (SQLite)."""
        return checked_number("heartbeat_interval", self.timing.heartbeat_interval, strict=True)

    def close(self) -> None:
        self._closed = True
        if self._heart is not None:
            self._heart.stop()
            self._heart = None
        self.storage.close()

    # --- the mirror ---------------------------------------------------------------------------------------------
    def _rank(self, record: TrialRecord) -> None:
        """Keep ``top`` (the best completed trials) up to date with ``record``, in O(keep)."""
        self.top = [r for r in self.top if r.number != record.number]
        if record.status is not Status.COMPLETED or record.score is None:
            return
        bisect.insort(self.top, record, key=_best_first)
        if self.keep is not None:
            del self.top[max(1, self.keep):]

    def sync(self, mine: TrialRecord | None = None) -> None:
        """Take in what other drivers of this study wrote since the last look (nothing to read with one driver).

        ``mine``: a trial this driver just created (numbered by the storage): it takes its place in the mirror,
        in number order with the others' new trials."""
        if self._closed:
            return
        records, reports = self.storage.changes()
        arrived = {r.number: r for r in records}
        if mine is not None:
            arrived[mine.number] = mine
        for number in sorted(arrived):
            record = arrived[number]
            if record is not mine:
                record.sign, record.config = self.sign, self.space.validate(record.config)
            if number == len(self.records):
                self.records.append(record)
            elif number > len(self.records):  # numbers are taken in a transaction: a gap is a broken file
                raise RuntimeError(f"{self.storage!r}: trial {number} arrived before trial {len(self.records)}")
            elif record is mine:
                self.records[number] = record
                self.records.touch(number)
            elif number not in self.live:  # this driver's running trials: its own copy is the truth
                kept = self.records[number]
                kept.status, kept.value, kept.reason, kept.finished = (record.status, record.value, record.reason,
                                                                       record.finished)
                kept.attrs = record.attrs
                self.records.touch(number)
            self._rank(self.records[number])
        for number, step, value in reports:
            if number not in self.live and number < len(self.records):
                self._count(number, step)
                self.records[number].reports[step] = value
                self.records.touch(number)

    def snapshot(self) -> list[TrialRecord]:
        """Every trial, other drivers' included, as of now."""
        with self.lock:
            self.sync()
            return list(self.records)

    def best(self) -> TrialRecord:
        """The best completed trial (``Study.best``)."""
        with self.lock:
            self.sync()
            if self.top:
                return self.top[0]
            failed = [r for r in self.records if r.status is Status.FAILED]
            why = f"; {len(failed)} failed, the first with: {headline(failed[0].reason)}" if failed else ""
            raise ValueError(f"no trial has completed yet{why}; run study.optimize(...) or tell a value first")

    def _count(self, number: int, step: int) -> None:
        """Trial ``number`` reported at ``step``: the epochs beyond its highest step so far are new work. O(1)."""
        top = self._steps.get(number, 0)
        if step > top:
            self.epochs += step - top
            self._steps[number] = step

    def fail_stale(self) -> list[int]:
        """Mark FAILED the RUNNING trials whose driver is gone (see ``Study.fail_stale_trials``)."""
        with self.lock:
            self._reaped_at = time.monotonic()
            self.sync()
            failed = self.storage.fail_stale(self.stale_after)
            for number, reason in failed.items():  # this driver's own write: no change to sync
                r = self.records[number]
                r.status, r.reason, r.finished = Status.FAILED, reason, time.time()
                self.records.touch(number)
                log.warning("trial %d failed: %s", number, reason)
            return list(failed)

    # --- starting trials ----------------------------------------------------------------------------------------
    def ask_new(self, k: int, prefetched: Callable[[], list[Config] | None] | None = None) -> list[Trial]:
        """Up to ``k`` new trials: enqueued configs, then the configs ``prefetched()`` gives (proposed while every
        worker was busy; taken only when the queue leaves room), then the searcher's."""
        with self.lock:
            if time.monotonic() - self._reaped_at > self.heartbeat_interval:
                self.fail_stale()
            self.sync()
            trials: list[Trial] = []
            while len(trials) < k and (config := self.storage.dequeue()) is not None:
                trials.append(self.start(self.space.validate(config), source="enqueued"))
            source = type(self.searcher).__name__
            if len(trials) < k and prefetched is not None:
                for config in prefetched() or []:
                    trials.append(self.start(self.space.validate(config), source=source))
            if len(trials) < k:
                for config in self.searcher.ask(self.space, self.records, k - len(trials))[: k - len(trials)]:
                    trials.append(self.start(self.space.validate(config), source=source))
            return trials

    def _settle_in(self) -> None:
        """Before this driver starts its first trial: refuse paused trials it cannot resume, store its settings."""
        paused = [r.number for r in self.records if r.status is Status.PAUSED]
        stored = self.storage.settings() or {}
        mine = self.settings
        if paused and (self.rung is None
                       or ("scheduler" in stored  # seeds aside: drivers of one study may each have their own
                           and reseeded(stored["scheduler"], None) != reseeded(mine["scheduler"], None))
                       or stored.get("max_epochs", self.max_epochs) != self.max_epochs):
            was = (stored.get("scheduler") or {}).get("class", "a rung scheduler")
            raise ValueError(
                f"trials {paused[:10]} are PAUSED at a rung of {was} (max_epochs={stored.get('max_epochs')}), but "
                f"this study runs scheduler={mine['scheduler'] and mine['scheduler']['class']}, max_epochs="
                f"{self.max_epochs}: re-open it with Study.load(path) (which restores how it was run) or with the "
                "same scheduler and max_epochs, so that they can be resumed or pruned")
        if stored != mine:
            self.storage.save_settings(mine)
        self._settled = True

    def start(self, config: Config, source: str, **attrs: Any) -> Trial:
        """Create a trial of ``config`` (numbered by the storage) and hand back its live handle."""
        with self.lock:
            if not self._settled:
                self._settle_in()
            record = TrialRecord(-1, config, attrs={"source": source, **attrs}, sign=self.sign)
            self.storage.create_trial(record)
            self.sync(mine=record)  # with the other drivers' trials numbered before (and after) this one
            if self.budgets is not None:  # e.g. Hyperband picks the bracket; a budget is the trial's max_epochs
                budget = self.budgets.on_start(record, self.records)
                if budget is not None:
                    record.attrs["max_epochs"] = budget
                self.storage.write(record)
            return self._run(record)

    def _run(self, record: TrialRecord) -> Trial:
        """The live handle of ``record``, which this driver now runs (its reports reach ``report``)."""
        trial = Trial(record.number, record.config, max_epochs=record.attrs.get("max_epochs", self.max_epochs),
                      checkpoint_dir=self.checkpoints.directory, reporter=self.report)
        trial.fidelity = self.fidelity.level(record)
        self.live[record.number] = trial
        if self._heart is None and isinstance(self.storage, SQLiteStorage):  # other drivers read it
            self._heart = Heartbeat(self.storage, self.heartbeat_interval)
        return trial

    def promote(self, k: float, *, drain: bool) -> list[Trial]:
        """Act on the scheduler's decisions about PAUSED trials: prune the losers, resume up to ``k`` winners.

        ``drain``: nothing else can run, so the scheduler decides every rung with the peers it has.
        """
        with self.lock:
            if not self._settled:  # refuse paused trials this scheduler did not pause, before it looks at them
                self._settle_in()
            if self.rung is None:
                return []
            self.sync()
            resumed: list[Trial] = []
            for number, decision in self.rung.promote(self.records, drain=drain).items():
                record = self.records[number]
                if record.status is not Status.PAUSED:
                    continue
                if decision is Decision.STOP:
                    self.end(record, Status.PRUNED, record.reports[max(record.reports)] if record.reports else None,
                             None, only_if=Status.PAUSED)  # unless another driver resumed it meanwhile
                elif decision is Decision.CONTINUE and len(resumed) < k:
                    if not self.storage.claim(number):  # another driver resumed it first
                        continue
                    record.status = Status.RUNNING
                    self.records.touch(number)
                    self.storage.write(record)
                    if self.fidelity.restarts:
                        self.checkpoints.forget(number)
                    trial = self._run(record)
                    trial.resumed, trial.last_step = True, max(record.reports, default=0)
                    resumed.append(trial)
            return resumed

    # --- reports and ends ---------------------------------------------------------------------------------------
    def report(self, number: int, step: int, value: float) -> Decision:
        """The reporter of this driver's trials (``trial.reporter``): record the report (storage first), ask the scheduler."""
        with self.lock:
            record = self.records[number]
            if record.status is not Status.RUNNING:
                raise ValueError(f"trial {number} is {record.status.value}: it takes no more reports (report "
                                 "before study.tell, and not after trial.report raised TrialPruned or TrialPaused)")
            trial = self.live[number]
            at, decide = self.fidelity.place(trial, record, step)
            self.storage.add_report(number, at, value)  # first: a report the storage refuses is not kept
            if self.fidelity.restarts:
                self.epochs += trial.fidelity  # an epoch on a fraction of the data costs that fraction of an epoch
            else:
                self._count(number, step)
            record.reports[at] = value
            self.records.touch(number)
            if self.scheduler is None or not decide:
                return Decision.CONTINUE
            self.sync()
            decision = self.scheduler.on_report(record, at, record.score_at(at), self.records)
            return self.fidelity.after(decision, record, at)

    def tell(self, number: Any, value: Any, status: Status | None, reason: str | None,
             user_attrs: dict[str, Any]) -> TrialRecord:
        """``Study.tell``: check what the user told about trial ``number``, then end it (see ``end``)."""
        with self.lock:
            if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < len(self.records):
                raise ValueError(f"tell: no trial number {number} in this study")
            record = self.records[number]
            if record.status.is_final:
                raise ValueError(f"tell: trial {number} is already {record.status.value}; each trial is told once")
            attrs = dict(record.attrs)
            if user_attrs:  # ask/tell: what it stored with set_attr
                attrs["user"] = {**record.user_attrs, **user_attrs}
            if status is None and value is None:
                raise ValueError("tell: give the trial's value, or a status such as Status.FAILED")
            status = Status.COMPLETED if status is None else status
            if not isinstance(status, Status) or status is Status.RUNNING:
                raise ValueError(f"tell: status must be COMPLETED, PRUNED, FAILED or PAUSED, got {status!r}")
            if status is Status.PAUSED and (record.status is not Status.RUNNING or self.rung is None):
                raise ValueError(f"tell: trial {number} cannot be PAUSED: it is {record.status.value}, and only "
                                 "a rung scheduler (sha, hyperband, asha) resumes paused trials")
            if value is not None:
                if isinstance(value, (str, bytes, bool)):
                    raise TypeError(f"tell: the value must be a number, got {type(value).__name__} {value!r}")
                value = float(value)
                why = unusable_value(value)
                if why is not None:
                    status, reason, value = Status.FAILED, reason or f"value was {value}: {why}", None
            if status is Status.PRUNED and value is None and record.reports:
                value = record.reports[max(record.reports)]
            if status is Status.COMPLETED and value is None:
                raise ValueError("tell: a COMPLETED trial needs a value")
            self.end(record, status, value, reason, attrs=attrs)
            return record

    def end(self, record: TrialRecord, status: Status, value: float | None, reason: str | None, *,
            attrs: dict[str, Any] | None = None, only_if: Status | None = None) -> bool:
        """Write the trial's new status to the storage, then (once it took it) to the mirror; ``only_if``: only
        while the stored status is still that one (another driver may have claimed a paused trial)."""
        with self.lock:
            ended = copy.copy(record)
            ended.status, ended.value, ended.reason = status, value, reason
            ended.finished = time.time() if status.is_final else record.finished
            ended.attrs = record.attrs if attrs is None else attrs
            if not self.storage.write(ended, only_if=only_if):
                self.sync()
                return False
            record.status, record.value, record.reason, record.finished = status, value, reason, ended.finished
            record.attrs = ended.attrs
            self.records.touch(record.number)
            self.live.pop(record.number, None)  # ended, or paused: any driver may resume it
            if status is Status.PAUSED:
                return True
            self._rank(record)
            if status is Status.FAILED:
                self._log_failure(record)
            self.drop_checkpoints()
            if self.on_end is not None:  # inside optimize: progress, and the fail_fast rule (may raise)
                self.on_end(record)
            return True

    def _log_failure(self, record: TrialRecord) -> None:
        """One line per failure; the first failure's traceback in full."""
        reason = record.reason or "no reason given"
        if not self._logged_traceback and "\n" in reason:
            self._logged_traceback = True
            log.warning("trial %d failed: %s", record.number, reason.rstrip())
        else:
            log.warning("trial %d failed: %s", record.number, headline(reason))

    def drop_checkpoints(self) -> None:
        """Delete the checkpoints that ``keep_checkpoints`` does not keep: those of ended trials other than the
        best completed ones (also the leftovers of a re-opened study, at its first ``optimize``)."""
        if self.keep is not None:
            n = len(self.records)
            self.checkpoints.drop({r.number for r in self.top[: self.keep]},
                                  lambda number: number < n and self.records[number].status.is_final)
