"""Search spaces: typed parameters and their map to and from the unit cube.

Users see plain dicts (``{"lr": 3e-4, "layers": 2}``); every algorithm sees ``space.encode(configs)``, an
``n x d`` tensor in [0, 1]. Log scales, integer rounding and categorical mapping live here alone.

Each parameter owns one column. A column is cut into equal cells for integers and choices (the cell's centre
encodes the value), so a uniform draw in [0, 1] is a uniform draw over the values, ``decode`` is a floor, and
``decode(encode(c)) == c`` for every valid config.

Example:
    >>> space = Space({"lr": Float(1e-4, 1e-1, log=True), "layers": Int(1, 4), "act": Choice(["relu", "tanh"])})
    >>> X = space.encode([{"lr": 1e-3, "layers": 2, "act": "tanh"}])
    >>> space.decode(X)[0]["act"]
    'tanh'
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.stats import qmc

from torchhpo.checks import integer, number

Config = dict[str, Any]

__all__ = ["INACTIVE", "Choice", "Config", "Float", "Int", "Space"]


def _number(kind: str, name: str, what: str, value: Any) -> float:
    return float(number(f"{kind} '{name}': {what}", value, low=-math.inf))


def _type_name(x: Any) -> str:
    t = type(x)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _is_real(value: Any) -> bool:
    """A real number as a config holds it: int, float, numpy ints and floats; not bool."""
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, float, np.integer, np.floating))


Conditions = Any  # None, or the normalised ``when``: ((parent, (value, ...)), ...)

INACTIVE = 0.5
"""The encoded value of an inactive parameter's column: every inactive config sits at the same point of that column
(they are the same config there), and the centre is, on average, nearest to the active values."""


def _conditions(when: Any) -> tuple[tuple[str, tuple[Any, ...]], ...] | None:
    """``when={"layers": [3, 4], "opt": "sgd"}`` as ``(("layers", (3, 4)), ("opt", ("sgd",)))``: hashable and
    ordered like the user wrote it; a single value stands for a list of one."""
    if when is None:
        return None
    if isinstance(when, tuple) and all(isinstance(c, tuple) and len(c) == 2 for c in when):
        when = dict(when)  # already normalised (a copy, a pickle)
    if not isinstance(when, Mapping) or not when:
        raise TypeError(f"when must be a non-empty dict of parent name -> value or list of values, got {when!r}")
    return tuple((str(k), tuple(v) if isinstance(v, (list, tuple)) else (v,)) for k, v in when.items())


@dataclass(frozen=True)
class Float:
    """A real parameter in ``[low, high]``, on a log scale when ``log=True`` (then ``low > 0``); ``when`` makes it
    conditional (see ``Space``)."""

    low: float
    high: float
    log: bool = False
    when: Conditions = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "when", _conditions(self.when))

    def _check(self, name: str) -> None:
        low, high = _number("Float", name, "low", self.low), _number("Float", name, "high", self.high)
        if low >= high:
            raise ValueError(f"Float '{name}': low={self.low} must be < high={self.high}; swap them or widen the range")
        if self.log and low <= 0:
            raise ValueError(f"Float '{name}': low={self.low} must be > 0 when log=True; use a positive low or log=False")

    def _span(self) -> tuple[float, float]:
        return (math.log(self.low), math.log(self.high)) if self.log else (float(self.low), float(self.high))

    def to_unit(self, value: Any) -> float:
        a, b = self._span()
        x = math.log(value) if self.log else float(value)
        if math.isinf(b - a):  # a finite range wider than the largest double, e.g. (-1e308, 1e308): work in halves
            return (x / 2 - a / 2) / (b / 2 - a / 2)
        return (x - a) / (b - a)

    def from_unit(self, u: float) -> float:
        a, b = self._span()
        u = min(max(u, 0.0), 1.0)
        x = a * (1.0 - u) + b * u if math.isinf(b - a) else a + u * (b - a)  # the first cannot overflow
        return float(min(max(math.exp(x) if self.log else x, self.low), self.high))

    def contains(self, value: Any) -> bool:
        return _is_real(value) and self.low <= value <= self.high

    def validate(self, name: str, value: Any) -> float:
        """``value`` as a config holds it (a float); ``TypeError`` / ``ValueError`` say what is wrong."""
        if not _is_real(value):
            raise TypeError(f"Float '{name}': expected a number, got {_type_name(value)} {value!r}")
        if not self.low <= value <= self.high:
            raise ValueError(f"Float '{name}': {value} is outside [{self.low}, {self.high}]; pick a value in the "
                             "range or widen it")
        return float(value)

    def points(self, k: int) -> list[float]:
        return [self.from_unit(u) for u in np.linspace(0.0, 1.0, k)]


@dataclass(frozen=True)
class Int:
    """An integer parameter in ``[low, high]`` on a grid of ``step``; log-scaled when ``log=True`` (then ``low >= 1``);
    ``when`` makes it conditional (see ``Space``)."""

    low: int
    high: int
    log: bool = False
    step: int = 1
    when: Conditions = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "when", _conditions(self.when))

    def _check(self, name: str) -> None:
        integer(f"Int '{name}': low", self.low, low=-math.inf)
        integer(f"Int '{name}': high", self.high, low=-math.inf)
        integer(f"Int '{name}': step", self.step)
        if self.low >= self.high:
            raise ValueError(f"Int '{name}': low={self.low} must be < high={self.high}; swap them or widen the range")
        if self.log and self.low < 1:
            raise ValueError(f"Int '{name}': low={self.low} must be >= 1 when log=True; use low=1 or log=False")
        if self.log and self.step != 1:
            raise ValueError(f"Int '{name}': step={self.step} cannot be combined with log=True; use step=1")
        if (self.high - self.low) % self.step:
            raise ValueError(f"Int '{name}': high - low = {self.high - self.low} must be a multiple of step={self.step}")

    def _values(self) -> int:
        return (self.high - self.low) // self.step + 1

    def _edges(self) -> tuple[float, float]:
        if self.log:  # cells of width one in log space around each integer
            return math.log(self.low - 0.5), math.log(self.high + 0.5)
        return self.low - 0.5 * self.step, self.high + 0.5 * self.step

    def to_unit(self, value: Any) -> float:
        a, b = self._edges()
        return ((math.log(value) if self.log else value) - a) / (b - a)

    def from_unit(self, u: float) -> int:
        a, b = self._edges()
        x = a + min(max(u, 0.0), 1.0) * (b - a)
        v = math.exp(x) if self.log else x
        k = round((v - self.low) / self.step)
        return int(min(max(self.low + k * self.step, self.low), self.high))

    def contains(self, value: Any) -> bool:
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        return ok and self.low <= value <= self.high and (value - self.low) % self.step == 0

    def validate(self, name: str, value: Any) -> int:
        """``value`` as a config holds it (an int); ``TypeError`` / ``ValueError`` say what is wrong."""
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"Int '{name}': expected an int, got {_type_name(value)} {value!r}; pass an int "
                            "(numpy ints are fine)")
        if not self.low <= value <= self.high:
            raise ValueError(f"Int '{name}': {value} is outside [{self.low}, {self.high}]; pick a value in the "
                             "range or widen it")
        if (value - self.low) % self.step:
            raise ValueError(f"Int '{name}': {value} is not on the grid {self.low}, {self.low + self.step}, ..., "
                             f"{self.high} (step={self.step})")
        return int(value)

    def points(self, k: int) -> list[int]:
        if self.log:
            raw = np.exp(np.linspace(math.log(self.low), math.log(self.high), k))
        else:
            raw = np.linspace(self.low, self.high, k)
        snapped = [int(self.low + round((float(v) - self.low) / self.step) * self.step) for v in raw]
        return list(dict.fromkeys(snapped))


_JSON_ATOMS = (type(None), bool, int, float, str)


def _json_form(x: Any) -> Any:
    """``x`` as it comes back from ``json.loads(json.dumps(x))``: tuples become lists."""
    if type(x) in (list, tuple):
        return [_json_form(v) for v in x]
    if type(x) is dict:
        return {k: _json_form(v) for k, v in x.items()}
    return x


def _same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (``(1, True)`` is not ``(1, 1)``, ``[1]`` not ``(1,)``)."""
    if type(a) is not type(b):
        return False
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    return bool(a == b)


