"""Trials: the live handle a training function receives, and the record the study keeps.

``Trial`` is what ``train(config, trial)`` sees: ``config``, ``device``, ``fidelity``, ``epochs()``, ``report()``,
``save()`` / ``load()``. ``TrialRecord`` is what searchers, schedulers and storage see: config, status, value and
the reported learning curve. Steps count units of fidelity consumed: a report after the first epoch is step 1.
"""

from __future__ import annotations

import collections
import enum
import json
import math
import operator
import os
import pickle
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchhpo.space import Config

__all__ = ["Decision", "ReportFailed", "Status", "Trial", "TrainingDiverged", "TrialPaused", "TrialPruned", "TrialRecord",
           "unusable_value"]


class Status(enum.Enum):
    """Where a trial stands."""

    RUNNING = "running"
    COMPLETED = "completed"
    PRUNED = "pruned"
    FAILED = "failed"
    PAUSED = "paused"  # waiting at a rung for its peers; the scheduler resumes it (from its checkpoint) or prunes it

    @property
    def is_final(self) -> bool:
        """COMPLETED, PRUNED or FAILED: the trial has ended and will not change (PAUSED ones may resume)."""
        return self in (Status.COMPLETED, Status.PRUNED, Status.FAILED)

    @property
    def finished(self) -> bool:
        """The former name of ``is_final`` (kept working; ``TrialRecord.finished`` is a timestamp)."""
        return self.is_final


class Decision(enum.Enum):
    """A scheduler's answer to a report."""

    CONTINUE = "continue"
    STOP = "stop"  # prune it: ``trial.report`` raises ``TrialPruned``
    PAUSE = "pause"  # wait at this rung; the study resumes the trial later with the same number and record
    COMPLETE = "complete"  # it has converged (early stopping): ``trial.epochs()`` ends, the function returns


class TrialPruned(Exception):
    """Raised by ``trial.report`` when the scheduler stops the trial. Control flow, not an error: let it propagate."""


class TrainingDiverged(ValueError):
    """Raised by ``trial.report`` for a NaN or infinite value; the trial then FAILS (the study goes on)."""


class ReportFailed(RuntimeError):
    """Raised by ``trial.report`` when the driver could not handle the report (its storage or scheduler raised);
    the message names the driver's error. The trial then FAILS with that reason, even if the training function
    catches this exception, and the study goes on."""


class TrialPaused(Exception):
    """Raised by ``trial.report`` when the scheduler pauses the trial at a rung. Control flow: let it propagate.

    Save a checkpoint (``trial.save``) before ``report`` so that the resumed trial goes on from there.
    """


@dataclass
class TrialRecord:
    """One trial as the study keeps it.

    ``value`` and ``reports`` are in the user's sign (``mode``); ``score`` and ``scores`` are the same numbers
    turned so that larger is better, which is what every searcher and scheduler reads.
    """

    number: int
    config: Config
    status: Status = Status.RUNNING
    value: float | None = None
    reports: dict[int, float] = field(default_factory=dict)
    reason: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    sign: int = 1

    @property
    def score(self) -> float | None:
        """``value`` turned to maximize (``None`` while unknown)."""
        return None if self.value is None else self.as_score(self.value)

    @property
    def scores(self) -> dict[int, float]:
        """``reports`` turned to maximize: step -> score."""
        return {s: self.as_score(v) for s, v in self.reports.items()}

    def score_at(self, step: int) -> float:
        """The report at ``step`` turned to maximize (``KeyError`` when there is none); O(1), unlike ``scores``."""
        return self.as_score(self.reports[step])

    def as_score(self, value: float) -> float:
        """A value in the study's sign turned to maximize: the one place the mode's sign is applied."""
        return self.sign * value

    def copy(self) -> TrialRecord:
        """A copy whose config, reports and attrs can change without touching this record."""
        return TrialRecord(self.number, dict(self.config), self.status, self.value, dict(self.reports), self.reason,
                           self.started, self.finished, dict(self.attrs), self.sign)

    @property
    def user_attrs(self) -> dict[str, Any]:
        """What the training function stored with ``trial.set_attr`` (kept in ``attrs["user"]``)."""
        return self.attrs.get("user", {})

    @property
    def duration(self) -> float | None:
        return None if self.finished is None else self.finished - self.started


