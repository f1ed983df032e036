"""Optuna glue: torchhpo's searchers and schedulers as an Optuna sampler and pruner.

An existing Optuna study switches in one line; the objective and the rest of the study stay as they are::

    study = optuna.create_study(sampler=TorchHPOSampler(th.GP()), pruner=TorchHPOPruner(th.ASHA(1, 27, 3)))

``TorchHPOSampler`` turns Optuna's relative search space into a ``th.Space`` and the study's trials into
``TrialRecord``s (RUNNING ones as pending points, the study's direction as the records' sign), asks the searcher
for one config and hands it back to Optuna; parameters outside the relative space are drawn by Optuna's
``RandomSampler``. ``TorchHPOPruner`` answers ``trial.should_prune()`` with the scheduler's decision on the newest
report, keeping what the scheduler notes about a trial (its bracket) in Optuna's storage, so that every process of
a distributed study decides from the same records. Optuna cannot resume a trial, so a scheduler's PAUSE (wait at a
rung) is decided at once: the trial goes on if it leads every trial that reported at that step (the one a rung
always promotes), else it is pruned; COMPLETE (a plateau) prunes, as Optuna's own ``PatientPruner`` does.
docs/optuna.md says what that means for Hyperband.

Example:
    >>> import optuna, torchhpo as th
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> study = optuna.create_study(sampler=TorchHPOSampler("tpe", seed=0))
    >>> study.optimize(lambda t: (t.suggest_float("x", -2, 2) - 1) ** 2, n_trials=12)
    >>> study.best_value < 1.0
    True
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from torchhpo.checks import integer
from torchhpo.history import History
from torchhpo.observations import fresh_seed
from torchhpo.schedulers import BudgetScheduler, RungScheduler, Scheduler, make_scheduler
from torchhpo.searchers import Searcher, make_searcher
from torchhpo.settings import describe, rebuild, reseeded
from torchhpo.space import Choice, Config, Float, Int, Param, Space
from torchhpo.trial import Decision, Status, TrialRecord, unusable_value

try:
    import optuna
    from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.pruners import BasePruner
    from optuna.samplers import BaseSampler, RandomSampler
    from optuna.search_space import IntersectionSearchSpace
    from optuna.study import StudyDirection
    from optuna.trial import FrozenTrial, TrialState
except ImportError as e:  # pragma: no cover - exercised only without Optuna
    raise ImportError("torchhpo.integrations.optuna needs Optuna: pip install 'torchhpo[optuna]' (or pip install optuna)") from e

__all__ = ["TorchHPOPruner", "TorchHPOSampler", "to_space"]

PARAM_ATTR = "torchhpo:param:"  # + name: a relative param of a RUNNING trial, before the objective suggests it
SCHEDULER_ATTR = "torchhpo:scheduler"  # {"attrs": record.attrs, "budget": epochs or None} once on_start ran

_STATUS = {TrialState.COMPLETE: Status.COMPLETED, TrialState.PRUNED: Status.PRUNED, TrialState.FAIL: Status.FAILED,
           TrialState.RUNNING: Status.RUNNING, TrialState.WAITING: Status.RUNNING}


def to_space(distributions: Mapping[str, BaseDistribution]) -> Space:
    """Optuna distributions as a ``th.Space``, parameter for parameter.

    A ``FloatDistribution`` becomes a ``Float`` (log kept), or with a ``step`` an ``Int`` over its grid's indices;
    an ``IntDistribution`` an ``Int`` (log and step kept); a ``CategoricalDistribution`` a ``Choice`` of its
    indices, Optuna's own internal form, so that choices of any type (``None``, mixed ints and strs) are options.
    Distributions of one value have no column (``TypeError`` for other distribution types).

    Example:
        >>> to_space({"lr": FloatDistribution(1e-4, 1e-1, log=True), "act": CategoricalDistribution(["relu", None])})
        Space(lr=Float(0.0001, 0.1, log=True), act=Choice([0, 1]))
    """
    params: dict[str, Param] = {}
    for name, d in distributions.items():
        if d.single():
            continue
        if isinstance(d, CategoricalDistribution):
            params[name] = Choice(range(len(d.choices)))
        elif isinstance(d, IntDistribution):
            params[name] = Int(d.low, d.high, log=d.log, step=d.step)
        elif isinstance(d, FloatDistribution) and d.step is not None:
            params[name] = Int(0, round((d.high - d.low) / d.step))
        elif isinstance(d, FloatDistribution):
            params[name] = Float(d.low, d.high, log=d.log)
        else:
            raise TypeError(f"'{name}': {type(d).__name__} is not an Optuna distribution torchhpo knows; expected "
                            "FloatDistribution, IntDistribution or CategoricalDistribution")
    return Space(params)


def _to_torchhpo(d: BaseDistribution, value: Any) -> Any:
    """An Optuna param value (external form) as ``to_space(d)``'s column holds it; ``ValueError`` when it has none."""
    if isinstance(d, CategoricalDistribution):
        return int(d.to_internal_repr(value))
    if isinstance(d, FloatDistribution) and d.step is not None:
        return round((value - d.low) / d.step)
    return int(value) if isinstance(d, IntDistribution) else float(value)


