"""Schedulers: stop (or pause) unpromising trials early from their reported learning curves.

A scheduler answers each report with a ``Decision`` (CONTINUE, STOP or PAUSE), deciding only at its rung
boundaries and only from the peers' records, so a resumed study decides as before. Two optional hooks:
``on_start(record, peers) -> budget | None`` (called when a trial is created: Hyperband and ASHA choose its
bracket there, kept in ``record.attrs["bracket"]``) and ``promote(peers, drain) -> {number: Decision}`` (called by
the driver for PAUSED trials: CONTINUE resumes one from its checkpoint, STOP prunes it).

Rungs follow Li et al.: ``s_max = floor(log_eta(R / r))`` for ``r = min_epochs``, ``R = max_epochs``; bracket
``s`` starts ``n_s = ceil((s_max + 1) eta^s / (s + 1))`` trials at ``R eta^-s`` epochs and keeps the top
``1/eta`` at each rung ``R eta^(i - s)``, ``i = 0 .. s``.
"""

from __future__ import annotations

import itertools
import math
import statistics
import zlib
from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

from torchhpo.trial import Decision, Status, TrialRecord

__all__ = ["ASHA", "Bracket", "Hyperband", "MedianStopping", "Scheduler", "SuccessiveHalving", "make_scheduler"]


@runtime_checkable
class Scheduler(Protocol):
    """Decides, at rung boundaries and from the peers' records, whether a reporting trial goes on."""

    def on_report(self, trial: TrialRecord, step: int, score: float, peers: Sequence[TrialRecord]) -> Decision:
        """``trial`` just reported ``score`` (larger is better) at ``step``; ``peers`` are all the study's trials."""


class Bracket(NamedTuple):
    """One successive-halving bracket: ``s`` halvings, ``n`` trials, epochs at each rung (last = max_epochs)."""

    s: int
    n: int
    rungs: tuple[int, ...]


def _check(name: str, min_epochs: Any, max_epochs: Any, eta: Any) -> int:
    """Validate the budget arguments; return ``s_max``."""
    for what, v in (("min_epochs", min_epochs), ("max_epochs", max_epochs), ("eta", eta)):
        if isinstance(v, bool) or not isinstance(v, int):
            hint = " (pass it, or give the Study/@tune a max_epochs)" if what == "max_epochs" else ""
            raise TypeError(f"{name}: {what} must be an int, got {v!r}{hint}")
    if min_epochs < 1 or min_epochs >= max_epochs:
        raise ValueError(f"{name}: need 1 <= min_epochs < max_epochs, got min_epochs={min_epochs}, "
                         f"max_epochs={max_epochs}; lower min_epochs or raise max_epochs")
    if eta < 2:
        raise ValueError(f"{name}: eta={eta} must be >= 2 (keep the top 1/eta at each rung; 3 is usual)")
    return math.floor(math.log(max_epochs / min_epochs) / math.log(eta) + 1e-9)


