"""The study's trials as searchers and schedulers see them: a list of records that also logs what changed.

``History`` is the ``peers`` / ``trials`` sequence the study passes to its searcher and scheduler: a plain list of
``TrialRecord`` (indexable by trial number) plus a change log, so that a component can keep an index of the
trials (a scheduler's rung rankings) and update it with only the records that changed since it last looked,
instead of rescanning every trial at every report. The study logs every change it makes or learns of (a new
trial, a report, a status, a trial written by another driver).
"""

from __future__ import annotations

from collections.abc import Iterable

from torchhpo.trial import TrialRecord

__all__ = ["History"]


class History(list[TrialRecord]):
    """The study's records, in order of trial number, with a log of changed trial numbers.

    Example:
        >>> from torchhpo.trial import TrialRecord
        >>> h = History([TrialRecord(0, {"x": 1.0})])
        >>> seen = h.version
        >>> h.append(TrialRecord(1, {"x": 2.0}))
        >>> h[0].reports[1] = 0.5; h.touch(0)
        >>> h.changed_since(seen)
        [1, 0]
    """

    def __init__(self, records: Iterable[TrialRecord] = ()) -> None:
        super().__init__(records)
        self._log: list[int] = [r.number for r in self]
        self.token = object()  # tells one history from another (a cursor is only valid on the history it came from)

    def append(self, record: TrialRecord) -> None:
        super().append(record)
        self._log.append(record.number)

    def touch(self, number: int) -> None:
        """Log that trial ``number``'s record changed (a report, its status or attrs)."""
        self._log.append(number)

    @property
    def version(self) -> int:
        """How many changes were logged so far: a cursor for ``changed_since``."""
        return len(self._log)

    def changed_since(self, version: int) -> list[int]:
        """Numbers of the trials that were added or changed after ``version`` (repeats possible), oldest first."""
        return self._log[version:]