Reporter = Callable[[int, int, float], Decision]


class Trial:
    """The live handle of one trial, passed to the training function.

    Args:
        number: the trial's number in its study.
        config: the hyperparameters to try.
        device: where to train (``torch.device``); ``"cpu"`` unless an executor assigned a GPU.
        max_epochs: the epoch budget ``epochs()`` iterates over (the scheduler may lower it).
        fidelity: fraction of the training data to use, in (0, 1] (1 unless the fidelity is data).
        checkpoint_dir: where ``save`` / ``load`` keep this trial's state.
        reporter: ``(number, step, value) -> Decision``, wired by the executor; ``None`` runs standalone.

    Example:
        >>> t = Trial(0, {"lr": 0.1}, max_epochs=3)
        >>> for epoch in t.epochs():
        ...     t.report(1.0 / (epoch + 1))
        >>> t.last_step
        3
    """

    def __init__(self, number: int, config: Config, *, device: str | torch.device = "cpu",
                 max_epochs: int | None = None, fidelity: float = 1.0, checkpoint_dir: str | Path | None = None,
                 reporter: Reporter | None = None) -> None:
        self.number = number
        self.config = config
        self.device = torch.device(device)
        self.max_epochs = max_epochs
        self.fidelity = fidelity
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.reporter = reporter
        self.last_step = 0
        self.pruned = False
        self.converged = False  # the scheduler answered COMPLETE: epochs() ends, the trial completes
        self.resumed = False  # True when the study resumed this trial from PAUSED (its checkpoint has the state)
        self.user_attrs: dict[str, Any] = {}  # set_attr's, sent to the study with the trial's outcome
        self._epoch: int | None = None

    def __getstate__(self) -> dict[str, Any]:  # the reporter is wired again where the trial runs
        state = dict(self.__dict__)
        state["reporter"] = None
        return state

    def __repr__(self) -> str:
        return f"Trial(number={self.number}, config={self.config}, device={self.device})"

    # --- epochs and reports ---------------------------------------------------------------------------------------
    def epochs(self, max_epochs: int | None = None) -> Iterator[int]:
        """Yield epoch indices 0, 1, 2, ... up to ``max_epochs`` (or the trial's budget).

        After a resume the loop continues from the epoch after the last ``save``. It ends early once the
        trial is pruned (``report`` raises ``TrialPruned`` inside the loop), or after the epoch whose report the
        scheduler answered ``Decision.COMPLETE`` (early stopping at a plateau: the function then returns as usual).
        """
        stop = self.max_epochs if max_epochs is None else max_epochs
        if stop is None:
            raise ValueError("epochs(): no epoch budget; pass max_epochs here, to @tune(max_epochs=...) or to the Study")
        stop = _as_budget(stop)
        if self.max_epochs is not None:
            stop = min(stop, _as_budget(self.max_epochs))
        saved = self._checkpoint()
        start = saved["epoch"] + 1 if saved is not None and saved["epoch"] is not None else 0
        self.last_step = max(self.last_step, start)
        for epoch in range(start, stop):
            if self.pruned or self.converged:
                return
            self._epoch = epoch
            yield epoch

    def report(self, value: float, step: int | None = None) -> None:
        """Report an intermediate value (e.g. validation loss after an epoch).

        Args:
            value: the metric, in the study's sign.
            step: units of fidelity consumed so far; defaults to the epochs done (epoch index + 1 inside
                ``epochs()``), else one more than the last step.

        Raises:
            TrialPruned: the scheduler stopped the trial; let it propagate out of the training function.
            TrialPaused: the scheduler paused the trial at a rung; let it propagate (it is resumed later).
            TrainingDiverged: the value is NaN or infinite (a ``ValueError``; the trial is then marked FAILED).
            TypeError: ``value`` is not a number (a str, a bool, a tensor of several elements) or ``step`` is not
                an int (numpy and 0-d torch integers are ints).
            ValueError: ``step`` < 1.
        """
        value = _as_value(value)
        if step is None:
            step = self._epoch + 1 if self._epoch is not None else self.last_step + 1
        step = _as_step(step)
        why = unusable_value(value)
        if why is not None:
            raise TrainingDiverged(f"trial {self.number} reported {value} at step {step}: {why}")
        self.last_step = step
        decision = Decision.CONTINUE if self.reporter is None else self.reporter(self.number, step, value)
        if decision is Decision.STOP:
            self.pruned = True
            raise TrialPruned(f"trial {self.number} pruned at step {step}")
        if decision is Decision.PAUSE:
            raise TrialPaused(f"trial {self.number} paused at step {step}")
        if decision is Decision.COMPLETE:
            self.converged = True

    def set_attr(self, key: str, value: Any) -> None:
        """Store ``value`` with the trial's record under ``key``: what you log beside the metric (test accuracy,
        parameter count, seconds per epoch). JSON values only (numbers, strings, bools, None, lists, dicts); the
        study keeps them in ``record.user_attrs`` (SQLite too) when the trial ends, and ``torchhpo show`` lists
        them.

        Raises:
            TypeError: ``key`` is not a str, or ``value`` cannot be stored as JSON.
        """
        if not isinstance(key, str) or not key:
            raise TypeError(f"trial.set_attr: key must be a non-empty str, got {key!r}")
        try:
            value = json.loads(json.dumps(value, allow_nan=False))
        except (TypeError, ValueError) as e:
            raise TypeError(f"trial.set_attr({key!r}, ...): the value must be JSON (numbers, strings, bools, None, "
                            f"lists, dicts; finite floats), got {type(value).__name__}: {e}; convert it first, "
                            "e.g. float(tensor) or array.tolist()") from e
        self.user_attrs[key] = value

    # --- checkpoints ------------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.checkpoint_dir is None else checkpoint_file(self.checkpoint_dir, self.number)

    def save(self, state: Any) -> None:
        """Checkpoint ``state`` with the current epoch, so a resumed trial goes on from there.

        ``state`` may hold tensors (a ``state_dict()``), dicts, lists, tuples, sets, ``None``, bool, int, float,
        complex, str, bytes, ``torch.dtype`` / ``device`` / ``Size``, and numpy arrays and scalars of bool or
        numeric dtype: the random states ``random.getstate()``, ``np.random.get_state()``,
        ``np.random.default_rng().bit_generator.state`` and ``torch.get_rng_state()`` all fit. ``load`` gives
        them back with their types (a numpy array as a numpy array of its dtype) without unpickling code.

        Raises:
            TypeError: a value is of another type (its path in ``state`` is named); nothing is written then and
                the previous checkpoint stays.
        """
        path = self.checkpoint_path
        if path is None:
            raise RuntimeError("trial.save: this trial has no checkpoint_dir; run it through a Study")
        write_checkpoint(path, self._epoch, state)

    def load(self) -> Any:
        """The state last passed to ``save``, or ``None`` when there is none. Tensors load on the CPU."""
        saved = self._checkpoint()
        return None if saved is None else saved["state"]

    def _checkpoint(self) -> dict[str, Any] | None:
        return None if self.checkpoint_path is None else read_checkpoint(self.checkpoint_path)