def _bracket(s: int, s_max: int, max_epochs: int, eta: int) -> Bracket:
    n = -(-(s_max + 1) * eta**s // (s + 1))
    rungs = tuple(max(1, round(max_epochs / eta ** (s - i))) for i in range(s + 1))
    return Bracket(s, n, rungs)


def _ranked(records: Sequence[TrialRecord], step: int) -> list[TrialRecord]:
    """Records that reported at ``step`` (failed ones left out), best first; ties by trial number."""
    there = [r for r in records if step in r.reports and r.status is not Status.FAILED]
    return sorted(there, key=lambda r: (-r.sign * r.reports[step], r.number))


def _reached(record: TrialRecord, rungs: Sequence[int]) -> int:
    """Index of the highest rung (below the last) that ``record`` has reported at, or -1."""
    return max((i for i, step in enumerate(rungs[:-1]) if step in record.reports), default=-1)


def _rung_index(scheduler: Any, trial: TrialRecord, step: int, peers: Sequence[TrialRecord]) -> int | None:
    """Which of ``trial``'s decision rungs ``step`` is (its bracket chosen on first sight), or ``None`` when
    ``step`` is no rung or the last one, where nothing is left to decide."""
    if "bracket" not in trial.attrs:
        scheduler.on_start(trial, peers)
    rungs = scheduler.rungs(trial)
    return rungs.index(step) if step in rungs[:-1] else None


class _Synchronous:
    """Successive halving over cohorts: a rung decides once every trial promoted into it has reported there.

    Trials fill cohorts in order (bracket after bracket, as in the paper); a trial that reaches a rung before its
    peers is PAUSED and resumed (or pruned) by ``promote`` once the rung is full.
    """

    def __init__(self, brackets: list[Bracket], eta: int) -> None:
        self.brackets, self.eta = brackets, eta
        self._by_s = {b.s: b for b in brackets}
        self._closed: set[tuple[int, int]] = set()  # cohorts drained: decide with the members they have

    def rungs(self, record: TrialRecord) -> tuple[int, ...]:
        """The steps at which ``record`` is decided (its bracket's rungs; the last one ends the trial)."""
        return self._by_s[record.attrs["bracket"]].rungs

    def on_start(self, record: TrialRecord, peers: Sequence[TrialRecord]) -> None:
        counts = Counter((r.attrs["cohort"], r.attrs["bracket"]) for r in peers
                         if r.number != record.number and "cohort" in r.attrs)
        for cohort in itertools.count():
            for b in self.brackets:
                if (cohort, b.s) not in self._closed and counts[(cohort, b.s)] < b.n:
                    record.attrs.update(bracket=b.s, cohort=cohort)
                    return

    def _winners(self, record: TrialRecord, k: int, peers: Sequence[TrialRecord]) -> set[int] | None:
        """Numbers of the trials of ``record``'s cohort promoted past rung ``k``; ``None`` while the rung fills."""
        key = (record.attrs["cohort"], record.attrs["bracket"])
        bracket = self._by_s[key[1]]
        entrants = [r for r in peers if (r.attrs.get("cohort"), r.attrs.get("bracket")) == key]
        if len(entrants) < bracket.n and key not in self._closed:
            return None
        for step in bracket.rungs[: k + 1]:
            if any(step not in r.reports and not r.status.finished for r in entrants):
                return None
            entrants = _ranked(entrants, step)[: max(1, len(entrants) // self.eta)]
        return {r.number for r in entrants}

    def on_report(self, trial: TrialRecord, step: int, score: float, peers: Sequence[TrialRecord]) -> Decision:
        k = _rung_index(self, trial, step, peers)
        if k is None:
            return Decision.CONTINUE
        winners = self._winners(trial, k, peers)
        if winners is None:
            return Decision.PAUSE
        return Decision.CONTINUE if trial.number in winners else Decision.STOP

    def promote(self, peers: Sequence[TrialRecord], drain: bool = False) -> dict[int, Decision]:
        """Decide the PAUSED trials whose rung is full; with ``drain``, close their cohorts first."""
        paused = [r for r in peers if r.status is Status.PAUSED and "bracket" in r.attrs]
        if drain:
            self._closed.update((r.attrs["cohort"], r.attrs["bracket"]) for r in paused)
        out = {}
        for r in paused:
            winners = self._winners(r, _reached(r, self.rungs(r)), peers)
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
        s_max = _check("SuccessiveHalving", min_epochs, max_epochs, eta)
        bracket = _bracket(s_max, s_max, max_epochs, eta)
        if n is not None:
            if isinstance(n, bool) or not isinstance(n, int) or n < eta:
                raise ValueError(f"SuccessiveHalving: n={n!r} must be an int >= eta={eta}")
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
        s_max = _check("Hyperband", min_epochs, max_epochs, eta)
        super().__init__([_bracket(s, s_max, max_epochs, eta) for s in range(s_max, -1, -1)], eta)


class ASHA:
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

    def __init__(self, min_epochs: int = 1, max_epochs: int | None = None, eta: int = 3, brackets: int = 1, *,
                 seed: int | None = None) -> None:
        s_max = _check("ASHA", min_epochs, max_epochs, eta)
        if isinstance(brackets, bool) or not isinstance(brackets, int) or not 1 <= brackets <= s_max + 1:
            raise ValueError(f"ASHA: brackets={brackets!r} must be an int in 1..{s_max + 1} for min_epochs="
                             f"{min_epochs}, max_epochs={max_epochs}, eta={eta}")
        self.eta, self.seed = eta, seed or 0
        self.brackets = [_bracket(s_max - b, s_max, max_epochs, eta) for b in range(brackets)]

    def rungs(self, record: TrialRecord) -> tuple[int, ...]:
        """The steps at which ``record`` is decided (its bracket's rungs; the last one ends the trial)."""
        return self.brackets[record.attrs["bracket"]].rungs

    def on_start(self, record: TrialRecord, peers: Sequence[TrialRecord]) -> None:
        record.attrs["bracket"] = zlib.crc32(f"{self.seed}:{record.number}".encode()) % len(self.brackets)

    def _promotable(self, record: TrialRecord, k: int, peers: Sequence[TrialRecord], least: int = 0) -> bool:
        step = self.rungs(record)[k]
        rung = _ranked([r for r in peers if r.attrs.get("bracket") == record.attrs["bracket"]], step)
        return record.number in {r.number for r in rung[: max(least, len(rung) // self.eta)]}

    def on_report(self, trial: TrialRecord, step: int, score: float, peers: Sequence[TrialRecord]) -> Decision:
        k = _rung_index(self, trial, step, peers)
        if k is None:
            return Decision.CONTINUE
        if k < trial.attrs.get("rung", 0) or self._promotable(trial, k, peers):  # promoted before, or now
            trial.attrs["rung"] = max(trial.attrs.get("rung", 0), k + 1)
            return Decision.CONTINUE
        return Decision.PAUSE

    def promote(self, peers: Sequence[TrialRecord], drain: bool = False) -> dict[int, Decision]:
        """Resume the PAUSED trials now in their rung's top ``1/eta`` (highest rung first); with ``drain`` (nothing
        else to run), the best of each rung goes on too and the others are pruned."""
        paused = [r for r in peers if r.status is Status.PAUSED and "bracket" in r.attrs]
        out = {}
        for r in sorted(paused, key=lambda r: (-_reached(r, self.rungs(r)), r.number)):
            k = _reached(r, self.rungs(r))
            if k < r.attrs.get("rung", 0) or self._promotable(r, k, peers, least=int(drain)):
                r.attrs["rung"] = k + 1
                out[r.number] = Decision.CONTINUE
            elif drain:
                out[r.number] = Decision.STOP
        return out


class MedianStopping:
    """Stop a trial whose best score so far is worse than the median of the other trials' scores at the same step
    (Golovin et al., Google Vizier), after ``warmup_epochs`` and once ``min_trials`` others have reported there.

    Example:
        >>> MedianStopping(warmup_epochs=2, min_trials=3).warmup_epochs
        2
    """

    def __init__(self, warmup_epochs: int = 1, min_trials: int = 5) -> None:
        for what, v, low in (("warmup_epochs", warmup_epochs, 0), ("min_trials", min_trials, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"MedianStopping: {what}={v!r} must be an int >= {low}")
        self.warmup_epochs, self.min_trials = warmup_epochs, min_trials

    def on_report(self, trial: TrialRecord, step: int, score: float, peers: Sequence[TrialRecord]) -> Decision:
        if step <= self.warmup_epochs:
            return Decision.CONTINUE
        others = [r.sign * r.reports[step] for r in peers
                  if r.number != trial.number and step in r.reports and r.status is not Status.FAILED]
        if len(others) < self.min_trials:
            return Decision.CONTINUE
        best = max(v for s, v in trial.scores.items() if s <= step)
        return Decision.STOP if best < statistics.median(others) else Decision.CONTINUE


def make_scheduler(spec: Any, *, seed: int | None = None, max_epochs: int | None = None, **options: Any) -> Any:
    """A scheduler from its name (``"sha"``, ``"hyperband"``, ``"asha"``, ``"median"``), ``None``, or an object.

    ``max_epochs`` (the study's or decorator's) is the rung schedulers' default budget; ``options`` go to the
    constructor (e.g. ``min_epochs=3``, ``eta=3``, ``brackets=4``).

    Example:
        >>> make_scheduler("hyperband", max_epochs=27).brackets[0].rungs
        (1, 3, 9, 27)
    """
    if spec is None or callable(getattr(spec, "on_report", None)):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"scheduler must be a name, None or have on_report(trial, step, score, peers); "
                        f"got {type(spec).__name__}")
    if spec == "median":
        return MedianStopping(**options)
    rung = {"sha": SuccessiveHalving, "hyperband": Hyperband, "asha": ASHA}
    if spec not in rung:
        raise ValueError(f"scheduler '{spec}' is unknown; choose one of {sorted([*rung, 'median'])}, None, "
                         "or pass an object with on_report(...)")
    options.setdefault("max_epochs", max_epochs)
    if options["max_epochs"] is None:
        raise ValueError(f"scheduler '{spec}' needs max_epochs: give the Study (or @tune) max_epochs=..., "
                         f"or pass an object such as {rung[spec].__name__}(min_epochs, max_epochs)")
    if spec == "asha":
        options.setdefault("seed", seed)
    return rung[spec](**options)
