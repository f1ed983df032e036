"""How a study runs, stored with it: its searcher and scheduler by class and arguments, and its budgets.

``Study.load`` rebuilds them from the file, so a re-opened study goes on as it was run. Only torchhpo's own
classes are rebuilt (a stored description never imports arbitrary code); a user's plugin is recorded by name,
and ``Study.load`` asks for it again.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import logging
import sys
from pathlib import Path
from typing import Any

from torchhpo.space import Space
from torchhpo.storage import SQLiteStorage

__all__ = ["Described", "describe", "rebuild", "reseeded", "stored_study"]

log = logging.getLogger("torchhpo")


class Described:
    """Base of torchhpo's searchers and schedulers: remembers the arguments each instance was built with, so
    that a study can store it by class and arguments (``describe``) and ``Study.load`` can build it again."""

    _arguments: dict[str, Any] | None

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        obj = super().__new__(cls)
        try:
            bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)
        except TypeError:  # wrong arguments: __init__ says so
            obj._arguments = None
        else:
            bound.apply_defaults()
            obj._arguments = {k: v for k, v in list(bound.arguments.items())[1:]}
        return obj


def _plain(value: Any) -> Any:
    """``value`` as JSON, dataclasses (e.g. ``GPOptions``) tagged with their class; raises TypeError otherwise."""
    if isinstance(value, Described):
        described = describe(value)
        if described is None or described["args"] is None:
            raise TypeError(f"{type(value).__name__} cannot be described")
        return {"__object__": described}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__dataclass__": _name(type(value)), "fields": {f.name: _plain(getattr(value, f.name))
                                                                 for f in dataclasses.fields(value)}}
    json.dumps(value)  # TypeError for what JSON cannot hold
    return value


def _name(cls: type) -> str:
    """``module:Name`` by the shortest module under the top package that exports ``cls``
    (``torchhpo.schedulers:ASHA`` rather than ``torchhpo.schedulers.rungs:ASHA``), so that stored names do not
    depend on the file a class is defined in."""
    parts = cls.__module__.split(".")
    for i in range(2, len(parts)):
        module = sys.modules.get(".".join(parts[:i]))
        if module is not None and getattr(module, cls.__qualname__, None) is cls:
            return f"{module.__name__}:{cls.__qualname__}"
    return f"{cls.__module__}:{cls.__qualname__}"


def describe(obj: Any) -> dict[str, Any] | None:
    """``{"class": "module:Name", "args": {...} | None}`` for a searcher or scheduler; ``args`` is ``None`` when
    they cannot be read back or stored (a user's class, an argument that is an object)."""
    if obj is None:
        return None
    cls, given = type(obj), getattr(obj, "_arguments", None)
    if cls.__module__.startswith("torchhpo."):  # a private variant (``Schedulers``' own) goes by its public class,
        cls = next(c for c in cls.__mro__ if not c.__name__.startswith("_"))  # which builds the variant again
    if given is None or not cls.__module__.startswith("torchhpo."):  # not one of ours: stored by name only
        return {"class": _name(cls), "args": None}
    try:  # a Described: exactly what it was built with
        args = {k: _plain(v) for k, v in given.items()}
    except TypeError:
        return {"class": _name(cls), "args": None}
    if "seed" in args and isinstance(getattr(obj, "seed", None), int):
        args["seed"] = obj.seed  # the seed it drew when given none: the rebuilt one proposes the same
    return {"class": _name(cls), "args": args}


def _load(value: Any) -> Any:
    if isinstance(value, dict) and "__object__" in value:
        return rebuild(value["__object__"])
    if isinstance(value, list):
        return [_load(v) for v in value]
    if isinstance(value, dict) and "__dataclass__" in value:
        return _class(value["__dataclass__"], dataclass=True)(**{k: _load(v) for k, v in value["fields"].items()})
    return value


def _class(name: str, *, dataclass: bool = False) -> Any:
    """The class ``name`` names, if it is one that may be built from a file: a ``Described`` searcher or
    scheduler of torchhpo's, or (``dataclass``) one of its options dataclasses. Nothing else is imported or
    called, whatever a file says."""
    module, _, qualname = name.partition(":")
    if not module.startswith("torchhpo.") or not qualname.isidentifier():
        raise ValueError(f"{name} is not a torchhpo class; only torchhpo's own classes are rebuilt from a file")
    cls = getattr(importlib.import_module(module), qualname, None)
    allowed = (dataclasses.is_dataclass(cls) and isinstance(cls, type)) if dataclass else \
        (isinstance(cls, type) and issubclass(cls, Described))
    if not allowed:
        raise ValueError(f"{name} is not a torchhpo searcher, scheduler or options class; it is not rebuilt")
    return cls


def reseeded(description: dict[str, Any], seed: int | None) -> dict[str, Any]:
    """``description`` with every ``seed`` argument (nested ones too) set to ``seed``."""
    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            out = {k: walk(v) for k, v in value.items()}
            if isinstance(out.get("args"), dict) and "seed" in out["args"]:
                out["args"]["seed"] = seed
            return out
        return [walk(v) for v in value] if isinstance(value, list) else value
    return walk(description)


def rebuild(description: dict[str, Any] | None) -> Any:
    """The object ``describe`` described, or ``None`` for ``None``.

    Raises:
        ValueError: it cannot be rebuilt (a user's class, or arguments that were not stored): pass it again.
    """
    if description is None:
        return None
    if description.get("args") is None:
        raise ValueError(f"{description['class']} was stored by name only (its arguments could not be); pass it again")
    return _class(description["class"])(**{k: _load(v) for k, v in description["args"].items()})


def stored_study(path: str | Path, name: str | None, readonly: bool,
                 kwargs: dict[str, Any]) -> tuple[Space, str, str, dict[str, Any]]:
    """What ``Study.load`` needs to re-open study ``name`` of the file ``path`` as it was run: its space, mode,
    name, and ``kwargs`` completed with the stored searcher, scheduler and budgets (those given win; a new
    ``seed`` re-seeds the stored searcher and scheduler). Reads the file and writes nothing."""
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such study file; check the path or create it with Study(storage=...)")
    peek = SQLiteStorage(path, readonly=True)  # reads what the file holds; the study opens its own handle
    try:
        found = {n: (s, m) for n, s, m in peek.studies()}
        if name is None:
            if len(found) != 1:
                raise ValueError(f"{path} holds studies {sorted(found)}; choose one with name=")
            name = next(iter(found))
        if name not in found:
            raise ValueError(f"{path} has no study '{name}'; it has {sorted(found)}")
        space, mode = found[name]
        peek.open(name, space, mode)
        stored = peek.settings() or {}
    finally:
        peek.close()
    kwargs = dict(kwargs)
    for key in ("max_epochs", "fidelity", "keep_checkpoints"):
        if key in stored:
            kwargs.setdefault(key, stored[key])
    new_seed = "seed" in kwargs and kwargs["seed"] != stored.get("seed")
    seed = kwargs.setdefault("seed", stored.get("seed"))
    for key in ("searcher", "scheduler"):
        if key not in kwargs and stored.get(key) is not None and not readonly:  # looking needs neither
            description = reseeded(stored[key], seed) if new_seed else stored[key]  # this driver's own seed
            try:
                kwargs[key] = rebuild(description)
            except (ValueError, ImportError, AttributeError, TypeError) as e:
                log.warning("%s: the study's %s (%s) cannot be rebuilt (%s); pass %s= to Study.load",
                            path, key, stored[key]["class"], e, key)
    return space, mode, name, kwargs
