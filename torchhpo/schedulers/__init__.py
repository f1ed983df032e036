"""Schedulers: stop (or pause) unpromising trials early from their reported learning curves.

``base`` holds the contract (``Scheduler``, ``BudgetScheduler``, ``RungScheduler``), ``rungs`` the rung schedulers
(``SuccessiveHalving``, ``Hyperband``, ``ASHA``), ``stopping`` the rules without rungs (``MedianStopping``,
``Patience``), ``freezethaw`` the model-based ``FreezeThaw`` (its curve model in ``curve_model``); this module
combines them (``Schedulers``) and builds them by name (``make_scheduler``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torchhpo.schedulers.base import Bracket, BudgetScheduler, RungScheduler, Scheduler
from torchhpo.schedulers.freezethaw import FreezeThaw
from torchhpo.schedulers.rungs import ASHA, Hyperband, SuccessiveHalving
from torchhpo.schedulers.stopping import MedianStopping, Patience
from torchhpo.settings import Described
from torchhpo.trial import Decision, TrialRecord

__all__ = ["ASHA", "Bracket", "BudgetScheduler", "FreezeThaw", "Hyperband", "MedianStopping", "Patience", "RungScheduler",
           "Scheduler", "Schedulers", "SuccessiveHalving", "make_scheduler"]


class Schedulers(Described):
    """Several schedulers at once (``scheduler=[th.Patience(3), th.ASHA(1, 27)]``): a trial is pruned when any
    of them says stop, completes when one says complete (Patience at a plateau), pauses when one says pause,
    and goes on otherwise. The composite is a ``BudgetScheduler`` when one of them is (the smallest budget they
    return wins), and a ``RungScheduler`` when one of them is (at most one may be; its ``rungs`` and ``promote``
    are the composite's).

    Args:
        schedulers: a list (or tuple) of schedulers, each asked at every report in this order.
    """

    def __new__(cls, schedulers: Sequence[Any]) -> Any:
        if not isinstance(schedulers, (list, tuple)):  # its members choose its class: read them once, here
            raise TypeError(f"Schedulers: give a list of schedulers, got {type(schedulers).__name__}")
        if cls is Schedulers:
            if any(isinstance(s, RungScheduler) for s in schedulers):
                cls = _RungSchedulers
            elif any(isinstance(s, BudgetScheduler) for s in schedulers):
                cls = _BudgetSchedulers
        return super().__new__(cls, schedulers)

    def __getnewargs__(self) -> tuple[list[Scheduler]]:
        """What pickle and ``copy`` pass to ``__new__``, which needs the members."""
        return (self.schedulers,)

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
    """A scheduler from its name (``"sha"``, ``"hyperband"``, ``"asha"``, ``"freeze-thaw"``, ``"median"``,
    ``"patience"``), ``None``,
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
    rung = {"sha": SuccessiveHalving, "hyperband": Hyperband, "asha": ASHA, "freeze-thaw": FreezeThaw}
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
