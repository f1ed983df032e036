"""The scheduler contract and what the built-in schedulers share: rung arithmetic and the index of the peers.

The contract has three levels, ``Protocol``s the study checks with ``isinstance``:

- ``Scheduler``: ``on_report`` answers each report with a ``Decision`` (CONTINUE, STOP, PAUSE or COMPLETE), from
  the peers' records only, so that a re-opened study decides as before. ``MedianStopping`` and ``Patience``.
- ``BudgetScheduler``: also ``on_start``, called when the study creates a trial; it may note what it needs in
  the record's attrs and return the trial's epoch budget (``trial.max_epochs``).
- ``RungScheduler``: a ``BudgetScheduler`` that rations epochs in rungs and pauses trials at them: ``rungs``
  (the steps where a trial is decided) and ``promote`` (for the PAUSED trials: CONTINUE resumes one from its
  checkpoint, STOP prunes it). ``SuccessiveHalving``, ``Hyperband`` and ``ASHA``, which choose a trial's bracket
  in ``on_start``.

The built-in schedulers keep an index of the peers (each rung's reports in rank order, the PAUSED trials, the
cohorts), so a decision is a binary search instead of a scan of every trial. The index is a cache: when ``peers``
is the study's ``History`` seen last time it is updated from the records changed since (``changed_since``),
otherwise (a plain list, another study, a study re-opened from its file) it is rebuilt from the records, which
stay the one truth: the same records give the same decisions.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

from torchhpo.checks import integer
from torchhpo.history import History
from torchhpo.settings import Described
from torchhpo.trial import Decision, Status, TrialRecord

__all__ = ["Bracket", "BudgetScheduler", "RungScheduler", "Scheduler"]


@runtime_checkable
class Scheduler(Protocol):
    """Decides, from the peers' records, whether a reporting trial goes on."""

    def on_report(self, trial: TrialRecord, step: int, score: float, peers: Sequence[TrialRecord]) -> Decision:
        """``trial`` reported ``score`` at ``step``: return CONTINUE, STOP (prune it), COMPLETE (it converged: it
        ends after this epoch and completes) or, for a ``RungScheduler``, PAUSE (wait at this rung).

        When it is called the report is already in ``trial.reports[step]``, and ``score == trial.score_at(step)``
        (the value turned so that larger is better, whatever the study's mode); ``peers`` are all the study's
        trials in number order (a ``History``: ``peers[n].number == n``), ``trial`` among them. Read scores only
        (``score``, ``record.score_at``, ``record.scores``), never ``value`` or ``reports`` raw: they are in the
        user's sign."""
        ...


@runtime_checkable
class BudgetScheduler(Scheduler, Protocol):
    """A ``Scheduler`` told of each new trial, which may choose its epoch budget."""

    def on_start(self, record: TrialRecord, peers: Sequence[TrialRecord]) -> int | None:
        """A trial was created (``record``, already in ``peers``): note what the scheduler needs in
        ``record.attrs`` (a bracket) and return its epoch budget, or ``None`` for the study's ``max_epochs``."""
        ...


@runtime_checkable
class RungScheduler(BudgetScheduler, Protocol):
    """A ``BudgetScheduler`` that decides at rungs and may PAUSE a trial there until its peers catch up."""

    def rungs(self, record: TrialRecord) -> tuple[int, ...]:
        """The steps at which ``record`` is decided, ascending; the last one is its full budget."""
        ...

    def promote(self, peers: Sequence[TrialRecord], drain: bool = False) -> dict[int, Decision]:
        """Decisions for PAUSED trials: CONTINUE resumes one, STOP prunes it; those left out stay PAUSED. With
        ``drain`` no other trial will start, so decide every rung with the peers there are."""
        ...


class Bracket(NamedTuple):
    """One successive-halving bracket: ``s`` halvings, ``n`` trials, epochs at each rung (last = max_epochs)."""

    s: int
    n: int
    rungs: tuple[int, ...]