def unusable_value(value: float) -> str | None:
    """Why ``value`` cannot be a trial's metric, or ``None`` when it can: the one rule for every way a value
    arrives (``trial.report``, a training function's return, ``Study.tell``, a tabulated curve). A NaN or an
    infinity cannot (no searcher can rank it: the training diverged), and fails its trial; the caller names the
    value, e.g. ``f"trial 3 reported {value} at step 2: {why}"``."""
    return None if math.isfinite(value) else "the training diverged"


def _as_value(value: Any) -> float:
    """A reported value as a float: numbers, numpy scalars and one-element tensors; not str, bytes or bool."""
    if not isinstance(value, (str, bytes, bytearray, bool, np.bool_)):
        try:
            return float(value)
        except (TypeError, ValueError, RuntimeError):
            pass
    raise TypeError(f"trial.report: value must be a number, got {_type_name(value)} {value!r}; report the metric "
                    "as a float (e.g. loss.item()), a numpy or a 0-d torch scalar")


def _as_step(step: Any) -> int:
    """A reported step as an int >= 1: ints, numpy ints and 0-d integer tensors; not bool, float or str."""
    is_bool = isinstance(step, (bool, np.bool_)) or (isinstance(step, torch.Tensor) and step.dtype == torch.bool)
    try:
        index = None if is_bool else operator.index(step)
    except TypeError:
        index = None
    if index is None:
        raise TypeError(f"trial.report: step must be an int >= 1, got {_type_name(step)} {step!r}; pass the units "
                        "of fidelity done so far, e.g. step=epoch + 1, or leave it out")
    if index < 1:
        raise ValueError(f"trial.report: step must be an int >= 1, got {index}; steps count units of fidelity done, "
                         "so the report after the first epoch is step 1")
    return index


