"""Schedulers: stop (or pause) unpromising trials early from their reported learning curves.

The contract has three levels, ``Protocol``s the study checks with ``isinstance``:

- ``Scheduler``: ``on_report`` answers each report with a ``Decision`` (CONTINUE, STOP, PAUSE or COMPLETE), from
  the peers' records only, so that a re-opened study decides as before. ``MedianStopping`` and ``Patience``.
- ``BudgetScheduler``: also ``on_start``, called when the study creates a trial; it may note what it needs in
  the record's attrs and return the trial's epoch budget (``trial.max_epochs``).
- ``RungScheduler``: a ``BudgetScheduler`` that rations epochs in rungs and pauses trials at them: ``rungs``
  (the steps where a trial is decided) and ``promote`` (for the PAUSED trials: CONTINUE resumes one from its
  checkpoint, STOP prunes it). ``SuccessiveHalving``, ``Hyperband`` and ``ASHA``, which choose a trial's bracket
  in ``on_start``.

Rungs follow Li et al.: ``s_max = floor(log_eta(R / r))`` for ``r = min_epochs``, ``R = max_epochs``; bracket
``s`` starts ``n_s = ceil((s_max + 1) eta^s / (s + 1))`` trials at ``R eta^-s`` epochs and keeps the top
``1/eta`` at each rung ``R eta^(i - s)``, ``i = 0 .. s``.

The built-in schedulers keep an index of the peers (each rung's reports in rank order, the PAUSED trials, the
cohorts), so a decision is a binary search instead of a scan of every trial. The index is a cache: when ``peers``
is the study's ``History`` seen last time it is updated from the records changed since (``changed_since``),
otherwise (a plain list, another study, a study re-opened from its file) it is rebuilt from the records, which
stay the one truth: the same records give the same decisions.
"""

from __future__ import annotations

import math
import zlib
from bisect import bisect_left, insort
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

from torchhpo.checks import integer, number
from torchhpo.history import History
from torchhpo.settings import Described
from torchhpo.trial import Decision, Status, TrialRecord

__all__ = ["ASHA", "Bracket", "BudgetScheduler", "Hyperband", "MedianStopping", "Patience", "RungScheduler",
           "Scheduler", "Schedulers", "SuccessiveHalving", "make_scheduler"]


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
    if eta < 2:
        raise ValueError(f"{name}: eta={eta} must be >= 2 (keep the top 1/eta at each rung; 3 is usual)")
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


