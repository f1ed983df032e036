"""The study: the user's handle on a hyperparameter search (ask/tell, ``optimize``), and the ``@tune`` decorator.

A ``Study`` checks what it is given and says what each call does; its ``Driver`` (torchhpo/driver.py) keeps the
trials and changes them, and ``optimize`` runs the loop of torchhpo/loop.py.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torchhpo.checks import integer
from torchhpo.driver import Driver
from torchhpo.executors import Executor, TrainFn, resolve_devices
from torchhpo.fidelity import make_fidelity
from torchhpo.loop import Callback, FailingTrials, run
from torchhpo.schedulers import Scheduler, make_scheduler
from torchhpo.searchers import Searcher, make_searcher
from torchhpo.settings import stored_study
from torchhpo.space import Config, Space
from torchhpo.storage import SQLiteStorage, Storage, make_storage
from torchhpo.trial import Status, Trial, TrialRecord

__all__ = ["FailingTrials", "SearchExhausted", "Study", "Tuned", "tune"]


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
        searcher: a ``Searcher`` or its name (``"random"`` by default, ``"grid"``, ``"sobol"``, ``"tpe"``, ``"gp"``).
        scheduler: a ``Scheduler`` that may stop trials early from their reports, its name (``"asha"``,
            ``"hyperband"``, ``"sha"``, ``"median"``, ``"patience"``), a list of them, or ``None`` (run each to the end).
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
                 scheduler: Scheduler | str | Sequence[Any] | None = None, storage: Storage | str | Path | None = None,
                 name: str = "default", seed: int | None = None, max_epochs: int | None = None,
                 fidelity: str = "epochs", keep_checkpoints: int | None = 1) -> None:
        if not isinstance(space, Space):
            raise TypeError(f"space must be a torchhpo Space, got {type(space).__name__}; wrap your dict: Space({{...}})")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        integer("max_epochs", max_epochs, none=True)
        integer("keep_checkpoints (None keeps all)", keep_checkpoints, low=0, none=True)
        self.space, self.mode, self.name, self.seed, self.max_epochs = space, mode, name, seed, max_epochs
        self.keep_checkpoints, self.fidelity = keep_checkpoints, fidelity
        self.sign = 1 if mode == "max" else -1  # a value times sign: larger is better
        self.searcher = make_searcher(searcher, seed=seed)
        self.scheduler = make_scheduler(scheduler, seed=seed, max_epochs=max_epochs)
        policy = make_fidelity(fidelity, self.scheduler)  # before the storage: a refused argument leaves no file
        self.storage = make_storage(storage)
        self._driver = Driver(space, mode, self.storage, name, self.searcher, self.scheduler, max_epochs=max_epochs,
                              fidelity=policy, keep=keep_checkpoints, seed=seed, timing=self)
        self.checkpoint_dir = self._driver.checkpoints.directory

    _FIXED = frozenset({"space", "mode", "searcher", "scheduler", "storage", "name", "seed", "max_epochs", "fidelity",
                        "keep_checkpoints", "sign"})

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._FIXED and name in self.__dict__:  # the driver took it at construction
            raise AttributeError(f"Study.{name} is fixed once the study is built; make another Study, or re-open this "
                                 f"one with Study.load(path, {name}=...) to go on with another {name}")
        super().__setattr__(name, value)

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
        space, mode, name, kwargs = stored_study(path, name, readonly, kwargs)
        return cls(space, mode=mode, storage=SQLiteStorage(path, readonly=readonly), name=name, **kwargs)

    def close(self) -> None:
        """Stop the heartbeat, leave the file complete on disk (safe to copy) and close it. The trials stay
        readable (``study.trials``, ``study.best``: as they were at the close); ``ask``/``tell`` no longer work."""
        self._driver.close()

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- records ----------------------------------------------------------------------------------------------
    @property
    def trials(self) -> list[TrialRecord]:
        """Every trial, in order of number (finished, pruned, failed, paused and running; other drivers' too)."""
        return self._driver.snapshot()

    @property
    def best(self) -> TrialRecord:
        """The completed trial with the best value.

        Raises:
            ValueError: no trial has completed yet (the message counts the failed ones and gives the first reason).
        """
        return self._driver.best()

    def to_dataframe(self) -> Any:
        """The trials as a pandas DataFrame: number, status, value, duration, reason, one column per parameter
        (``config.lr``; empty where a conditional parameter was inactive) and per user attribute (``attr.test_acc``,
        from ``trial.set_attr``)."""
        try:
            import pandas as pd
        except ImportError as e:
            raise ImportError("to_dataframe needs pandas: pip install pandas") from e
        return pd.DataFrame([{"number": r.number, "status": r.status.value, "value": r.value, "duration": r.duration,
                              "reason": r.reason, **{f"config.{k}": r.config.get(k) for k in self.space.names},
                              **{f"attr.{k}": v for k, v in r.user_attrs.items()}} for r in self.trials])

    def checkpoint(self, trial: TrialRecord | Trial | int) -> Any:
        """The state ``trial`` last passed to ``trial.save`` (tensors on the CPU), or ``None`` when it saved none
        or its checkpoint was dropped (see ``keep_checkpoints``)."""
        return self._driver.checkpoints.read(trial if isinstance(trial, int) else trial.number)

    def fail_stale_trials(self) -> list[int]:
        """Mark FAILED the RUNNING trials whose driver is gone: a process of this host that ended, or any driver
        whose heartbeat is ``stale_after`` seconds old. Called by ``ask`` and ``optimize``; returns the numbers."""
        return self._driver.fail_stale()

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
        k = integer("ask(n): n", 1 if n is None else n)
        with self._driver.lock:
            trials = self._driver.promote(k, drain=False)
            trials += self._driver.ask_new(k - len(trials)) if len(trials) < k else []
        if n is None:
            if not trials:
                raise SearchExhausted(f"{type(self.searcher).__name__} has no config left to propose")
            return trials[0]
        return trials

    def settle(self, n: int | None = None) -> list[Trial]:
        """What ``optimize`` does once no new trial may start: resume the PAUSED trials the scheduler promotes,
        and when it promotes none, decide every paused trial with the peers there are (the losers PRUNED, the
        winners resumed). Returns up to ``n`` resumed trials to run (all when ``None``); call it until it returns
        ``[]`` (docs/ask-tell.md has the loop).
        """
        integer("settle(n): n", n, none=True)
        k: float = math.inf if n is None else n
        with self._driver.lock:
            return self._driver.promote(k, drain=False) or self._driver.promote(k, drain=True)

    def tell(self, trial: Trial | int, value: float | None = None, *, status: Status | None = None,
             reason: str | None = None) -> TrialRecord:
        """Finish a trial with its value (COMPLETED), or with ``status=Status.FAILED``/``PRUNED``; or, after
        ``trial.report`` raised ``TrialPaused``, ``status=Status.PAUSED`` (``ask``/``settle`` resume it later).

        A NaN or infinite value fails the trial. A failure is logged (``logging.getLogger("torchhpo")``): one line
        with the reason, and the first failure's traceback in full. Returns the trial's record.
        """
        number = trial.number if isinstance(trial, Trial) else trial
        return self._driver.tell(number, value, status, reason, trial.user_attrs if isinstance(trial, Trial) else {})

    # --- the loop ---------------------------------------------------------------------------------------------
    def optimize(self, fn: TrainFn, n_trials: int | None = None, timeout: float | None = None, *,
                 executor: Executor | None = None, devices: str | list[str] | None = None, batch: bool = False,
                 retries: int = 0, timeout_per_trial: float | None = None, progress: bool = True,
                 fail_fast: int | None = 3, callbacks: Sequence[Callback] = (), max_epochs_total: int | None = None,
                 target: float | None = None, prefetch: str = "auto") -> Study:
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
            prefetch: where the next configs are proposed while trials train, so that a freed slot does not wait
                for the model. ``"auto"``: in a thread of the driver when trials run elsewhere (``Processes``,
                ``Ray``), not at all with ``Inline`` (every ask then sees every result, and seeded runs repeat);
                ``"thread"``: in a thread, with any executor (``Inline`` too); ``"process"``: in a process of its
                own, with a copy of the searcher (it must pickle; its state stays there): the model then holds
                neither the driver's interpreter lock nor a small model's training in ``Inline``; ``"off"``:
                asks in the driver only. Proposed ahead, a config misses the results that arrive meanwhile.

        Raises:
            FailingTrials: see ``fail_fast``.
        """
        run(self, self._driver, fn, n_trials, timeout, executor=executor, devices=devices, batch=batch, retries=retries,
            timeout_per_trial=timeout_per_trial, progress=progress, fail_fast=fail_fast, callbacks=callbacks,
            max_epochs_total=max_epochs_total, target=target, prefetch=prefetch)
        return self

    def stop(self) -> None:
        """Stop the ``optimize`` under way: no trial starts or resumes any more, running ones finish, and it
        returns normally. Safe from the training function, a callback or another thread."""
        self._driver.stopping = True

    def __repr__(self) -> str:
        return f"Study(name={self.name!r}, mode={self.mode!r}, trials={len(self._driver.records)})"


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

