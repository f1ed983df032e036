"""What a rung rations: epochs (the default) or the fraction of the training data (``fidelity="data"``).

With epoch fidelity a trial's step is the epochs it trained, and the scheduler decides at every report. With data
fidelity each run trains ``max_epochs`` epochs on the fraction ``r / R`` of the data, where ``r`` is the trial's
rung and ``R`` the last one: its reports count at step ``r``, the scheduler decides once the run ends, and a
promotion pauses the trial so that the driver restarts it, from scratch, on the next rung's fraction.
"""

from __future__ import annotations

from torchhpo.schedulers import RungScheduler, Scheduler
from torchhpo.trial import Decision, Trial, TrialRecord

__all__ = ["DataFidelity", "EpochFidelity", "make_fidelity"]


class EpochFidelity:
    """``fidelity="epochs"``: a report's step is the epochs trained; every report is decided."""

    name = "epochs"
    restarts = False  # a resumed trial goes on from its checkpoint

    def level(self, record: TrialRecord) -> float:
        """The fraction of the data the trial's next run trains on."""
        return 1.0

    def place(self, trial: Trial, record: TrialRecord, step: int) -> tuple[int, bool]:
        """Where a report at ``step`` counts, and whether the scheduler decides on it now."""
        return step, True

    def after(self, decision: Decision, record: TrialRecord, step: int) -> Decision:
        """The scheduler's ``decision`` on the report counted at ``step``, as the trial gets it."""
        return decision


class DataFidelity(EpochFidelity):
    """``fidelity="data"``: reports count at the trial's rung; a promotion restarts it on more data."""

    name = "data"
    restarts = True  # a promoted trial trains again from scratch on the larger fraction

    def __init__(self, scheduler: RungScheduler) -> None:
        self.scheduler = scheduler

    def level(self, record: TrialRecord) -> float:
        rungs = self.scheduler.rungs(record)
        done = max(record.reports, default=0)
        return next(r for r in rungs if r > done or r == rungs[-1]) / rungs[-1]

    def place(self, trial: Trial, record: TrialRecord, step: int) -> tuple[int, bool]:
        rung = round(trial.fidelity * self.scheduler.rungs(record)[-1])  # the last report of the run stands
        return rung, trial.max_epochs is None or step >= trial.max_epochs

    def after(self, decision: Decision, record: TrialRecord, step: int) -> Decision:
        last = self.scheduler.rungs(record)[-1]
        return Decision.PAUSE if decision is Decision.CONTINUE and step < last else decision


def make_fidelity(fidelity: str, scheduler: Scheduler | None) -> EpochFidelity:
    """The policy for ``Study(fidelity=...)``; data fidelity needs a ``RungScheduler``."""
    if fidelity == "epochs":
        return EpochFidelity()
    if fidelity != "data":
        raise ValueError(f"fidelity must be 'epochs' or 'data', got {fidelity!r}")
    if not isinstance(scheduler, RungScheduler):
        raise ValueError("fidelity='data' needs a rung scheduler: scheduler='sha', 'hyperband' or 'asha' "
                         f"(got {type(scheduler).__name__})")
    return DataFidelity(scheduler)
