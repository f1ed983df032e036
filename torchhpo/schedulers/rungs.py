"""Rung schedulers: successive halving, Hyperband and ASHA, which ration epochs in rungs and pause trials there.

Rungs follow Li et al.: ``s_max = floor(log_eta(R / r))`` for ``r = min_epochs``, ``R = max_epochs``; bracket
``s`` starts ``n_s = ceil((s_max + 1) eta^s / (s + 1))`` trials at ``R eta^-s`` epochs and keeps the top
``1/eta`` at each rung ``R eta^(i - s)``, ``i = 0 .. s``.
"""

from __future__ import annotations

import zlib
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from torchhpo.checks import integer
from torchhpo.history import History
from torchhpo.schedulers.base import (
    Bracket,
    _bracket,
    _Cached,
    _check,
    _Key,
    _ranked,
    _reached,
    _reindex,
    _rung_index,
)
from torchhpo.trial import Decision, Status, TrialRecord

__all__ = ["ASHA", "Hyperband", "SuccessiveHalving"]


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