def _json_problem(x: Any, top: bool) -> str | None:
    """Why the option ``x`` would not come back from JSON as itself (``None``: it does)."""
    if type(x) is float and not math.isfinite(x):
        return "is not finite" if top else f"holds {x}, which is not finite"
    if type(x) in _JSON_ATOMS:
        return None
    if type(x) in (list, tuple):
        return next((p for v in x if (p := _json_problem(v, False)) is not None), None)
    if type(x) is dict:
        bad = next((k for k in x if type(k) is not str), None)
        if bad is not None:
            return f"has the key {bad!r}; dict options need str keys"
        return next((p for v in x.values() if (p := _json_problem(v, False)) is not None), None)
    return f"is a {_type_name(x)}" if top else f"holds {x!r}, a {_type_name(x)}"


@dataclass(frozen=True)
class Choice:
    """A categorical parameter: one of ``options``, no order assumed.

    Options are JSON values (str, int, float, bool, None) or lists, tuples and str-keyed dicts of them, so that a
    config stored as JSON comes back as the same option: a tuple option read back as a list is that tuple. ``when``
    makes it conditional (see ``Space``).
    """

    options: tuple[Any, ...]
    when: Conditions = None

    def __init__(self, options: Iterable[Any], *, when: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "options", tuple(options))
        object.__setattr__(self, "when", _conditions(when))

    def _check(self, name: str) -> None:
        if not self.options:
            raise ValueError(f"Choice '{name}': options are empty; give at least one option")
        for o in self.options:
            problem = _json_problem(o, True)
            if problem is not None:
                raise ValueError(f"Choice '{name}': option {o!r} {problem}; options must be str, int, float, bool, "
                                 "None or lists, tuples and str-keyed dicts of them, so that configs stored as JSON "
                                 "(SQLite) come back as the same option. Use a name (e.g. 'adam') and map it to the "
                                 "object in the training function")
        keys = [json.dumps(o) for o in self.options]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"Choice '{name}': duplicate options {', '.join(dup)}; list each option once")

    def to_unit(self, value: Any) -> float:
        return (self._index(value) + 0.5) / len(self.options)

    def _index(self, value: Any) -> int:
        """The option ``value`` is, itself or as JSON gave it back (a list for a tuple option)."""
        for i, o in enumerate(self.options):
            if _same(o, value):
                return i
        for i, o in enumerate(self.options):
            if _same(_json_form(o), value):
                return i
        raise KeyError(value)

    def from_unit(self, u: float) -> Any:
        return self.options[min(int(min(max(u, 0.0), 1.0) * len(self.options)), len(self.options) - 1)]

    def contains(self, value: Any) -> bool:
        try:
            self._index(value)
        except KeyError:
            return False
        return True

    def validate(self, name: str, value: Any) -> Any:
        """The option ``value`` is (a tuple option for its JSON list too); ``ValueError`` when it is none."""
        try:
            return self.options[self._index(value)]
        except KeyError:
            raise ValueError(f"Choice '{name}': expected one of {list(self.options)}, got {_type_name(value)} "
                             f"{value!r}") from None

    def points(self, k: int) -> list[Any]:
        return list(self.options)