def _as_budget(max_epochs: Any) -> int:
    """An epoch budget as an int >= 0 (numpy ints are ints; bool, float and str are refused)."""
    try:
        budget = None if isinstance(max_epochs, (bool, np.bool_)) else operator.index(max_epochs)
    except TypeError:
        budget = None
    if budget is None:
        raise TypeError(f"epochs(): max_epochs must be an int >= 0, got {max_epochs!r}; pass a whole number of "
                        "epochs")
    if budget < 0:
        raise ValueError(f"epochs(): max_epochs must be an int >= 0, got {budget}")
    return budget


def checkpoint_file(directory: Path, number: int) -> Path:
    """Where trial ``number`` of a study whose checkpoint folder is ``directory`` keeps its checkpoint."""
    return directory / f"trial-{number}.pt"


def write_checkpoint(path: Path, epoch: int | None, state: Any) -> None:
    """Write ``{"epoch": ..., "state": ...}`` atomically, refusing (``TypeError``) what ``read_checkpoint`` would."""
    saved = {"epoch": epoch, "state": _Encoder()(state, "state"), "format": CHECKPOINT_FORMAT}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    try:
        torch.save(saved, tmp)
        try:  # the same safe loader as read_checkpoint; mmap reads the structure, not the tensors' bytes
            torch.load(tmp, map_location="cpu", weights_only=True, mmap=True)
        except pickle.UnpicklingError as e:
            raise TypeError(f"trial.save: the state would not load back without unpickling code ({e}); "
                            f"keep only {ALLOWED}") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)  # atomic: a crash mid-save keeps the previous checkpoint


def read_checkpoint(path: Path) -> dict[str, Any] | None:
    """``{"epoch": ..., "state": ...}`` as ``Trial.save`` wrote it, or ``None`` when there is none (on the CPU).

    Loads with ``weights_only=True``: a file that would need to unpickle anything else (code, arbitrary
    classes) is refused with ``pickle.UnpicklingError``.
    """
    if not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise pickle.UnpicklingError(
            f"{path}: refused; it holds objects that only a full unpickle (which can run code) would rebuild, so "
            f"trial.save did not write it. Delete the file to start the trial afresh. ({e})") from e
    if type(saved) is not dict or "state" not in saved or not (saved.get("epoch") is None
                                                                or type(saved.get("epoch")) is int):
        raise ValueError(f"{path}: not a trial checkpoint ({{'epoch': int | None, 'state': ...}} as trial.save "
                         f"writes it); got {type(saved).__name__}. Delete it or move it out of the checkpoint folder")
    version = saved.get("format", 1)
    if version not in (1, CHECKPOINT_FORMAT):
        raise ValueError(f"{path}: checkpoint format {version!r}; this torchhpo reads formats 1 and "
                         f"{CHECKPOINT_FORMAT}: upgrade torchhpo")
    if version == CHECKPOINT_FORMAT:
        saved["state"] = _Decoder(path)(saved["state"], "state")
    return {"epoch": saved["epoch"], "state": saved["state"]}