class _Synchronous(_Cached):
    """Successive halving over cohorts: a rung decides once every trial promoted into it has reported there.

    Trials fill cohorts in order (bracket after bracket, as in the paper); a trial that reaches a rung before its
    peers is PAUSED and resumed (or pruned) by ``promote`` once the rung is full.
    """

    _CACHE = (*_Cached._CACHE, "_members", "_slot", "_paused", "_first")

    def __init__(self, brackets: list[Bracket], eta: int) -> None:
        self.brackets, self.eta = brackets, eta
        self._by_s = {b.s: b for b in brackets}
        self._closed: set[tuple[int, int]] = set()  # cohorts drained: decide with the members they have
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self._members: dict[tuple[Any, Any], dict[int, TrialRecord]] = {}  # (cohort, bracket) -> its trials
        self._slot: dict[int, tuple[Any, Any]] = {}  # number -> (cohort, bracket), for trials with a cohort
        self._paused: dict[int, TrialRecord] = {}  # PAUSED trials with a bracket
        self._first = (0, 0)  # (cohort, index in brackets): every slot before it is full or closed

    def _update(self, record: TrialRecord) -> None:
        n, attrs = record.number, record.attrs
        slot = (attrs["cohort"], attrs.get("bracket")) if "cohort" in attrs else None
        old = self._slot.pop(n, None)
        if old is not None:
            del self._members[old][n]
            if old != slot:
                self._first = (0, 0)  # a slot has room again
        if slot is not None:
            self._members.setdefault(slot, {})[n] = record
            self._slot[n] = slot
        self._paused.pop(n, None)
        if record.status is Status.PAUSED and "bracket" in attrs:
            self._paused[n] = record

    def rungs(self, record: TrialRecord) -> tuple[int, ...]:
        """The steps at which ``record`` is decided (its bracket's rungs; the last one ends the trial)."""
        return self._by_s[record.attrs["bracket"]].rungs

    def _room(self, cohort: int, i: int, less: int = 0) -> bool:
        """Whether slot (``cohort``, ``brackets[i]``) takes another trial (not counting ``less`` of its members)."""
        b = self.brackets[i]
        return (cohort, b.s) not in self._closed and len(self._members.get((cohort, b.s), ())) - less < b.n

    def on_start(self, record: TrialRecord, peers: Sequence[TrialRecord]) -> None:  # the budget: max_epochs
        """Put ``record`` in the first slot (cohort, then bracket) with room among the other trials."""
        self._sync(peers)
        cohort, i = self._first
        while not self._room(cohort, i):
            cohort, i = (cohort, i + 1) if i + 1 < len(self.brackets) else (cohort + 1, 0)
        self._first = (cohort, i)
        own = self._slot.get(record.number)  # the peers counted without this record: its own slot may have room
        if own is not None and isinstance(own[0], int) and own[0] >= 0:
            j = next((j for j, b in enumerate(self.brackets) if b.s == own[1]), None)
            if j is not None and (own[0], j) < (cohort, i) and self._room(own[0], j, less=1):
                cohort, i = own[0], j
        record.attrs.update(bracket=self.brackets[i].s, cohort=cohort)
        self._touch(record)

    def _winners(self, record: TrialRecord, k: int) -> set[int] | None:
        """Numbers of the trials of ``record``'s cohort promoted past rung ``k``; ``None`` while the rung fills."""
        key = (record.attrs["cohort"], record.attrs["bracket"])
        bracket = self._by_s[key[1]]
        entrants = list(self._members.get(key, {}).values())
        if len(entrants) < bracket.n and key not in self._closed:
            return None
        for step in bracket.rungs[: k + 1]:
            if any(step not in r.reports and not r.status.is_final for r in entrants):
                return None
            entrants = _ranked(entrants, step)[: max(1, len(entrants) // self.eta)]
        return {r.number for r in entrants}

    def on_report(self, trial: TrialRecord, step: int, score: float, peers: Sequence[TrialRecord]) -> Decision:
        k = _rung_index(self, trial, step, peers)
        if k is None:
            return Decision.CONTINUE
        self._sync(peers)
        winners = self._winners(trial, k)
        if winners is None:
            return Decision.PAUSE
        return Decision.CONTINUE if trial.number in winners else Decision.STOP

    def promote(self, peers: Sequence[TrialRecord], drain: bool = False) -> dict[int, Decision]:
        """Decide the PAUSED trials whose rung is full; with ``drain``, close their cohorts first."""
        self._sync(peers)
        if isinstance(peers, History):
            paused = [self._paused[n] for n in sorted(self._paused)]
        else:  # in the list's order
            paused = [r for r in peers if r.number in self._paused and r is self._paused[r.number]]
        if drain:
            self._closed.update((r.attrs["cohort"], r.attrs["bracket"]) for r in paused)
        out, known = {}, {}
        for r in paused:
            k = _reached(r, self.rungs(r))
            rung = (r.attrs["cohort"], r.attrs["bracket"], k)
            if rung not in known:  # the same for every paused trial of the cohort at that rung
                known[rung] = self._winners(r, k)
            winners = known[rung]
            if winners is not None:
                out[r.number] = Decision.CONTINUE if r.number in winners else Decision.STOP
        return out


class SuccessiveHalving(_Synchronous):
    """Synchronous successive halving: cohorts of ``n`` trials; at each rung the top ``1/eta`` go on.

    Args:
        min_epochs: epochs at the first rung.
        max_epochs: epochs of a fully trained trial.
        eta: the halving rate (keep ``floor(n / eta)``, at least one).
        n: trials per cohort (default ``eta^s_max``, so that each rung divides evenly).

    Example:
        >>> SuccessiveHalving(1, 27).brackets
        [Bracket(s=3, n=27, rungs=(1, 3, 9, 27))]
    """

    def __init__(self, min_epochs: int = 1, max_epochs: int | None = None, eta: int = 3, *,
                 n: int | None = None) -> None:
        s_max, budget = _check("SuccessiveHalving", min_epochs, max_epochs, eta)
        bracket = _bracket(s_max, s_max, budget, eta)
        if n is not None:
            integer("SuccessiveHalving: n (trials per cohort, at least eta)", n, low=eta)
            bracket = bracket._replace(n=n)
        super().__init__([bracket], eta)


class Hyperband(_Synchronous):
    """Hyperband (Li et al., JMLR 2018): successive halving in brackets ``s = s_max .. 0``, from most to least
    aggressive, each with its own ``n`` and first rung; trials fill the brackets in that order, round after round.

    Example:
        >>> [(b.n, b.rungs[0]) for b in Hyperband(1, 81).brackets]
        [(81, 1), (34, 3), (15, 9), (8, 27), (5, 81)]
    """

    def __init__(self, min_epochs: int = 1, max_epochs: int | None = None, eta: int = 3) -> None:
        s_max, budget = _check("Hyperband", min_epochs, max_epochs, eta)
        super().__init__([_bracket(s, s_max, budget, eta) for s in range(s_max, -1, -1)], eta)

class ASHA(_Cached):
    """Asynchronous successive halving (Li et al., MLSys 2020): never waits for a rung to fill.

    At a rung, a trial in the top ``floor(n / eta)`` of the ``n`` trials that reached it so far goes on; another
    is PAUSED, and ``promote`` resumes it as soon as it is in the top (a later look at the rung), before any new
    config starts. With ``brackets > 1`` each trial draws its bracket (first rung ``min_epochs * eta^b``) from a
    stable hash of its number and the seed: asynchronous Hyperband.

    Args:
        min_epochs, max_epochs, eta: as for ``Hyperband``.
        brackets: how many brackets (1 .. s_max + 1).
        seed: seeds the bracket hash.
    """

    _CACHE = (*_Cached._CACHE, "_rung", "_at", "_ready", "_waiting", "_waits", "_odd")

    def __init__(self, min_epochs: int = 1, max_epochs: int | None = None, eta: int = 3, brackets: int = 1, *,
                 seed: int | None = None) -> None:
        s_max, budget = _check("ASHA", min_epochs, max_epochs, eta)
        integer("ASHA: brackets", brackets)
        if brackets > s_max + 1:
            raise ValueError(f"ASHA: brackets={brackets!r} must be an int in 1..{s_max + 1} for min_epochs="
                             f"{min_epochs}, max_epochs={max_epochs}, eta={eta}")
        self.eta, self.seed = eta, seed or 0
        self.brackets = [_bracket(s_max - b, s_max, budget, eta) for b in range(brackets)]
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self._rung: dict[tuple[Any, int], list[_Key]] = {}  # (bracket, step) -> (-score, number) of who is there
        self._at: dict[int, dict[tuple[Any, int], _Key]] = {}  # number -> its entries in _rung
        self._ready: dict[int, TrialRecord] = {}  # PAUSED at a rung they were promoted past before
        self._waiting: dict[tuple[Any, int], list[_Key]] = {}  # (bracket, rung index) -> keys of the PAUSED there
        self._waits: dict[int, tuple[tuple[Any, int], _Key, TrialRecord]] = {}  # number -> its entry in _waiting
        self._odd: dict[int, TrialRecord] = {}  # PAUSED with a bracket this scheduler does not have

    def _rungs_of(self, bracket: Any) -> tuple[int, ...] | None:
        try:
            return self.brackets[bracket].rungs
        except (IndexError, TypeError):
            return None

    def _update(self, record: TrialRecord) -> None:
        n, b = record.number, record.attrs.get("bracket")
        rungs = self._rungs_of(b)
        new = {}
        if rungs is not None and record.status is not Status.FAILED:  # as _ranked: failed trials are left out
            new = {(b, step): (-record.score_at(step), n) for step in rungs[:-1]
                   if step in record.reports}
        _reindex(self._rung, self._at.pop(n, {}), new)
        if new:
            self._at[n] = new
        self._ready.pop(n, None)
        self._odd.pop(n, None)
        if (wait := self._waits.pop(n, None)) is not None:
            _reindex(self._waiting, {wait[0]: wait[1]}, {})
        if record.status is not Status.PAUSED or "bracket" not in record.attrs:
            return
        if rungs is None:
            self._odd[n] = record
            return
        k = _reached(record, rungs)
        if k < 0 or k < record.attrs.get("rung", 0):
            self._ready[n] = record
        else:
            wait = ((b, k), new[(b, rungs[k])], record)
            _reindex(self._waiting, {}, {wait[0]: wait[1]})
            self._waits[n] = wait

    def rungs(self, record: TrialRecord) -> tuple[int, ...]:
        """The steps at which ``record`` is decided (its bracket's rungs; the last one ends the trial)."""
        return self.brackets[record.attrs["bracket"]].rungs

    def on_start(self, record: TrialRecord, peers: Sequence[TrialRecord]) -> None:  # the budget: max_epochs
        record.attrs["bracket"] = zlib.crc32(f"{self.seed}:{record.number}".encode()) % len(self.brackets)
        self._touch(record)

    def _promotable(self, record: TrialRecord, k: int, peers: Sequence[TrialRecord]) -> bool:
        """Whether ``record`` is in the top ``1/eta`` of its bracket's trials at rung ``k``."""
        self._sync(peers)
        where = (record.attrs["bracket"], self.rungs(record)[k])
        key = self._at.get(record.number, {}).get(where)
        rung = self._rung.get(where, [])
        return key is not None and bisect_left(rung, key) < len(rung) // self.eta

    def on_report(self, trial: TrialRecord, step: int, score: float, peers: Sequence[TrialRecord]) -> Decision:
        k = _rung_index(self, trial, step, peers)
        if k is None:
            return Decision.CONTINUE
        if k < trial.attrs.get("rung", 0) or self._promotable(trial, k, peers):  # promoted before, or now
            trial.attrs["rung"] = max(trial.attrs.get("rung", 0), k + 1)
            self._touch(trial)
            return Decision.CONTINUE
        return Decision.PAUSE

    def promote(self, peers: Sequence[TrialRecord], drain: bool = False) -> dict[int, Decision]:
        """Resume the PAUSED trials now in their rung's top ``1/eta`` (highest rung first); with ``drain`` (nothing
        else to run), the best of each rung goes on too and the others are pruned."""
        self._sync(peers)
        for r in self._odd.values():
            self.rungs(r)  # raises, as a bracket this scheduler lacks always did
        found = [(_reached(r, self.rungs(r)), n, Decision.CONTINUE, r) for n, r in self._ready.items()]
        for (b, k), keys in self._waiting.items():
            rung = self._rung[(b, self.brackets[b].rungs[k])]
            top = max(int(drain), len(rung) // self.eta)
            for key in keys:  # best first: once one is out of the top, so are the rest
                r = self._waits[key[1]][2]
                if bisect_left(rung, key) < top:
                    found.append((k, r.number, Decision.CONTINUE, r))
                elif drain:
                    found.append((k, r.number, Decision.STOP, r))
                else:
                    break
        out = {}
        for k, n, decision, r in sorted(found, key=lambda f: (-f[0], f[1])):
            if decision is Decision.CONTINUE:
                r.attrs["rung"] = k + 1
                self._touch(r)
            out[n] = decision
        return out


class MedianStopping(_Cached):
    """Stop a trial whose best score so far is worse than the median of the other trials' scores at the same step
    (Golovin et al., Google Vizier), after ``warmup_epochs`` and once ``min_trials`` others have reported there.

    Example:
        >>> MedianStopping(warmup_epochs=2, min_trials=3).warmup_epochs
        2
    """

    _CACHE = (*_Cached._CACHE, "_steps", "_seen")

    def __init__(self, warmup_epochs: int = 1, min_trials: int = 5) -> None:
        integer("MedianStopping: warmup_epochs", warmup_epochs, low=0)
        integer("MedianStopping: min_trials", min_trials)
        self.warmup_epochs, self.min_trials = warmup_epochs, min_trials
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self._steps: dict[int, list[_Key]] = {}  # step -> (score, number) of the non-failed trials there, ascending
        self._seen: dict[int, tuple[dict[int, float], bool, TrialRecord]] = {}  # number -> (reports, failed, record)

    def _entries(self, record: TrialRecord, reports: dict[int, float], failed: bool) -> dict[int, _Key]:
        return {} if failed else {s: (record.as_score(v), record.number) for s, v in reports.items()
                                  if s > self.warmup_epochs}

    def _update(self, record: TrialRecord) -> None:
        n, reports, failed = record.number, record.reports, record.status is Status.FAILED
        seen = self._seen.get(n)
        if seen is not None and seen[1] == failed and seen[2] is record:  # the usual changes, checked at C speed
            snap = seen[0]
            if len(reports) == len(snap) + 1 and (last := next(reversed(reports))) not in snap:
                snap[last] = reports[last]
                if snap == reports:  # one new report and nothing else
                    if last > self.warmup_epochs and not failed:
                        insort(self._steps.setdefault(last, []), (record.score_at(last), n))
                    return
                del snap[last]
            elif snap == reports:  # its status or attrs changed, not its reports
                return
        old = {} if seen is None else self._entries(seen[2], seen[0], seen[1])
        _reindex(self._steps, old, self._entries(record, reports, failed))
        self._seen[n] = (dict(reports), failed, record)

    def on_report(self, trial: TrialRecord, step: int, score: float, peers: Sequence[TrialRecord]) -> Decision:
        if step <= self.warmup_epochs or len(peers) < self.min_trials:  # too few others, whatever they reported
            return Decision.CONTINUE
        self._sync(peers)
        there = self._steps.get(step, [])
        seen = self._seen.get(trial.number)  # the others: ``there`` without its own entry
        own = None if seen is None or seen[1] or step not in seen[0] else (seen[2].as_score(seen[0][step]),
                                                                             trial.number)
        skip = len(there) if own is None else bisect_left(there, own)
        count = len(there) - (own is not None)
        if count < self.min_trials:
            return Decision.CONTINUE

        def other(i: int) -> float:
            return there[i if i < skip else i + 1][0]

        half = count // 2  # statistics.median of the others, term for term
        median = other(half) if count % 2 else (other(half - 1) + other(half)) / 2
        best = max(v for s, v in trial.scores.items() if s <= step)
        return Decision.STOP if best < median else Decision.CONTINUE


class Patience(Described):
    """Stop a trial whose reports have not improved on its best by more than ``min_delta`` for ``patience``
    reports in a row: the early stopping of Keras' ``EarlyStopping`` (the same rule: a report improves when it
    beats the best so far by more than ``min_delta``, and only then becomes the best), as Optuna's
    ``PatientPruner`` and Ray's ``TrialPlateauStopper`` offer.

    A plateau is an end, not a defeat: the answer is ``Decision.COMPLETE``, so ``trial.epochs()`` ends after that
    epoch and the training function returns its value as usual (the trial COMPLETES and competes for
    ``study.best``), as ``model.fit`` returns under Keras. It looks at one trial's own curve only, so it works
    alone (a plain training run ends at its plateau) or combined with a rung scheduler:
    ``scheduler=[th.Patience(3), th.ASHA(...)]``. By name: ``"patience"``.

    Args:
        patience: how many reports in a row without improvement stop the trial.
        min_delta: how much better than the best so far a report must be to count as an improvement.
        warmup_epochs: reports at steps up to this are not looked at (the noisy first epochs).

    Example:
        >>> from torchhpo.trial import TrialRecord
        >>> record = TrialRecord(0, {}, reports={1: 0.5, 2: 0.4, 3: 0.45, 4: 0.41}, sign=-1)  # a loss
        >>> Patience(patience=2).on_report(record, 3, -0.45, [record])  # 0.4 at step 2 is within the last 2
        <Decision.CONTINUE: 'continue'>
        >>> Patience(patience=2).on_report(record, 4, -0.41, [record])  # nothing beat 0.4 for 2 reports
        <Decision.COMPLETE: 'complete'>
    """

    def __init__(self, patience: int = 5, min_delta: float = 0.0, warmup_epochs: int = 0) -> None:
        integer("Patience: patience", patience)
        integer("Patience: warmup_epochs", warmup_epochs, low=0)
        self.patience, self.min_delta, self.warmup_epochs = patience, number("Patience: min_delta", min_delta), \
            warmup_epochs

    def on_report(self, trial: TrialRecord, step: int, score: float, peers: Sequence[TrialRecord]) -> Decision:
        best, waited = -math.inf, 0  # Keras' rule, replayed over the trial's own curve (so a resumed study agrees)
        for s in sorted(trial.reports):
            if self.warmup_epochs < s <= step:
                if trial.score_at(s) - self.min_delta > best:
                    best, waited = trial.score_at(s), 0
                else:
                    waited += 1
        return Decision.COMPLETE if waited >= self.patience else Decision.CONTINUE


class Schedulers(Described):
    """Several schedulers at once (``scheduler=[th.Patience(3), th.ASHA(1, 27)]``): a trial is pruned when any
    of them says stop, completes when one says complete (Patience at a plateau), pauses when one says pause,
    and goes on otherwise. The composite is a ``BudgetScheduler`` when one of them is (the smallest budget they
    return wins), and a ``RungScheduler`` when one of them is (at most one may be; its ``rungs`` and ``promote``
    are the composite's).

    Args:
        schedulers: the schedulers, each asked at every report in this order.
    """

    def __new__(cls, schedulers: Sequence[Any]) -> Any:
        if cls is Schedulers and isinstance(schedulers, (list, tuple)):
            if any(isinstance(s, RungScheduler) for s in schedulers):
                cls = _RungSchedulers
            elif any(isinstance(s, BudgetScheduler) for s in schedulers):
                cls = _BudgetSchedulers
        return super().__new__(cls, schedulers)

    def __init__(self, schedulers: Sequence[Any]) -> None:
        self.schedulers: list[Scheduler] = list(schedulers)
        if not self.schedulers or any(not isinstance(s, Scheduler) for s in self.schedulers):
            raise TypeError("Schedulers: give a non-empty list of schedulers (objects with on_report)")
        pausing = [s for s in self.schedulers if isinstance(s, RungScheduler)]
        if len(pausing) > 1:
            raise ValueError(f"Schedulers: at most one rung scheduler may pause trials, got "
                             f"{[type(s).__name__ for s in pausing]}; keep one of them")

    def on_report(self, trial: TrialRecord, step: int, score: float, peers: Sequence[TrialRecord]) -> Decision:
        decisions = [s.on_report(trial, step, score, peers) for s in self.schedulers]
        for decision in (Decision.STOP, Decision.COMPLETE, Decision.PAUSE):
            if decision in decisions:
                return decision
        return Decision.CONTINUE


class _BudgetSchedulers(Schedulers):
    """``Schedulers`` with a ``BudgetScheduler`` among them (``Schedulers([...])`` builds this one then)."""

    def on_start(self, record: TrialRecord, peers: Sequence[TrialRecord]) -> int | None:
        budgets = [b for s in self.schedulers if isinstance(s, BudgetScheduler)
                   if (b := s.on_start(record, peers)) is not None]
        return min(budgets) if budgets else None


class _RungSchedulers(_BudgetSchedulers):
    """``Schedulers`` with a rung scheduler among them (``Schedulers([...])`` builds this one then)."""

    @property
    def _rung(self) -> RungScheduler:
        return next(s for s in self.schedulers if isinstance(s, RungScheduler))

    def rungs(self, record: TrialRecord) -> tuple[int, ...]:
        return self._rung.rungs(record)

    def promote(self, peers: Sequence[TrialRecord], drain: bool = False) -> dict[int, Decision]:
        return self._rung.promote(peers, drain)


def make_scheduler(spec: Any, *, seed: int | None = None, max_epochs: int | None = None,
                   **options: Any) -> Scheduler | None:
    """A scheduler from its name (``"sha"``, ``"hyperband"``, ``"asha"``, ``"median"``, ``"patience"``), ``None``,
    an object, or a list of these (``Schedulers``: a trial stops when any of them says so).

    ``max_epochs`` (the study's or decorator's) is the rung schedulers' default budget; ``options`` go to the
    constructor (e.g. ``min_epochs=3``, ``eta=3``, ``brackets=4``).

    Example:
        >>> make_scheduler("hyperband", max_epochs=27).brackets[0].rungs
        (1, 3, 9, 27)
        >>> [type(s).__name__ for s in make_scheduler(["patience", "asha"], max_epochs=27).schedulers]
        ['Patience', 'ASHA']
    """
    if spec is None or isinstance(spec, Scheduler):
        return spec
    if isinstance(spec, (list, tuple)):
        return Schedulers([make_scheduler(s, seed=seed, max_epochs=max_epochs) for s in spec])
    if not isinstance(spec, str):
        raise TypeError(f"scheduler must be a name, None, a list of them or have on_report(trial, step, score, "
                        f"peers); got {type(spec).__name__}")
    simple = {"median": MedianStopping, "patience": Patience}
    if spec in simple:
        return simple[spec](**options)
    rung = {"sha": SuccessiveHalving, "hyperband": Hyperband, "asha": ASHA}
    if spec not in rung:
        raise ValueError(f"scheduler '{spec}' is unknown; choose one of {sorted([*rung, *simple])}, None, "
                         "or pass an object with on_report(...)")
    options.setdefault("max_epochs", max_epochs)
    if options["max_epochs"] is None:
        raise ValueError(f"scheduler '{spec}' needs max_epochs: give the Study (or @tune) max_epochs=..., "
                         f"or pass an object such as {rung[spec].__name__}(min_epochs, max_epochs)")
    if spec == "asha":
        options.setdefault("seed", seed)
    return rung[spec](**options)