Param = Float | Int | Choice


def _param_to_dict(p: Param) -> dict[str, Any]:
    if isinstance(p, Choice):
        d: dict[str, Any] = {"type": "Choice", "options": [_json_form(o) for o in p.options]}
        if any(not _same(_json_form(o), o) for o in p.options):  # JSON turns tuples into lists: keep them
            d["literals"] = [repr(o) for o in p.options]
        return d
    d = {"type": type(p).__name__, "low": p.low, "high": p.high, "log": p.log}
    if isinstance(p, Int):
        d["step"] = p.step
    return d


def _when_to_dict(p: Param) -> dict[str, Any]:
    return {"when": {k: [_json_form(v) for v in vs] for k, vs in p.when}} if p.when else {}


def _param_from_dict(name: str, d: Mapping[str, Any]) -> Param:
    kind, when = d.get("type"), d.get("when")
    if kind == "Choice":
        if "literals" not in d:
            return Choice(d["options"], when=when)
        options = [ast.literal_eval(r) for r in d["literals"]]  # literals only: never runs code
        if not _same([_json_form(o) for o in options], d["options"]):
            raise ValueError(f"Choice '{name}': its stored literals {d['literals']} do not match its options "
                             f"{d['options']}; the stored space was edited by hand or damaged")
        return Choice(options, when=when)
    if kind == "Float":
        return Float(d["low"], d["high"], log=d["log"], when=when)
    if kind == "Int":
        return Int(d["low"], d["high"], log=d["log"], step=d["step"], when=when)
    raise ValueError(f"'{name}': unknown parameter type {kind!r}; expected Float, Int or Choice")