def _to_optuna(d: BaseDistribution, value: Any) -> Any:
    """The inverse of ``_to_torchhpo``: a config value as Optuna's external form (plain ``int`` / ``float``)."""
    if isinstance(d, CategoricalDistribution):
        return d.choices[value]
    if isinstance(d, FloatDistribution) and d.step is not None:
        return float(min(d.low + value * d.step, d.high))
    return int(value) if isinstance(d, IntDistribution) else float(value)


def _single_objective(study: optuna.Study, who: str) -> int:
    """The study's sign (+1 to maximize, -1 to minimize); ``ValueError`` for a multi-objective study."""
    if len(study.directions) > 1:
        raise ValueError(f"{who}: this study has {len(study.directions)} objectives; torchhpo's searchers and "
                         "schedulers rank trials by one score. Use one of Optuna's multi-objective samplers "
                         "(NSGAIISampler, TPESampler) for this study, or optimize one objective")
    return 1 if study.direction == StudyDirection.MAXIMIZE else -1


def _record(t: FrozenTrial, config: Config, sign: int, shift: int = 1) -> TrialRecord:
    """``t`` as torchhpo keeps a trial: reports at step ``step + shift`` (those >= 1: Optuna's steps count from 0,
    torchhpo's from 1), unusable values left out
    (a NaN or infinite final value fails the trial, as ``unusable_value`` has it)."""
    status = _STATUS[t.state]
    value = t.value if status is Status.COMPLETED else None
    if value is not None and unusable_value(value) is not None:
        status, value = Status.FAILED, None
    reports = {s + shift: v for s, v in sorted(t.intermediate_values.items())
               if s + shift >= 1 and unusable_value(v) is None}
    started = t.datetime_start.timestamp() if t.datetime_start is not None else 0.0
    finished = t.datetime_complete.timestamp() if t.datetime_complete is not None else None
    return TrialRecord(t.number, config, status, value, reports, started=started, finished=finished, sign=sign)


def _config(space: Space, distributions: Mapping[str, BaseDistribution], t: FrozenTrial) -> Config | None:
    """``t``'s params in ``space`` (a RUNNING trial's relative params too), or ``None`` when one is missing or
    outside the space (the trial ran with another distribution)."""
    params = t.params
    if not t.state.is_finished():
        params = {**{k[len(PARAM_ATTR):]: v for k, v in t.system_attrs.items() if k.startswith(PARAM_ATTR)}, **params}
    config = {}
    for name, p in space.params.items():
        if name not in params:
            return None
        try:
            value = _to_torchhpo(distributions[name], params[name])
        except (ValueError, TypeError):
            return None
        if not p.contains(value):
            return None
        config[name] = value
    return config


def _leads(record: TrialRecord, step: int, peers: Sequence[TrialRecord]) -> bool:
    """Whether ``record``'s score at ``step`` beats every other non-failed trial's there (ties: the lower number):
    the trial that a rung rule promotes whenever it decides, however many peers it waits for."""
    mine = (record.score_at(step), -record.number)
    return all((p.score_at(step), -p.number) <= mine for p in peers
               if step in p.reports and p.status is not Status.FAILED)