# --- what a checkpoint holds --------------------------------------------------------------------------------------
# torch.load(weights_only=True) rebuilds tensors, the containers and the scalars below, and nothing that needs
# code. numpy values would need numpy's reconstructors, so trial.save turns each into a tagged dict of plain
# values (dtype string, shape, raw bytes as a uint8 tensor) and read_checkpoint turns it back.
CHECKPOINT_FORMAT = 2  # 1: no numpy values (files from before they were supported)
NUMPY_TAG = "__torchhpo_numpy__"
ALLOWED = ("tensors, dict, OrderedDict, list, tuple, set, None, bool, int, float, complex, str, bytes, "
           "torch.dtype/device/Size, and numpy arrays and scalars of bool or numeric dtype")
_ATOMS = (type(None), bool, int, float, complex, str, bytes, bytearray, torch.dtype, torch.device, torch.Size)
_KEYS = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device)
_NUMERIC = "biufc"  # numpy dtype kinds kept: bool, signed and unsigned int, float, complex


def _type_name(x: Any) -> str:
    t = type(x)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _refuse(path: str, x: Any, why: str = "") -> TypeError:
    what = why or f"is a {_type_name(x)}"
    return TypeError(f"trial.save: {path} {what}; a checkpoint holds only {ALLOWED}, so that trial.load can read "
                     "it back without unpickling code. Convert it (to a tensor, a number, or a dict of its fields, "
                     "e.g. its state_dict()) or keep it out of the checkpoint. Nothing was written")


class _Encoder:
    """``state`` -> the same state with numpy values as tagged dicts; ``TypeError`` names the first value that
    ``torch.load(weights_only=True)`` would refuse. Containers without numpy values are kept as they are."""

    def __init__(self) -> None:
        self.done: dict[int, Any] = {}  # id -> encoded, so shared values stay shared
        self.open: set[int] = set()

    def __call__(self, x: Any, path: str) -> Any:
        t = type(x)
        if t in _ATOMS:
            return x
        if t is np.ndarray or isinstance(x, (np.ndarray, np.generic)):
            return self._numpy(x, path)
        if t in (torch.Tensor, torch.nn.Parameter):
            self._attrs(x, path)
            return x
        if t not in (dict, collections.OrderedDict, list, tuple, set):
            raise _refuse(path, x)
        key = id(x)
        if key in self.done:
            return self.done[key]
        if key in self.open:
            raise TypeError(f"trial.save: {path} contains itself (a cycle); a checkpoint holds a tree of values, "
                            "so break the cycle. Nothing was written")
        self.open.add(key)
        out = self._container(x, path)
        self.open.discard(key)
        self.done[key] = out
        return out

    def _container(self, x: Any, path: str) -> Any:
        if isinstance(x, set):
            for v in x:
                self._key(v, f"element {v!r} of {path}")
            return x
        if isinstance(x, dict):
            if NUMPY_TAG in x:
                raise ValueError(f"trial.save: {path} has the key {NUMPY_TAG!r}, reserved for the numpy values of a "
                                 "checkpoint; rename it. Nothing was written")
            for k in x:
                self._key(k, f"key {k!r} of {path}")
            items = {k: self(v, f"{path}[{k!r}]") for k, v in x.items()}
            if all(items[k] is v for k, v in x.items()):
                self._attrs(x, path)
                return x
            out = type(x)(items)
            for name, v in self._attrs(x, path).items():  # an OrderedDict's, e.g. a state_dict's _metadata
                setattr(out, name, v)
            return out
        elements = [self(v, f"{path}[{i}]") for i, v in enumerate(x)]
        return x if all(a is b for a, b in zip(elements, x, strict=True)) else type(x)(elements)

    def _attrs(self, x: Any, path: str) -> dict[str, Any]:
        """The attributes that torch pickles with a tensor or an OrderedDict (a state_dict's ``_metadata``)."""
        attrs = getattr(x, "__dict__", {})
        for name, v in attrs.items():
            if self(v, f"{path}.{name}") is not v:
                raise _refuse(f"{path}.{name}", v, f"is a {_type_name(v)} in an attribute, where numpy values are "
                              "not converted")
        return dict(attrs)

    def _key(self, k: Any, where: str) -> None:
        if type(k) is tuple:
            for v in k:
                self._key(v, where)
        elif type(k) not in _KEYS:
            raise _refuse(where, k, f"is a {_type_name(k)}" + (" (use int(k) or float(k))" if
                                                                isinstance(k, np.generic) else ""))

    def _numpy(self, x: Any, path: str) -> dict[str, Any]:
        if type(x) is not np.ndarray and not isinstance(x, np.generic):
            raise _refuse(path, x, f"is a {_type_name(x)}, a subclass of numpy.ndarray (use np.asarray(x))")
        key = id(x)
        if key in self.done:
            return self.done[key]
        arr = np.asarray(x)
        if arr.dtype.kind not in _NUMERIC:
            raise _refuse(path, x, f"is a {_type_name(x)} of dtype {arr.dtype}")
        flat = np.ascontiguousarray(arr).reshape(-1)
        if not flat.flags.writeable:  # torch.from_numpy warns on read-only memory
            flat = flat.copy()
        out = {NUMPY_TAG: "ndarray" if type(x) is np.ndarray else "scalar", "dtype": arr.dtype.str,
               "shape": list(arr.shape), "data": torch.from_numpy(flat.view(np.uint8))}
        self.done[key] = out
        return out