class Space:
    """An ordered set of named parameters, each one column of the unit cube.

    A parameter with ``when={"layers": [3, 4]}`` is *conditional*: it is active only when every named parent
    (an ``Int`` or ``Choice`` declared before it, itself active) takes one of the listed values. Configs hold the
    active parameters only; an inactive one's column encodes as ``INACTIVE``, so every algorithm still sees an
    ``n x d`` cube, and ``decode`` drops what the decoded parents switch off.

    Args:
        params: name -> ``Float`` / ``Int`` / ``Choice``.

    Example:
        >>> space = Space({"x": Float(-1.0, 1.0)})
        >>> space.sample(2, seed=0)[0]["x"] <= 1.0
        True
        >>> nested = Space({"layers": Int(1, 3), "width_3": Int(8, 64, when={"layers": 3})})
        >>> sorted(nested.decode([[0.0, 0.5]])[0])  # layers = 1: width_3 is inactive
        ['layers']
    """

    def __init__(self, params: Mapping[str, Param]) -> None:
        if not isinstance(params, Mapping) or not params:
            raise ValueError("Space: params must be a non-empty dict of name -> Float/Int/Choice")
        for name, p in params.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"Space: parameter names must be non-empty strings, got {name!r}")
            if not isinstance(p, (Float, Int, Choice)):
                raise TypeError(f"Space: '{name}' must be a Float, Int or Choice, got {type(p).__name__}")
            p._check(name)
        self.params: dict[str, Param] = dict(params)
        self.names: list[str] = list(self.params)
        self._when = {name: self._parents(name, p) for name, p in self.params.items() if p.when}

    def _parents(self, name: str, p: Param) -> dict[str, list[Any]]:
        """``p.when`` checked against the space: each parent declared before ``name``, discrete, and each listed
        value one of its values (as the parent holds it)."""
        out: dict[str, list[Any]] = {}
        for parent, values in p.when:
            before = self.names[: self.names.index(name)]
            if parent not in before:
                where = "declared after it" if parent in self.params else "not in the space"
                raise ValueError(f"'{name}': its condition names '{parent}', which is {where}; a parameter can only "
                                 f"depend on parameters declared before it ({before})")
            q = self.params[parent]
            if isinstance(q, Float):
                raise ValueError(f"'{name}': its condition names the Float '{parent}'; conditions take an Int or a "
                                 "Choice parent (a float rarely equals a listed value)")
            if not values:
                raise ValueError(f"'{name}': its condition on '{parent}' lists no values")
            out[parent] = [q.validate(parent, v) for v in values]
        return out

    @property
    def conditional(self) -> bool:
        """Whether some parameter has a ``when`` condition (configs may then lack keys)."""
        return bool(self._when)

    def is_active(self, name: str, config: Mapping[str, Any]) -> bool:
        """Whether ``name`` applies given the values in ``config`` (its parents' values; missing parents are
        inactive, so their children are too)."""
        for parent, values in self._when.get(name, {}).items():
            if parent not in config or not any(_same(self.params[parent].validate(parent, config[parent]), v)
                                               for v in values):
                return False
        return True

    def active(self, X: torch.Tensor | np.ndarray) -> torch.Tensor:
        """``n x d`` booleans: which columns of the encoded rows ``X`` are active parameters (all ``True`` in a
        space without conditions). Algorithms use it to leave inactive columns out of their densities."""
        rows = np.asarray(X.detach().cpu() if isinstance(X, torch.Tensor) else X, dtype=float).reshape(-1, self.dim)
        if not self._when:
            return torch.ones(rows.shape, dtype=torch.bool)
        return torch.tensor([[n in c for n in self.names] for c in self.decode(rows)], dtype=torch.bool).reshape(
            rows.shape)

    @property
    def dim(self) -> int:
        """d, the number of columns."""
        return len(self.names)

    @property
    def categorical_dims(self) -> list[int]:
        """Columns that hold a ``Choice`` (for a categorical kernel)."""
        return [j for j, p in enumerate(self.params.values()) if isinstance(p, Choice)]

    @property
    def discrete_dims(self) -> list[int]:
        """Columns that hold an ``Int`` (relaxed to [0, 1], snapped by ``round``)."""
        return [j for j, p in enumerate(self.params.values()) if isinstance(p, Int)]

    def levels(self, j: int) -> list[float]:
        """The encoded values column ``j`` can take after ``round`` (cell centres); empty for a ``Float``."""
        p = self.params[self.names[j]]
        if isinstance(p, Choice):
            return [(i + 0.5) / len(p.options) for i in range(len(p.options))]
        if isinstance(p, Int):
            return [p.to_unit(v) for v in range(p.low, p.high + 1, p.step)]
        return []

    def bounds(self, **tkwargs: Any) -> torch.Tensor:
        """``2 x d`` bounds of the unit cube."""
        return torch.stack([torch.zeros(self.dim, **tkwargs), torch.ones(self.dim, **tkwargs)])

    # --- validation -------------------------------------------------------------------------------------------
    def validate(self, config: Mapping[str, Any]) -> Config:
        """Check a config's keys and values; return it as a plain dict (numpy ints become ints).

        Raises:
            ValueError: unknown or missing keys; a value out of its range or not one of its choices.
            TypeError: a value of the wrong type (a str for a ``Float``, a float for an ``Int``).
        """
        if not isinstance(config, Mapping):
            raise TypeError(f"config must be a dict of parameter values, got {type(config).__name__}")
        unknown = [k for k in config if k not in self.params]
        if unknown:
            raise ValueError(f"config has unknown keys {unknown}; the space has {self.names}")
        out: Config = {}
        for name, p in self.params.items():
            if not self.is_active(name, out):
                if name in config:
                    raise ValueError(f"config has '{name}', which is inactive here: it applies when "
                                     f"{self._describe_when(name)}; leave it out")
            elif name in config:
                out[name] = p.validate(name, config[name])
        missing = [k for k in self.names if k not in config and self.is_active(k, out)]
        if missing:
            raise ValueError(f"config misses keys {missing}; give a value for every (active) parameter of the space")
        return out

    def _describe_when(self, name: str) -> str:
        return " and ".join(f"{parent} in {values}" for parent, values in self._when[name].items())

    # --- the unit cube ----------------------------------------------------------------------------------------
    def encode(self, configs: Sequence[Mapping[str, Any]], **tkwargs: Any) -> torch.Tensor:
        """Configs -> ``n x d`` tensor in [0, 1] (float64 unless ``dtype`` is given)."""
        tkwargs.setdefault("dtype", torch.float64)
        valid = [self.validate(c) for c in configs]
        rows = [[p.to_unit(c[n]) if n in c else INACTIVE for n, p in self.params.items()] for c in valid]
        return torch.tensor(rows, **tkwargs).reshape(len(rows), self.dim)

    def decode(self, X: torch.Tensor | np.ndarray) -> list[Config]:
        """``n x d`` points of the unit cube -> configs (clipped, ints rounded, categoricals mapped)."""
        A = np.asarray(X.detach().cpu() if isinstance(X, torch.Tensor) else X, dtype=float).reshape(-1, self.dim)
        if np.isnan(A).any():
            i, j = (int(k) for k in np.argwhere(np.isnan(A))[0])
            raise ValueError(f"decode: X[{i}, {j}] is nan; points of the unit cube are numbers in [0, 1] (a searcher "
                             "that proposes nan has a bug)")
        full = [{n: p.from_unit(float(u)) for (n, p), u in zip(self.params.items(), row, strict=True)} for row in A]
        return [self._prune(c) for c in full] if self._when else full

    def _prune(self, config: Config) -> Config:
        """``config`` without the parameters its own values switch off (parents first: declaration order)."""
        out: Config = {}
        for name in self.names:
            if self.is_active(name, out):
                out[name] = config[name]
        return out

    def round(self, X: torch.Tensor) -> torch.Tensor:
        """Snap ``... x d`` points to the nearest encodable config (``encode(decode(X))``), same shape and tkwargs."""
        flat = X.reshape(-1, self.dim)
        out = self.encode(self.decode(flat), device=X.device, dtype=X.dtype)
        return out.reshape(X.shape)

    # --- designs ----------------------------------------------------------------------------------------------
    def sample(self, n: int, seed: int | np.random.SeedSequence | np.random.Generator | None = None) -> list[Config]:
        """``n`` configs drawn uniformly (log-uniformly on log scales) from a generator seeded by ``seed``."""
        rng = np.random.default_rng(seed)
        return self.decode(rng.random((n, self.dim)))

    def sobol(self, n: int, seed: int | None = None, *, skip: int = 0) -> list[Config]:
        """``n`` configs from a scrambled Sobol sequence (points ``skip .. skip + n - 1``)."""
        engine = qmc.Sobol(d=self.dim, scramble=True, seed=seed)
        if skip:
            engine.fast_forward(skip)
        with warnings.catch_warnings():  # balance needs powers of 2; prefixes of the sequence are still good
            warnings.simplefilter("ignore", UserWarning)
            return self.decode(engine.random(n))

    def grid(self, points_per_dim: int | Mapping[str, int] | None = None) -> list[Config]:
        """Every combination of a grid: choices and ints take all values unless ``points_per_dim`` limits them;
        floats need a count (linear or log spacing as declared)."""
        axes = self.grid_axes(points_per_dim)
        grid = [dict(zip(self.names, combo, strict=True)) for combo in itertools.product(*axes)]
        if not self._when:
            return grid
        unique = {json.dumps(c, sort_keys=True): c for c in map(self._prune, grid)}  # inactive axes repeat a config
        return list(unique.values())

    def grid_axes(self, points_per_dim: int | Mapping[str, int] | None = None) -> list[list[Any]]:
        """The values of each parameter (in ``names`` order) on ``grid(points_per_dim)``, without building it:
        the grid is their product, the last parameter varying fastest, so its point ``i`` has the mixed-radix
        digits of ``i`` over the axes' lengths."""
        axes: list[list[Any]] = []
        for name, p in self.params.items():
            k = points_per_dim.get(name) if isinstance(points_per_dim, Mapping) else points_per_dim
            if isinstance(p, Float) and k is None:
                raise ValueError(f"grid: Float '{name}' needs a number of points; pass points={{'{name}': 5}} or an int")
            integer(f"grid: points for '{name}'", k, none=True)
            if isinstance(p, Int) and (k is None or k >= p._values()):
                axes.append(list(range(p.low, p.high + 1, p.step)))
            else:
                axes.append(p.points(k if k is not None else 0))
        return axes

    # --- persistence ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {n: _param_to_dict(p) | _when_to_dict(p) for n, p in self.params.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Space:
        return cls({n: _param_from_dict(n, v) for n, v in d.items()})

    def _key(self) -> dict[str, Any]:
        """``to_dict`` without tuple literals: a space whose options were stored before they were kept equals it."""
        return {n: {k: v for k, v in d.items() if k != "literals"} for n, d in self.to_dict().items()}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Space) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(json.dumps(self._key(), sort_keys=True))

    def __repr__(self) -> str:
        return f"Space({', '.join(f'{n}={_describe(p)}' for n, p in self.params.items())})"


def _describe(p: Param) -> str:
    when = f"when={ {k: list(v) for k, v in p.when} }" if p.when else ""
    if isinstance(p, Choice):
        return f"Choice({list(p.options)}{', ' + when if when else ''})"
    extra = ", log=True" if p.log else ""
    extra += f", step={p.step}" if isinstance(p, Int) and p.step != 1 else ""
    extra += f", {when}" if when else ""
    return f"{type(p).__name__}({p.low}, {p.high}{extra})"