class TorchHPOSampler(BaseSampler):
    """An Optuna sampler that runs a torchhpo searcher (``th.GP()``, ``th.TPE()``, ``th.RandomSearch()``, a plugin
    with ``ask(space, trials, n)``) over Optuna's relative search space.

    Each trial asks the searcher for one config over the parameters every completed trial had (Optuna's
    ``IntersectionSearchSpace``, as its ``GPSampler``); conditional parameters, which some trials lack, are drawn
    independently. The searcher sees every other trial with those params:
    COMPLETE (its value), PRUNED (its intermediate values, as torchhpo's multi-fidelity rule reads them), FAIL
    (the worst score) and RUNNING (a pending point; a trial keeps its relative params in its system attrs, so
    parallel workers see them before the objective suggests them). Trial values carry the study's direction, so
    the searcher maximizes in both. Other parameters are drawn by Optuna's ``RandomSampler``.

    Args:
        searcher: a torchhpo searcher, or its name (``"gp"``, ``"tpe"``, ``"random"``, ``"sobol"``, ``"grid"``).
        seed: seeds the independent draws, and the searcher when given by name (an object keeps its own seed:
            ``th.GP(seed=0)``).

    Raises:
        ValueError: in a study of several objectives.
    """

    def __init__(self, searcher: Searcher | str, *, seed: int | None = None) -> None:
        self.searcher = make_searcher(searcher, seed=seed)
        self._random = RandomSampler(seed=seed)
        self._intersection = IntersectionSearchSpace()
        self._lock = threading.Lock()  # n_jobs threads: one ask at a time, so each sees the others' pending params

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __str__(self) -> str:
        return f"TorchHPOSampler({type(self.searcher).__name__})"

    def reseed_rng(self) -> None:
        """A fresh seed for the independent draws and for the searcher (a copy of it: one of torchhpo's own; a
        plugin keeps its seed). Optuna calls it in each worker thread of ``n_jobs > 1``."""
        self._random.reseed_rng()
        description = describe(self.searcher)
        if description is not None and description["args"] is not None and "seed" in description["args"]:
            self.searcher = rebuild(reseeded(description, fresh_seed(None)))

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        _single_objective(study, "TorchHPOSampler")
        with self._lock:
            return {n: d for n, d in self._intersection.calculate(study).items() if not d.single()}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        sign = _single_objective(study, "TorchHPOSampler")
        distributions = {n: d for n, d in search_space.items() if not d.single()}
        if not distributions:
            return {}
        with self._lock:
            others = [t for t in study.get_trials(deepcopy=False) if t.number != trial.number]
            params = self._ask(to_space(distributions), distributions, others, sign)
            for name, value in params.items():  # seen as pending by the next asks, in any process
                study._storage.set_trial_system_attr(trial._trial_id, PARAM_ATTR + name, value)
        return params

    def _ask(self, space: Space, distributions: Mapping[str, BaseDistribution], trials: Sequence[FrozenTrial],
             sign: int) -> dict[str, Any]:
        records = [_record(t, c, sign) for t in trials if (c := _config(space, distributions, t)) is not None]
        configs = self.searcher.ask(space, records, 1)
        if not configs:  # the searcher is exhausted (a grid): Optuna samples these independently
            return {}
        return {name: _to_optuna(distributions[name], v) for name, v in configs[0].items()}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        _single_objective(study, "TorchHPOSampler")
        return self._random.sample_independent(study, trial, param_name, param_distribution)