def _check(name: str, min_epochs: Any, max_epochs: Any, eta: Any) -> tuple[int, int]:
    """Validate the budget arguments; return ``s_max`` and ``max_epochs``."""
    if max_epochs is None:
        raise ValueError(f"{name}: max_epochs is needed; pass it, or give the Study (or @tune) a max_epochs")
    integer(f"{name}: min_epochs", min_epochs)
    integer(f"{name}: max_epochs", max_epochs)
    integer(f"{name}: eta", eta, low=2)
    if min_epochs >= max_epochs:
        raise ValueError(f"{name}: need 1 <= min_epochs < max_epochs, got min_epochs={min_epochs}, "
                         f"max_epochs={max_epochs}; lower min_epochs or raise max_epochs")
    return math.floor(math.log(max_epochs / min_epochs) / math.log(eta) + 1e-9), max_epochs


def _bracket(s: int, s_max: int, max_epochs: int, eta: int) -> Bracket:
    n = -(-(s_max + 1) * eta**s // (s + 1))
    rungs = tuple(max(1, round(max_epochs / eta ** (s - i))) for i in range(s + 1))
    return Bracket(s, n, rungs)


def _ranked(records: Sequence[TrialRecord], step: int) -> list[TrialRecord]:
    """Records that reported at ``step`` (failed ones left out), best first; ties by trial number."""
    there = [r for r in records if step in r.reports and r.status is not Status.FAILED]
    return sorted(there, key=lambda r: (-r.score_at(step), r.number))


def _reached(record: TrialRecord, rungs: Sequence[int]) -> int:
    """Index of the highest rung (below the last) that ``record`` has reported at, or -1."""
    return max((i for i, step in enumerate(rungs[:-1]) if step in record.reports), default=-1)


def _rung_index(scheduler: RungScheduler, trial: TrialRecord, step: int, peers: Sequence[TrialRecord]) -> int | None:
    """Which of ``trial``'s decision rungs ``step`` is (its bracket chosen on first sight), or ``None`` when
    ``step`` is no rung or the last one, where nothing is left to decide."""
    if "bracket" not in trial.attrs:
        scheduler.on_start(trial, peers)
    rungs = scheduler.rungs(trial)
    return rungs.index(step) if step in rungs[:-1] else None


_Key = tuple[float, int]  # a report in rank order: (-score, number) for rungs, (score, number) for medians


def _reindex(table: dict[Any, list[_Key]], old: dict[Any, _Key], new: dict[Any, _Key]) -> None:
    """Move one trial's entries in ``table`` (``where -> sorted keys``) from ``old`` to ``new``."""
    for where, key in old.items():
        if new.get(where) != key:
            keys = table[where]
            del keys[bisect_left(keys, key)]
    for where, key in new.items():
        if old.get(where) != key:
            insort(table.setdefault(where, []), key)


class _Cached(Described):
    """An index of the peers' records that a scheduler updates instead of rescanning every trial per decision.

    ``_sync(peers)`` brings it up to date: from the records changed since the last call when ``peers`` is the same
    ``History`` (its ``token``), else by rebuilding it from every record. Records the scheduler changes itself
    (``attrs``) are marked with ``_touch``. The index is derived from the records alone and is not pickled.
    """

    _CACHE: tuple[str, ...] = ("_token", "_cursor", "_dirty")

    def _reset(self) -> None:
        self._token: object | None = None  # the History indexed, None after a plain list
        self._cursor = 0  # its version when last indexed
        self._dirty: set[int] = set()  # trials whose attrs this scheduler changed since

    def _update(self, record: TrialRecord) -> None:
        """Make ``record``'s entries in the index match the record as it is now."""
        raise NotImplementedError

    def _touch(self, record: TrialRecord) -> None:
        if "_dirty" in self.__dict__:  # else nothing is indexed yet (a subclass that skipped __init__)
            self._dirty.add(record.number)

    def _sync(self, peers: Sequence[TrialRecord]) -> None:
        if "_dirty" in self.__dict__ and isinstance(peers, History) and peers.token is self._token:
            numbers = self._dirty.union(peers.changed_since(self._cursor))
            if all(n < len(peers) and peers[n].number == n for n in numbers):
                for n in numbers:
                    self._update(peers[n])
                self._cursor, self._dirty = peers.version, set()
                return
        self._reset()
        for record in peers:
            self._update(record)
        if isinstance(peers, History):
            self._token, self._cursor = peers.token, peers.version

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self._CACHE}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()
