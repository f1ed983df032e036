"""Stopping rules that look at learning curves without rungs: the median rule and patience (early stopping)."""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections.abc import Sequence

from torchhpo.checks import integer, number
from torchhpo.schedulers.base import _Cached, _Key, _reindex
from torchhpo.settings import Described
from torchhpo.trial import Decision, Status, TrialRecord

__all__ = ["MedianStopping", "Patience"]


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