class TorchHPOPruner(BasePruner):
    """An Optuna pruner that runs a torchhpo scheduler (``th.ASHA``, ``th.Hyperband``, ``th.MedianStopping``,
    ``th.Patience``, several as a list) on the study's intermediate values.

    At each ``trial.should_prune()`` the study's trials become ``TrialRecord``s with their reports; the first time
    the pruner sees a trial it calls the scheduler's ``on_start`` (a bracket), and it keeps the record's attrs in the
    trial's system attrs, so decisions replay from storage and agree across the processes of an RDB study. The
    answer to the newest report decides: CONTINUE goes on; STOP prunes; PAUSE is decided at once, since Optuna cannot
    resume a trial: it goes on if it leads every trial that reported at that step, else it is pruned (so a
    synchronous Hyperband prunes more early arrivals than in torchhpo: prefer ``th.ASHA``, see docs/optuna.md);
    COMPLETE (a plateau) prunes, as Optuna's ``PatientPruner`` does. A NaN or infinite report prunes the trial. A
    trial that reports past its budget (the scheduler's ``max_epochs``) is no longer judged: it trained fully, so it
    goes on (with a warning: train for the scheduler's budget).

    Args:
        scheduler: a torchhpo scheduler, a list of them, or a name (``"median"``, ``"patience"``).
        first_step: the step your objective reports after its first epoch: 0 for Optuna's usual
            ``trial.report(value, epoch)`` in ``for epoch in range(n)``, 1 when it reports epochs done. Optuna step
            ``first_step + k`` is torchhpo step ``k + 1``, where the scheduler's rungs count epochs.

    Raises:
        ValueError: a report before ``first_step``, or a study of several objectives.
    """

    def __init__(self, scheduler: Any, *, first_step: int = 0) -> None:
        built = make_scheduler(scheduler)
        if built is None:
            raise ValueError("TorchHPOPruner: give a scheduler (th.ASHA(1, 27), th.MedianStopping(), ...); "
                             "for no pruning use optuna.pruners.NopPruner()")
        self.scheduler: Scheduler = built
        self.first_step = integer("TorchHPOPruner: first_step", first_step, low=0)
        self._lock = threading.Lock()  # n_jobs threads: the scheduler's index and on_start see one trial at a time
        self._warned = False

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        sign = _single_objective(study, "TorchHPOPruner")
        last = trial.last_step
        if last is None:
            return False
        step = last - self.first_step + 1
        if step < 1:
            raise ValueError(f"TorchHPOPruner: trial {trial.number} reported step {last}, before first_step="
                             f"{self.first_step}; report the epoch index from {self.first_step} on, or build the "
                             f"pruner with first_step={min(trial.intermediate_values)}")
        if unusable_value(trial.intermediate_values[last]) is not None:
            return True  # the training diverged: torchhpo fails such a trial, Optuna's pruners prune it
        with self._lock:
            return self._decide(study, trial, step, sign) is not Decision.CONTINUE

    def _decide(self, study: optuna.Study, trial: FrozenTrial, step: int, sign: int) -> Decision:
        shift = 1 - self.first_step
        peers = History()
        for t in study.get_trials(deepcopy=False):
            record = _record(t, t.params, sign, shift)
            record.attrs = dict(t.system_attrs.get(SCHEDULER_ATTR, {}).get("attrs", {}))
            peers.append(record)
        record, saved = peers[trial.number], trial.system_attrs.get(SCHEDULER_ATTR)
        budget = saved.get("budget") if saved is not None else None
        if saved is None and isinstance(self.scheduler, BudgetScheduler):
            budget = self.scheduler.on_start(record, peers)
        before = dict(record.attrs)
        decision = self.scheduler.on_report(record, step, record.score_at(step), peers)
        if saved is None or record.attrs != before:
            value = {"attrs": record.attrs, "budget": budget}
            study._storage.set_trial_system_attr(trial._trial_id, SCHEDULER_ATTR, value)
        if budget is None and isinstance(self.scheduler, RungScheduler):
            budget = self.scheduler.rungs(record)[-1]
        if budget is not None and step > budget:
            self._warn(trial.number, step, budget)
            return Decision.CONTINUE
        if decision is Decision.PAUSE:  # decided now, as no later promote() can resume an Optuna trial
            return Decision.CONTINUE if _leads(record, step, peers) else Decision.STOP
        return decision

    def _warn(self, number: int, step: int, budget: int) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(f"TorchHPOPruner: trial {number} reported its epoch {step}, past its budget of {budget} "
                          f"epochs ({type(self.scheduler).__name__}); it trained fully, so it is no longer judged. "
                          f"Train for {budget} epochs (the scheduler's max_epochs), or raise max_epochs",
                          stacklevel=4)