class _Decoder:
    """The inverse of ``_Encoder`` on what ``torch.load(weights_only=True)`` gave back (changed in place)."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.done: dict[int, Any] = {}
        self.open: set[int] = set()

    def __call__(self, x: Any, path: str) -> Any:
        t = type(x)
        if t not in (dict, collections.OrderedDict, list, tuple):
            return x
        key = id(x)
        if key in self.done:
            return self.done[key]
        if key in self.open:
            raise ValueError(f"{self.file}: {path} contains itself; trial.save does not write cycles. Delete the file")
        self.open.add(key)
        out: Any
        if t is dict and NUMPY_TAG in x:
            out = self._numpy(x, path)
        elif t is tuple:
            out = tuple(self(v, f"{path}[{i}]") for i, v in enumerate(x))
        else:
            out = x
            for k in list(x) if isinstance(x, dict) else range(len(x)):
                x[k] = self(x[k], f"{path}[{k!r}]")
        self.open.discard(key)
        self.done[key] = out
        return out

    def _numpy(self, x: dict[str, Any], path: str) -> np.ndarray | np.generic:
        kind, shape, data = x.get(NUMPY_TAG), x.get("shape"), x.get("data")
        try:
            dtype = np.dtype(x.get("dtype")) if isinstance(x.get("dtype"), str) else None
        except TypeError:
            dtype = None
        ok = (set(x) == {NUMPY_TAG, "dtype", "shape", "data"} and kind in ("ndarray", "scalar")
              and dtype is not None and dtype.kind in _NUMERIC and type(shape) is list
              and all(type(n) is int and n >= 0 for n in shape) and (kind == "ndarray" or shape == [])
              and type(data) is torch.Tensor and data.dtype == torch.uint8 and data.dim() == 1
              and data.numel() == math.prod(shape) * dtype.itemsize)
        if not ok or dtype is None or not isinstance(data, torch.Tensor):
            raise ValueError(f"{self.file}: {path} is not a numpy value as trial.save writes it (the file is damaged "
                             "or was not written by trial.save); delete the file to start the trial afresh")
        arr = data.numpy().view(dtype).reshape(shape)
        return arr[()] if kind == "scalar" else arr
