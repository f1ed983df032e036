"""The study: ask/tell, the optimize loop that drives executors, and the ``@tune`` decorator.

The study is the one writer: only it calls the searcher and the scheduler and writes storage. It keeps an
in-memory mirror of every trial, so searchers and the per-epoch report hook never read the database.
"""

from __future__ import annotations

import bisect
import copy
import functools
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torchhpo.executors import Executor, TrainFn, resolve_devices
from torchhpo.history import History
from torchhpo.loop import Callback, FailingTrials, _Prefetch, headline, run
from torchhpo.schedulers import make_scheduler
from torchhpo.searchers import Searcher, make_searcher
from torchhpo.settings import describe, rebuild, reseeded
from torchhpo.space import Config, Space
from torchhpo.storage import Heartbeat, SQLiteStorage, Storage, make_storage
from torchhpo.trial import Decision, Status, Trial, TrialRecord, checkpoint_file, read_checkpoint

__all__ = ["FailingTrials", "SearchExhausted", "Study", "Tuned", "tune"]

log = logging.getLogger("torchhpo")


class SearchExhausted(RuntimeError):
    """The searcher has no config left to propose (a grid fully visited)."""


class Study:
    """A hyperparameter search: its space, its trials and how new ones are chosen and stopped.

    Several drivers may work on one study at once (threads sharing this object, or processes and machines
    sharing its SQLite file): trial numbers never collide, each driver's searcher sees the others' trials
    (RUNNING ones as pending) and its scheduler decides on the shared records. Opening or reading a study
    writes nothing; a driver fails only trials whose driver is gone (see ``fail_stale_trials``).

    Args:
        space: the search space.
        mode: ``"min"`` or ``"max"``: whether lower or higher values are better.
        searcher: a ``Searcher`` or its name (``"random"`` by default, ``"grid"``, ``"sobol"``, ``"gp"``).
        scheduler: a scheduler that may stop trials early from their reports, or ``None`` to run each to the end.
        storage: ``None`` (memory), a path to a SQLite file (``"runs/x.db"``) or a ``Storage``.
        name: the study's name inside the storage; a file may hold several studies.
        seed: seeds the searcher and scheduler when they are given by name.
        max_epochs: the default epoch budget of ``trial.epochs()``.
        fidelity: what rungs ration: ``"epochs"`` (default), or ``"data"``: each run trains ``max_epochs``
            epochs on the fraction ``trial.fidelity = r / R`` of the training data, where ``r`` is the trial's
            rung and ``R`` the scheduler's last; a promoted trial restarts on the larger fraction (see
            docs/pruning.md). Needs a rung scheduler (``"sha"``, ``"hyperband"``, ``"asha"``).
        keep_checkpoints: how many COMPLETED trials keep their checkpoint (``trial.save``), the best ones; the
            checkpoints of PRUNED and FAILED trials and of the completed ones beyond this count are deleted as
            trials end (paused and running trials always keep theirs). ``None`` keeps every checkpoint.
            ``study.checkpoint(study.best)`` reads the best trial's.

    A study holds a database connection and a heartbeat thread: ``close()`` it (or use ``with``) when done;
    ``optimize`` leaves the file complete on disk at its end (safe to copy).

    Example:
        >>> from torchhpo.space import Float, Space
        >>> study = Study(Space({"x": Float(-2.0, 2.0)}), mode="min", seed=0)
        >>> for _ in range(5):
        ...     trial = study.ask()
        ...     _ = study.tell(trial, (trial.config["x"] - 1.0) ** 2)
        >>> len(study.trials), study.best.value < 2.0
        (5, True)
    """

    heartbeat_interval = 10.0  # seconds between a driver's heartbeats for its RUNNING trials (SQLite)
    stale_after = 120.0  # a RUNNING trial whose driver has not beaten for this long counts as interrupted

    def __init__(self, space: Space, *, mode: str = "min", searcher: Searcher | str | None = None,
                 scheduler: Any = None, storage: Storage | str | Path | None = None, name: str = "default",
                 seed: int | None = None, max_epochs: int | None = None, fidelity: str = "epochs",
                 keep_checkpoints: int | None = 1) -> None:
        if not isinstance(space, Space):
            raise TypeError(f"space must be a torchhpo Space, got {type(space).__name__}; wrap your dict: Space({{...}})")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if max_epochs is not None and (isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1):
            raise ValueError(f"max_epochs must be a positive int, got {max_epochs!r}")
        if keep_checkpoints is not None and (isinstance(keep_checkpoints, bool) or not isinstance(keep_checkpoints, int)
                                             or keep_checkpoints < 0):
            raise ValueError(f"keep_checkpoints must be an int >= 0 or None (keep all), got {keep_checkpoints!r}")
        self.space, self.mode, self.name, self.seed, self.max_epochs = space, mode, name, seed, max_epochs
        self.keep_checkpoints = keep_checkpoints
        self.sign = 1 if mode == "max" else -1
        self.searcher = make_searcher(searcher, seed=seed)
        self.scheduler = make_scheduler(scheduler, seed=seed, max_epochs=max_epochs)
        if fidelity not in ("epochs", "data"):
            raise ValueError(f"fidelity must be 'epochs' or 'data', got {fidelity!r}")
        if fidelity == "data" and not callable(getattr(self.scheduler, "rungs", None)):
            raise ValueError("fidelity='data' needs a rung scheduler: scheduler='sha', 'hyperband' or 'asha' "
                             f"(got {type(self.scheduler).__name__})")
        self.fidelity = fidelity
        self._lock = threading.RLock()  # ask, tell and reports may come from several threads
        self.storage = make_storage(storage)
        self._records = History(self.storage.open(name, space, mode))
        for r in self._records:
            r.sign, r.config = self.sign, space.validate(r.config)  # JSON gives tuples back as lists
        self._top: list[TrialRecord] = []  # the best completed trials, best first (keep_checkpoints of them)
        for r in self._records:
            self._note(r)
        self._live: dict[int, Trial] = {}
        self._heart: Heartbeat | None = None
        self._steps = {r.number: max(r.reports) for r in self._records if r.reports}  # each trial's highest step
        self._epochs: float = sum(self._steps.values())  # epochs reported, all trials (max_epochs_total)
        self._stopping = False  # study.stop() was called
        self._closed = False
        self._reaped_at = -math.inf
        self._call: Any = None  # the optimize call under way (loop.Call): tell reports each end to it
        self._settled = False  # settings written and paused trials checked, at the first trial this object starts
        if isinstance(self.storage, SQLiteStorage):
            self.checkpoint_dir = self.storage.path.with_name(self.storage.path.name + ".ckpt") / name
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="torchhpo-")
            self.checkpoint_dir = Path(self._tmp.name) / "checkpoints"  # made by the first trial.save

    @classmethod
    def load(cls, path: str | Path, *, name: str | None = None, readonly: bool = False, **kwargs: Any) -> Study:
        """Re-open a study from its SQLite file, as it was run: its searcher, scheduler, ``max_epochs``,
        ``fidelity`` and ``keep_checkpoints`` come back from the file unless given here. Nothing is written:
        trials another driver is running stay RUNNING; a driver fails those whose driver is gone when it starts
        work (``ask``, ``optimize``, ``fail_stale_trials``).

        Args:
            path: the ``.db`` file.
            name: which study in the file (needed only when it holds several).
            readonly: never write (as ``torchhpo show`` reads); also the case for a file without write permission.
            **kwargs: ``searcher``, ``scheduler``, ``seed``, ``max_epochs``, ``fidelity``, ``keep_checkpoints``
                to go on with instead of the stored ones.
        """
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: no such study file; check the path or create it with Study(storage=...)")
        peek = SQLiteStorage(path, readonly=True)  # reads what the file holds; the study opens its own handle
        try:
            found = {n: (s, m) for n, s, m in peek.studies()}
            if name is None:
                if len(found) != 1:
                    raise ValueError(f"{path} holds studies {sorted(found)}; choose one with name=")
                name = next(iter(found))
            if name not in found:
                raise ValueError(f"{path} has no study '{name}'; it has {sorted(found)}")
            space, mode = found[name]
            peek.open(name, space, mode)
            stored = peek.settings() or {}
        finally:
            peek.close()
        for key in ("max_epochs", "fidelity", "keep_checkpoints"):
            if key in stored:
                kwargs.setdefault(key, stored[key])
        new_seed = "seed" in kwargs and kwargs["seed"] != stored.get("seed")
        seed = kwargs.setdefault("seed", stored.get("seed"))
        for key in ("searcher", "scheduler"):
            if key not in kwargs and stored.get(key) is not None and not readonly:  # looking needs neither
                description = reseeded(stored[key], seed) if new_seed else stored[key]  # this driver's own seed
                try:
                    kwargs[key] = rebuild(description)
                except (ValueError, ImportError, AttributeError, TypeError) as e:
                    log.warning("%s: the study's %s (%s) cannot be rebuilt (%s); pass %s= to Study.load",
                                path, key, stored[key]["class"], e, key)
        storage = SQLiteStorage(path, readonly=readonly)
        return cls(space, mode=mode, storage=storage, name=name, **kwargs)

    def close(self) -> None:
        """Stop the heartbeat, leave the file complete on disk (safe to copy) and close it. The trials stay
        readable (``study.trials``, ``study.best``: as they were at the close); ``ask``/``tell`` no longer work."""
        self._closed = True
        if self._heart is not None:
            self._heart.stop()
            self._heart = None
        self.storage.close()

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- records ----------------------------------------------------------------------------------------------
    @property
    def trials(self) -> list[TrialRecord]:
        """Every trial, in order of number (finished, pruned, failed, paused and running; other drivers' too)."""
        with self._lock:
            self._sync()
            return list(self._records)

    @property
    def best(self) -> TrialRecord:
        """The completed trial with the best value.

        Raises:
            ValueError: no trial has completed yet (the message counts the failed ones and gives the first reason).
        """
        with self._lock:
            self._sync()
            if self._top:
                return self._top[0]
            failed = [r for r in self._records if r.status is Status.FAILED]
            why = f"; {len(failed)} failed, the first with: {headline(failed[0].reason)}" if failed else ""
            raise ValueError(f"no trial has completed yet{why}; run study.optimize(...) or tell a value first")

    def to_dataframe(self) -> Any:
        """The trials as a pandas DataFrame: number, status, value, duration, reason, one column per parameter
        (``config.lr``) and per user attribute (``attr.test_acc``, from ``trial.set_attr``)."""
        try:
            import pandas as pd
        except ImportError as e:
            raise ImportError("to_dataframe needs pandas: pip install pandas") from e
        rows = [{"number": r.number, "status": r.status.value, "value": r.value, "duration": r.duration,
                 "reason": r.reason, **{f"config.{k}": v for k, v in r.config.items()},
                 **{f"attr.{k}": v for k, v in r.user_attrs.items()}} for r in self.trials]
        return pd.DataFrame(rows)

    def _note(self, record: TrialRecord) -> None:
        """Keep ``_top`` (the best completed trials) up to date with ``record``, in O(keep_checkpoints)."""
        if record.status is not Status.COMPLETED or record.score is None:
            if any(r.number == record.number for r in self._top):  # overwritten by another driver
                self._top = [r for r in self._top if r.number != record.number]
            return
        keep = max(1, self.keep_checkpoints or 0) if self.keep_checkpoints is not None else None
        self._top = [r for r in self._top if r.number != record.number]
        bisect.insort(self._top, record, key=lambda r: (-r.score, r.number))
        if keep is not None:
            del self._top[keep:]

    def _sync(self, mine: TrialRecord | None = None) -> None:
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
            if number == len(self._records):
                self._records.append(record)
            elif number > len(self._records):  # numbers are taken in a transaction: a gap is a broken file
                raise RuntimeError(f"{self.storage!r}: trial {number} arrived before trial {len(self._records)}")
            elif record is mine:
                self._records[number] = record
                self._records.touch(number)
            elif number not in self._live:  # this driver's running trials: its own copy is the truth
                kept = self._records[number]
                kept.status, kept.value, kept.reason, kept.finished = (record.status, record.value, record.reason,
                                                                       record.finished)
                kept.attrs = record.attrs
                self._records.touch(number)
            self._note(self._records[number])
        for number, step, value in reports:
            if number not in self._live and number < len(self._records):
                self._count(number, step)
                self._records[number].reports[step] = value
                self._records.touch(number)

    def fail_stale_trials(self) -> list[int]:
        """Mark FAILED the RUNNING trials whose driver is gone: a process of this host that ended, or any driver
        whose heartbeat is ``stale_after`` seconds old. Called by ``ask`` and ``optimize``; returns the numbers."""
        with self._lock:
            self._reaped_at = time.monotonic()
            self._sync()
            failed = self.storage.fail_stale(self.stale_after)
            for number, reason in failed.items():  # this driver's own write: no change to sync
                r = self._records[number]
                r.status, r.reason, r.finished = Status.FAILED, reason, time.time()
                self._records.touch(number)
                log.warning("trial %d failed: %s", number, reason)
            return list(failed)

    # --- ask and tell -----------------------------------------------------------------------------------------
    def enqueue(self, config: Config) -> None:
        """Queue a config to run before the searcher's (a known-good baseline, a warm start). It is checked now."""
        self.storage.enqueue(self.space.validate(config))

    def ask(self, n: int | None = None) -> Trial | list[Trial]:
        """Start trials: PAUSED trials the scheduler promotes first (``trial.resumed`` is True: same number and
        config, ``trial.load()`` gives its checkpoint, its reports go on from the step it reached), then enqueued
        configs, then the searcher's, with running trials as pending points.

        Args:
            n: how many; ``None`` gives one ``Trial``, an int gives a list of up to ``n`` (fewer once exhausted).

        Raises:
            SearchExhausted: ``n`` is ``None`` and nothing is left to start.
        """
        k = 1 if n is None else n
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"ask(n): n must be a positive int, got {n!r}")
        with self._lock:
            trials = self._promote(k, drain=False)
            trials += self._ask_new(k - len(trials)) if len(trials) < k else []
        if n is None:
            if not trials:
                raise SearchExhausted(f"{type(self.searcher).__name__} has no config left to propose")
            return trials[0]
        return trials

    def _ask_new(self, k: int, prefetch: _Prefetch | None = None) -> list[Trial]:
        """Up to ``k`` new trials: enqueued configs, then a config ``prefetch`` computed, then the searcher's."""
        with self._lock:
            if time.monotonic() - self._reaped_at > self.heartbeat_interval:
                self.fail_stale_trials()
            self._sync()
            trials = []
            while len(trials) < k and (config := self.storage.dequeue()) is not None:
                trials.append(self._start(self.space.validate(config), source="enqueued"))
            if len(trials) < k and prefetch is not None:  # proposed while every worker was busy
                for config in prefetch.take() or []:
                    trials.append(self._start(self.space.validate(config), source=type(self.searcher).__name__))
            if len(trials) < k:
                for config in self.searcher.ask(self.space, self._records, k - len(trials))[: k - len(trials)]:
                    trials.append(self._start(self.space.validate(config), source=type(self.searcher).__name__))
            return trials

    def settle(self, n: int | None = None) -> list[Trial]:
        """What ``optimize`` does once no new trial may start: resume the PAUSED trials the scheduler promotes,
        and when it promotes none, decide every paused trial with the peers there are (the losers PRUNED, the
        winners resumed). Returns up to ``n`` resumed trials to run (all when ``None``); call it until it returns
        ``[]``.

        Example:
            >>> from torchhpo.space import Float, Space
            >>> from torchhpo.schedulers import SuccessiveHalving
            >>> study = Study(Space({"x": Float(0.0, 1.0)}), scheduler=SuccessiveHalving(1, 3), seed=0)
            >>> study.settle()
            []
        """
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"settle(n): n must be a positive int or None, got {n!r}")
        k = math.inf if n is None else n
        with self._lock:
            return self._promote(k, drain=False) or self._promote(k, drain=True)

    def _settle_in(self) -> None:
        """Before this object starts its first trial: refuse paused trials it cannot resume, store its settings."""
        paused = [r.number for r in self._records if r.status is Status.PAUSED]
        stored = self.storage.settings() or {}
        mine = self._settings()
        if paused and (not callable(getattr(self.scheduler, "promote", None))
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

    def _settings(self) -> dict[str, Any]:
        return {"searcher": describe(self.searcher), "scheduler": describe(self.scheduler), "seed": self.seed,
                "max_epochs": self.max_epochs, "fidelity": self.fidelity, "keep_checkpoints": self.keep_checkpoints}

    def _start(self, config: Config, source: str, **attrs: Any) -> Trial:
        if not self._settled:
            self._settle_in()
        record = TrialRecord(-1, config, attrs={"source": source, **attrs}, sign=self.sign)
        self.storage.create_trial(record)
        self._sync(mine=record)  # with the other drivers' trials numbered before (and after) this one
        if callable(getattr(self.scheduler, "on_start", None)):  # e.g. Hyperband picks the bracket
            budget = self.scheduler.on_start(record, self._records)
            if budget is not None:
                record.attrs["max_epochs"] = budget
            self.storage.write(record)
        trial = Trial(record.number, config, max_epochs=record.attrs.get("max_epochs") or self.max_epochs,
                      checkpoint_dir=self.checkpoint_dir, reporter=self._report)
        if self.fidelity == "data":
            trial.fidelity = self._data_level(record)
        self._live[record.number] = trial
        self._beating()
        return trial

    def _beating(self) -> None:
        """This driver holds a RUNNING trial: make sure its heartbeat runs (other drivers read it)."""
        if self._heart is None and isinstance(self.storage, SQLiteStorage):
            self._heart = Heartbeat(self.storage, self.heartbeat_interval)

    def _data_level(self, record: TrialRecord) -> float:
        """With data fidelity: the fraction of the data for the trial's next run, ``r / R`` for its next rung."""
        rungs = self.scheduler.rungs(record)
        done = max(record.reports, default=0)
        return next(r for r in rungs if r > done or r == rungs[-1]) / rungs[-1]

    def _promote(self, k: float, *, drain: bool) -> list[Trial]:
        """Act on the scheduler's decisions about PAUSED trials: prune the losers, resume up to ``k`` winners.

        ``drain``: nothing else can run, so the scheduler decides every rung with the peers it has.
        """
        if not self._settled:  # refuse paused trials this scheduler did not pause, before it looks at them
            self._settle_in()
        if not callable(getattr(self.scheduler, "promote", None)):
            return []
        with self._lock:
            self._sync()
            resumed = []
            for number, decision in self.scheduler.promote(self._records, drain=drain).items():
                record = self._records[number]
                if record.status is not Status.PAUSED:
                    continue
                if decision is Decision.STOP:
                    self._end(record, Status.PRUNED, record.reports[max(record.reports)] if record.reports else None,
                              None, only_if=Status.PAUSED)  # unless another driver resumed it meanwhile
                elif decision is Decision.CONTINUE and len(resumed) < k:
                    if not self.storage.claim(number):  # another driver resumed it first
                        continue
                    record.status = Status.RUNNING
                    self._records.touch(number)
                    self.storage.write(record)
                    self._beating()
                    trial = Trial(number, record.config, max_epochs=record.attrs.get("max_epochs", self.max_epochs),
                                  checkpoint_dir=self.checkpoint_dir, reporter=self._report)
                    trial.resumed, trial.last_step = True, max(record.reports, default=0)
                    if self.fidelity == "data":  # the next rung: train again, from scratch, on more data
                        trial.fidelity = self._data_level(record)
                        checkpoint_file(self.checkpoint_dir, number).unlink(missing_ok=True)
                    self._live[number] = trial
                    resumed.append(trial)
            return resumed

    def _report(self, number: int, step: int, value: float) -> Decision:
        """The per-epoch hook, in the driver: record the report, then ask the scheduler."""
        with self._lock:
            record = self._records[number]
            if record.status is not Status.RUNNING:
                raise ValueError(f"trial {number} is {record.status.value}: it takes no more reports (report "
                                 "before study.tell, and not after trial.report raised TrialPruned or TrialPaused)")
            if self.fidelity == "data":
                return self._report_data(record, step, value)
            self.storage.add_report(number, step, value)  # first: a report the storage refuses is not kept
            self._count(number, step)
            record.reports[step] = value
            self._records.touch(number)
            if self.scheduler is None:
                return Decision.CONTINUE
            self._sync()
            return self.scheduler.on_report(record, step, self.sign * value, self._records)

    def _count(self, number: int, step: int) -> None:
        """Trial ``number`` reported at ``step``: the epochs beyond its highest step so far are new work. O(1)."""
        top = self._steps.get(number, 0)
        if step > top:
            self._epochs += step - top
            self._steps[number] = step

    def _report_data(self, record: TrialRecord, step: int, value: float) -> Decision:
        """Data fidelity: a run's reports count at its rung ``r`` (the last one stands); the scheduler decides
        when the run ends, and a promotion pauses the trial so that the driver restarts it on more data."""
        trial = self._live[record.number]
        rungs = self.scheduler.rungs(record)
        rung = round(trial.fidelity * rungs[-1])
        self.storage.add_report(record.number, rung, value)
        self._epochs += trial.fidelity  # an epoch on a fraction of the data costs that fraction of an epoch
        record.reports[rung] = value
        self._records.touch(record.number)
        if trial.max_epochs is not None and step < trial.max_epochs:
            return Decision.CONTINUE
        self._sync()
        decision = self.scheduler.on_report(record, rung, self.sign * value, self._records)
        return Decision.PAUSE if decision is Decision.CONTINUE and rung < rungs[-1] else decision

    def tell(self, trial: Trial | int, value: float | None = None, *, status: Status | None = None,
             reason: str | None = None) -> TrialRecord:
        """Finish a trial with its value (COMPLETED), or with ``status=Status.FAILED``/``PRUNED``; or, after
        ``trial.report`` raised ``TrialPaused``, ``status=Status.PAUSED`` (``ask``/``settle`` resume it later).

        A NaN or infinite value fails the trial. A failure is logged (``logging.getLogger("torchhpo")``): one line
        with the reason, and the first failure's traceback in full. Returns the trial's record.
        """
        number = trial.number if isinstance(trial, Trial) else trial
        with self._lock:
            if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < len(self._records):
                raise ValueError(f"tell: no trial number {number} in this study")
            record = self._records[number]
            if record.status.finished:
                raise ValueError(f"tell: trial {number} is already {record.status.value}; each trial is told once")
            attrs = dict(record.attrs)
            if isinstance(trial, Trial) and trial.user_attrs:  # ask/tell: what it stored with set_attr
                attrs["user"] = {**record.user_attrs, **trial.user_attrs}
            if status is None:
                if value is None:
                    raise ValueError("tell: give the trial's value, or a status such as Status.FAILED")
                status = Status.COMPLETED
            if not isinstance(status, Status) or status is Status.RUNNING:
                raise ValueError(f"tell: status must be COMPLETED, PRUNED, FAILED or PAUSED, got {status!r}")
            if status is Status.PAUSED and (record.status is not Status.RUNNING
                                            or not callable(getattr(self.scheduler, "promote", None))):
                raise ValueError(f"tell: trial {number} cannot be PAUSED: it is {record.status.value}, and only "
                                 "a rung scheduler (sha, hyperband, asha) resumes paused trials")
            if value is not None:
                if isinstance(value, (str, bytes, bool)):
                    raise TypeError(f"tell: the value must be a number, got {type(value).__name__} {value!r}")
                value = float(value)
                if not math.isfinite(value):
                    status, reason, value = Status.FAILED, reason or f"value was {value}", None
            if status is Status.PRUNED and value is None and record.reports:
                value = record.reports[max(record.reports)]
            if status is Status.COMPLETED and value is None:
                raise ValueError("tell: a COMPLETED trial needs a value")
            self._end(record, status, value, reason, attrs=attrs)
            return record

    def _end(self, record: TrialRecord, status: Status, value: float | None, reason: str | None, *,
             attrs: dict[str, Any] | None = None, only_if: Status | None = None) -> bool:
        """Write the trial's new status to the storage, then (once it took it) to the mirror; ``only_if``: only
        while the stored status is still that one (another driver may have claimed a paused trial)."""
        ended = copy.copy(record)
        ended.status, ended.value, ended.reason = status, value, reason
        ended.finished = time.time() if status.finished else record.finished
        ended.attrs = record.attrs if attrs is None else attrs
        if not self.storage.write(ended, only_if=only_if):
            self._sync()
            return False
        record.status, record.value, record.reason, record.finished = status, value, reason, ended.finished
        record.attrs = ended.attrs
        self._records.touch(record.number)
        self._live.pop(record.number, None)  # ended, or paused: any driver may resume it
        if status is Status.PAUSED:
            return True
        self._note(record)
        if status is Status.FAILED:
            self._log_failure(record)
        self._drop_checkpoints()
        if self._call is not None:  # inside optimize: progress, and the fail_fast rule (may raise)
            self._call.ended(record)
        return True

    def _log_failure(self, record: TrialRecord) -> None:
        first = not getattr(self, "_logged_traceback", False)
        reason = record.reason or "no reason given"
        if first and "\n" in reason:
            self._logged_traceback = True
            log.warning("trial %d failed: %s", record.number, reason.rstrip())
        else:
            log.warning("trial %d failed: %s", record.number, headline(reason))

    def checkpoint(self, trial: TrialRecord | Trial | int) -> Any:
        """The state ``trial`` last passed to ``trial.save`` (tensors on the CPU), or ``None`` when it saved none
        or its checkpoint was dropped (see ``keep_checkpoints``)."""
        number = trial if isinstance(trial, int) else trial.number
        saved = read_checkpoint(checkpoint_file(self.checkpoint_dir, number))
        return None if saved is None else saved["state"]

    def _drop_checkpoints(self) -> None:
        """Delete the checkpoints that ``keep_checkpoints`` does not keep: those of ended trials other than the
        best completed ones (also the leftovers of a re-opened study, at its first ``optimize``)."""
        if self.keep_checkpoints is None or not os.path.isdir(self.checkpoint_dir):  # no trial has saved yet
            return
        stems = (n.removesuffix(".pt").removeprefix("trial-") for n in os.listdir(self.checkpoint_dir))
        files = {int(k): checkpoint_file(self.checkpoint_dir, int(k)) for k in stems if k.isdigit()}
        keep = {r.number for r in self._top[: self.keep_checkpoints]}
        for number, path in files.items():
            if number < len(self._records) and self._records[number].status.finished and number not in keep:
                path.unlink(missing_ok=True)

    # --- the loop ---------------------------------------------------------------------------------------------
    def optimize(self, fn: TrainFn, n_trials: int | None = None, timeout: float | None = None, *,
                 executor: Executor | None = None, devices: str | list[str] | None = None, batch: bool = False,
                 retries: int = 0, timeout_per_trial: float | None = None, progress: bool = True,
                 fail_fast: int | None = 3, callbacks: Sequence[Callback] = (), max_epochs_total: int | None = None,
                 target: float | None = None) -> Study:
        """Run trials of ``fn(config, trial)`` until ``n_trials`` have started, ``timeout`` seconds pass,
        ``max_epochs_total`` epochs have been reported, a trial reaches ``target``, ``study.stop()`` is called, or
        the searcher is exhausted. Failed trials are recorded and the study goes on. PAUSED trials that the
        scheduler promotes resume (same number, same record, from their checkpoint) before new configs start;
        once no new trial may start, the scheduler settles every paused trial with the peers it has. When a limit
        ends the call early, running trials finish and paused ones stay PAUSED (the next call resumes them).
        Ctrl-C stops it, marking the running trials FAILED, stopping the workers, and re-raises.

        Args:
            fn: the training function; returns the value to optimize (or reports it).
            n_trials: how many new trials to start in this call (retries and resumed trials come on top).
            timeout: stop starting trials after this many seconds.
            executor: where trials run (``Inline`` by default; ``Processes``, ``Ray``).
            devices: shortcut for the executor: several devices (``["cuda:0", "cuda:1"]``, ``["cpu"] * 2``) run
                ``Processes`` workers, one each; ``"auto"``: every visible GPU, else the CPU.
            batch: wait until every slot is free, then ask one batch of ``slots`` configs (synchronous batch
                BO); by default a config is asked whenever a slot frees, running trials as pending points.
            retries: run a FAILED trial's config again, up to this many times (new trials with
                ``attrs["retry_of"]``).
            timeout_per_trial: fail a trial ("timed out after N s") and kill its worker when it runs longer;
                needs worker processes (``Processes`` or ``Ray``; built for you when ``executor`` is not given).
            progress: show a progress bar with the best value so far and the failed and pruned counts.
            fail_fast: when the first ``fail_fast`` trials of this call all fail with the same error, stop and
                raise it (``FailingTrials``): a bug in the training function should not silently burn the
                budget. ``None`` keeps going whatever fails.
            callbacks: functions ``callback(study, record)`` called in the driver after each trial ends
                (completed, pruned or failed); one may call ``study.stop()``.
            max_epochs_total: an epoch budget: no trial starts or resumes once the study's trials have reported
                this many epochs in all (each trial counts the highest step it reported).
            target: stop once a completed trial's value is this good (``<=`` when minimizing, ``>=`` maximizing).

        Raises:
            FailingTrials: see ``fail_fast``.
        """
        run(self, fn, n_trials, timeout, executor=executor, devices=devices, batch=batch, retries=retries,
            timeout_per_trial=timeout_per_trial, progress=progress, fail_fast=fail_fast, callbacks=callbacks,
            max_epochs_total=max_epochs_total, target=target)
        return self

    def stop(self) -> None:
        """Stop the ``optimize`` under way: no trial starts or resumes any more, running ones finish, and it
        returns normally. Safe from the training function, a callback or another thread."""
        self._stopping = True

    def __repr__(self) -> str:
        return f"Study(name={self.name!r}, mode={self.mode!r}, trials={len(self._records)})"


class Tuned:
    """A training function decorated with ``@tune``: still callable with a config, and ``optimize``-able."""

    def __init__(self, fn: TrainFn, space: Space, mode: str, max_epochs: int | None, fidelity: str = "epochs") -> None:
        functools.update_wrapper(self, fn)
        self.fn, self.space, self.mode, self.max_epochs, self.fidelity = fn, space, mode, max_epochs, fidelity

    def __call__(self, config: Config, trial: Trial | None = None) -> Any:
        """Run once with ``config``, outside any study (on the first GPU if any), unless a trial is given."""
        if trial is None:
            config = self.space.validate(config)
            trial = Trial(-1, config, device=resolve_devices("auto")[0], max_epochs=self.max_epochs)
        return self.fn(config, trial)

    def study(self, *, searcher: Searcher | str | None = None, scheduler: Any = None,
              storage: Storage | str | Path | None = None, name: str | None = None,
              seed: int | None = None, keep_checkpoints: int | None = 1) -> Study:
        """A ``Study`` over this function's space and mode (named after the function)."""
        return Study(self.space, mode=self.mode, searcher=searcher, scheduler=scheduler, storage=storage,
                     name=name or self.fn.__name__, seed=seed, max_epochs=self.max_epochs, fidelity=self.fidelity,
                     keep_checkpoints=keep_checkpoints)

    def optimize(self, n_trials: int | None = None, timeout: float | None = None, *, searcher: Any = None,
                 scheduler: Any = None, storage: Storage | str | Path | None = None, seed: int | None = None,
                 keep_checkpoints: int | None = 1, **run: Any) -> Study:
        """Create (or resume, from ``storage``) the study and run it; ``run`` goes to ``Study.optimize``
        (``executor``, ``devices``, ``progress``)."""
        study = self.study(searcher=searcher, scheduler=scheduler, storage=storage, seed=seed,
                           keep_checkpoints=keep_checkpoints)
        return study.optimize(self.fn, n_trials, timeout, **run)


def tune(space: Space, *, mode: str = "min", max_epochs: int | None = None,
         fidelity: str = "epochs") -> Callable[[TrainFn], Tuned]:
    """Decorate ``train(config, trial)`` to tune it (``fidelity``: ``"epochs"`` or ``"data"``, as for ``Study``).

    Example:
        >>> from torchhpo.space import Float, Space
        >>> @tune(Space({"x": Float(-1.0, 1.0)}), mode="min")
        ... def f(config, trial):
        ...     return config["x"] ** 2
        >>> f({"x": 0.5})
        0.25
        >>> f.optimize(n_trials=4, seed=0, progress=False).best.value >= 0.0
        True
    """
    if not isinstance(space, Space):
        raise TypeError(f"tune: space must be a torchhpo Space, got {type(space).__name__}")
    if mode not in ("min", "max"):
        raise ValueError(f"tune: mode must be 'min' or 'max', got {mode!r}")

    def wrap(fn: TrainFn) -> Tuned:
        return Tuned(fn, space, mode, max_epochs, fidelity)

    return wrap

