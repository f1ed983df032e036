"""A study's checkpoint folder: where ``trial.save`` writes, what ``study.checkpoint`` reads, what is kept.

A SQLite study keeps its checkpoints beside its file (``runs/x.db.ckpt/<study name>/trial-<n>.pt``), so that a
re-opened study resumes its paused trials; a study in memory keeps them in a temporary folder that goes with it.
``keep_checkpoints`` bounds the disk a long study uses: ended trials other than the best completed ones lose
theirs; paused and running trials always keep theirs (they may resume).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from torchhpo.storage import SQLiteStorage, Storage
from torchhpo.trial import checkpoint_file, read_checkpoint

__all__ = ["Checkpoints"]


class Checkpoints:
    """The checkpoints of study ``name`` in ``storage``'s folder (a temporary one for a study in memory)."""

    def __init__(self, storage: Storage, name: str) -> None:
        if isinstance(storage, SQLiteStorage):
            self.directory = storage.path.with_name(storage.path.name + ".ckpt") / name
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="torchhpo-")
            self.directory = Path(self._tmp.name) / "checkpoints"  # made by the first trial.save

    def read(self, number: int) -> Any:
        """The state trial ``number`` last saved, or ``None`` when there is none (or it was dropped)."""
        saved = read_checkpoint(checkpoint_file(self.directory, number))
        return None if saved is None else saved["state"]

    def forget(self, number: int) -> None:
        """Delete trial ``number``'s checkpoint (it restarts from scratch)."""
        checkpoint_file(self.directory, number).unlink(missing_ok=True)

    def drop(self, keep: Collection[int], ended: Callable[[int], bool]) -> None:
        """Delete the checkpoints of the trials that ``ended`` says have ended, except those in ``keep``."""
        if not os.path.isdir(self.directory):  # no trial has saved yet
            return
        stems = (n.removesuffix(".pt").removeprefix("trial-") for n in os.listdir(self.directory))
        for number in (int(k) for k in stems if k.isdigit()):
            if number not in keep and ended(number):
                self.forget(number)
