"""Tabulated learning curves replayed with a simulated clock: compare schedulers x searchers x seeds in seconds.

``Curves`` is a table of configs and their per-epoch metrics (shipped, made by ``benchmarks/make_curves.py``:
``Curves.load("digits_cnn")``, the default, 1,000 Sobol configs of the digits CNN x 27 epochs, and
``Curves.load("digits_mlp")``, 1,000 configs of the digits MLP x 27 epochs, and ``Curves.load("signals_cnn")``, 400
configs of a 1-D CNN on generated signals x 81 epochs). ``Simulated`` follows the Executor
protocol: instead of training, it replays a trial's row, advancing a virtual clock by the recorded seconds per
epoch, with ``slots`` trials in flight at once (Syne Tune's simulator backend). ``Tabulated`` wraps a searcher so
that it proposes table rows (the nearest unused one), so any searcher runs on the table.

Example:
    >>> import torchhpo as th
    >>> curves = Curves.load()
    >>> study = th.Study(curves.space, mode="min", searcher=Tabulated(curves, th.RandomSearch(seed=0)),
    ...                  scheduler=th.Hyperband(1, 27), max_epochs=27)
    >>> sim = Simulated(curves, slots=4)
    >>> _ = study.optimize(None, n_trials=40, executor=sim, progress=False)
    >>> sim.epochs < 40 * 27
    True
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchhpo.checks import integer
from torchhpo.executors.base import Outcome, Refusal, TrainFn, answer_report
from torchhpo.observations import config_key
from torchhpo.problems import TASKS
from torchhpo.searchers import Searcher
from torchhpo.space import Config, Space
from torchhpo.trial import Decision, Reporter, Status, Trial, TrialRecord, unusable_value

__all__ = ["METRICS", "SHIPPED", "Curves", "Event", "Simulated", "Tabulated"]

METRICS = ("val_loss", "val_acc", "test_acc", "seconds")
SHIPPED = {name: Path(__file__).parent / "data" / f"{name}_curves.npz" for name in TASKS}


@dataclass
class Curves:
    """A table of learning curves: ``configs[i]`` has ``val_loss[i, e]`` etc. after epoch ``e + 1``.

    Arrays are ``n x E`` float32: ``val_loss``, ``val_acc``, ``test_acc``, ``seconds`` (training time of the epoch).
    """

    space: Space
    configs: list[Config]
    val_loss: np.ndarray
    val_acc: np.ndarray
    test_acc: np.ndarray
    seconds: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rows = {config_key(c): i for i, c in enumerate(self.configs)}

    @property
    def epochs(self) -> int:
        return self.val_loss.shape[1]

    def row(self, config: Config) -> int:
        """The row of ``config``; a config outside the table is a ``KeyError`` naming the fix."""
        try:
            return self._rows[config_key(config)]
        except KeyError:
            raise KeyError(f"config {config} is not in the table; propose rows with Tabulated(curves, searcher)"
                           ) from None

    @classmethod
    def load(cls, path: str | Path = "digits_cnn") -> Curves:
        """Read a table saved by ``save``: a file, or the name of a shipped table (``"digits_cnn"``,
        ``"digits_mlp"``, ``"signals_cnn"``)."""
        if str(path) in SHIPPED:
            path = SHIPPED[str(path)]
        elif not Path(path).is_file():
            raise FileNotFoundError(f"Curves.load: {path} is neither a file nor a shipped table ({sorted(SHIPPED)})")
        z = np.load(path, allow_pickle=False)
        meta = json.loads(str(z["meta"]))
        space = Space.from_dict(meta["space"]) if "space" in meta else TASKS[meta.get("task", "digits_cnn")].space()
        return cls(space, json.loads(str(z["configs"])), z["val_loss"], z["val_acc"], z["test_acc"], z["seconds"],
                   meta=meta)

    def save(self, path: str | Path) -> None:
        """Write the table as a compressed ``.npz`` (configs and metadata as JSON)."""
        meta = {**self.meta, "space": self.space.to_dict()}
        np.savez_compressed(path, configs=np.array(json.dumps(self.configs)), meta=np.array(json.dumps(meta)),
                            **{m: getattr(self, m).astype(np.float32) for m in METRICS})


@dataclass(frozen=True)
class Event:
    """One simulated report: when (virtual seconds), after how many epochs in all, which trial, step and value."""

    clock: float
    epochs: int
    number: int
    step: int
    value: float


@dataclass
class _Replay:
    """A trial the simulated clock runs: its row of the table, the epoch it trains next (from 0) and when that
    epoch ends, and when it times out."""

    trial: Trial
    reporter: Reporter | None  # the trial's reporter: it answers the trial's reports
    row: int
    epoch: int
    deadline: float
    timeout: float | None
    end: float = math.inf


class Simulated:
    """An executor that replays ``curves`` instead of training, on a simulated clock.

    Args:
        curves: the table; each submitted trial's config must be one of its rows.
        slots: trials in flight at once (simulated workers).
        metric: the column reported (``"val_loss"`` or ``"val_acc"``; the study's mode must match).
        checkpoints: a resumed trial goes on after its last epoch (as with ``trial.save``); ``False`` restarts it
            from epoch 0 and the epochs are counted again.

    After a run, ``clock`` is the simulated wall time, ``epochs`` the epochs trained in all, ``events`` every report.
    A NaN in the table is a run that diverged: its epoch is trained (clock and ``epochs`` advance) but, as with
    ``trial.report``, nothing is reported and the trial FAILS. A ``timeout`` (``timeout_per_trial``) counts simulated
    seconds: a trial still training then FAILS, and its unfinished epoch is not counted.
    """

    concurrent = False  # trials advance inside wait, on virtual time: nothing runs while the driver asks

    def __init__(self, curves: Curves, slots: int = 1, *, metric: str = "val_loss", checkpoints: bool = True) -> None:
        if metric not in ("val_loss", "val_acc"):
            raise ValueError(f"Simulated: metric={metric!r} must be 'val_loss' or 'val_acc'")
        integer("Simulated: slots", slots)
        self.curves, self.slots, self.metric, self.checkpoints = curves, slots, metric, checkpoints
        self.clock, self.epochs = 0.0, 0
        self.events: list[Event] = []
        self._heap: list[tuple[float, int]] = []
        self._running: dict[int, _Replay] = {}
        self._saved: dict[int, int] = {}

    def submit(self, fn: TrainFn, trial: Trial, *, timeout: float | None = None) -> None:
        """Start replaying ``trial``'s row (``fn`` is not called: the table stands for it); its reports go to
        ``trial.reporter``. ``timeout``: simulated seconds after which the trial fails, as a worker's would."""
        row = self.curves.row(trial.config)
        epoch = self._saved.get(trial.number, 0) if self.checkpoints else 0
        deadline = math.inf if timeout is None else self.clock + timeout
        self._running[trial.number] = _Replay(trial, trial.reporter, row, epoch, deadline, timeout)
        self._next_epoch(trial.number)

    def _next_epoch(self, number: int) -> None:
        """Schedule the end of trial ``number``'s next epoch, or its deadline when that comes first."""
        replay = self._running[number]
        replay.end = self.clock + float(self.curves.seconds[replay.row, replay.epoch])
        heapq.heappush(self._heap, (min(replay.end, replay.deadline), number))

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        """Advance the clock epoch by epoch until a trial ends; return it."""
        while self._heap:
            self.clock, number = heapq.heappop(self._heap)
            replay = self._running[number]
            step = replay.epoch + 1
            if self.clock < replay.end:  # the deadline came first
                del self._running[number]
                return [Outcome(number, Status.FAILED, reason=f"timed out after {replay.timeout:g} s")]
            value = float(getattr(self.curves, self.metric)[replay.row, replay.epoch])
            self.epochs += 1
            why = unusable_value(value)
            if why is not None:
                del self._running[number]
                return [Outcome(number, Status.FAILED, reason=f"trial {number} reported {value} at step {step}: {why} "
                                                               "(tabulated)")]
            self.events.append(Event(self.clock, self.epochs, number, step, value))
            answer = answer_report(replay.reporter, number, step, value)
            if isinstance(answer, Refusal):  # the driver could not handle the report, as on a real executor
                del self._running[number]
                return [Outcome(number, Status.FAILED, reason=answer.reason)]
            self._saved[number] = step
            stop = min(replay.trial.max_epochs or self.curves.epochs, self.curves.epochs)
            status = {Decision.STOP: Status.PRUNED, Decision.PAUSE: Status.PAUSED,
                      Decision.COMPLETE: Status.COMPLETED}.get(answer)
            if status is None and step >= stop:
                status = Status.COMPLETED
            if status is not None:
                del self._running[number]
                return [Outcome(number, status, value)]
            replay.epoch = step
            self._next_epoch(number)
        return []

    def close(self) -> None:
        self._heap, self._running = [], {}


class Tabulated:
    """Make any searcher propose rows of a table: each proposal snaps to the nearest unused row (unit cube).

    With ``searcher=None`` the rows come in table order (a replay). Used rows are those of ``trials``, so the
    wrapper is as stateless as the searcher it wraps.
    """

    def __init__(self, curves: Curves, searcher: Searcher | None = None) -> None:
        self.curves, self.searcher = curves, searcher
        self._X = curves.space.encode(curves.configs, dtype=torch.float64)  # n x d

    def snap(self, config: Config, used: set[int]) -> int | None:
        """The row nearest to ``config`` in the unit cube among rows not in ``used`` (``None`` when all are)."""
        free = [i for i in range(len(self.curves.configs)) if i not in used]
        if not free:
            return None
        x = self.curves.space.encode([config], dtype=torch.float64)  # 1 x d
        return free[int(torch.cdist(x, self._X[free]).argmin())]

    def ask(self, space: Space, trials: Sequence[TrialRecord], n: int = 1) -> list[Config]:
        used = {self.curves.row(t.config) for t in trials}
        if self.searcher is None:
            return [c for i, c in enumerate(self.curves.configs) if i not in used][:n]
        out: list[Config] = []
        for config in self.searcher.ask(space, trials, n):
            i = self.snap(config, used)
            if i is None:
                break
            used.add(i)
            out.append(self.curves.configs[i])
        return out
