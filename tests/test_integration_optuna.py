"""TorchHPOSampler and TorchHPOPruner inside real Optuna studies: Optuna's own sampler contract suite, the
conversions, the study's history as the searcher sees it, storage across processes, threads, and the recipe."""

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
from support import ROOT, run_script

optuna = pytest.importorskip("optuna")
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: E402
from optuna.testing.pytest_samplers import (  # noqa: E402
    BasicSamplerTestCase,
    RelativeSamplerTestCase,
    SingleOnlySamplerTestCase,
)

import torchhpo as th  # noqa: E402
from torchhpo.integrations.optuna import TorchHPOPruner, TorchHPOSampler, to_space  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)

FACTORIES = [lambda: TorchHPOSampler(th.RandomSearch(seed=0), seed=0), lambda: TorchHPOSampler("tpe", seed=0)]


# --- Optuna's generic sampler checks (optuna.testing.pytest_samplers), run on our sampler ------------------------
@pytest.fixture(params=FACTORIES, ids=["random", "tpe"])
def _factory(request):
    return request.param


class TestOptunaBasic(BasicSamplerTestCase):
    @pytest.fixture
    def sampler(self, _factory):
        return _factory


class TestOptunaRelative(RelativeSamplerTestCase):
    @pytest.fixture
    def sampler(self, _factory):
        return _factory


class TestOptunaSingleObjectiveOnly(SingleOnlySamplerTestCase):
    @pytest.fixture
    def sampler(self, _factory):
        return _factory


# --- conversions ---------------------------------------------------------------------------------------------------
EVERY = {"f": FloatDistribution(-1.0, 1.0), "flog": FloatDistribution(1e-5, 1.0, log=True),
         "fstep": FloatDistribution(-10.2, 10.2, step=0.1), "i": IntDistribution(-10, 10),
         "ilog": IntDistribution(1, 100, log=True), "istep": IntDistribution(0, 10, step=2),
         "c": CategoricalDistribution([None, True, 1, 1.0, "a"])}


def test_to_space_maps_every_distribution():
    space = to_space({**EVERY, "one": IntDistribution(3, 3)})
    assert space.names == list(EVERY)  # a distribution of one value has no column
    assert space.params["fstep"] == th.Int(0, 204) and space.params["istep"] == th.Int(0, 10, step=2)
    assert space.params["c"] == th.Choice([0, 1, 2, 3, 4]) and space.params["flog"] == th.Float(1e-5, 1.0, log=True)


def _in(d, value):
    return d._contains(d.to_internal_repr(value))


def test_gp_samples_every_distribution_within_bounds_and_on_its_grid():
    def objective(trial):
        values = {n: trial.suggest_float(n, d.low, d.high, log=d.log, step=d.step) if isinstance(d, FloatDistribution)
                  else trial.suggest_int(n, d.low, d.high, log=d.log, step=d.step) if isinstance(d, IntDistribution)
                  else trial.suggest_categorical(n, d.choices) for n, d in EVERY.items()}
        return values["f"] ** 2 + values["i"] + (values["c"] is None)

    study = optuna.create_study(sampler=TorchHPOSampler(th.GP(n_initial=2, seed=0), seed=0))
    study.optimize(objective, n_trials=3)  # the first trial is independent (no relative space yet), the third a GP's
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    for t in study.trials:
        assert all(_in(d, t.params[n]) for n, d in EVERY.items())
        assert type(t.params["i"]) is int and type(t.params["f"]) is float
        assert math.isclose((t.params["fstep"] + 10.2) / 0.1, round((t.params["fstep"] + 10.2) / 0.1), abs_tol=1e-6)
    assert all(set(t.system_attrs) >= {f"torchhpo:param:{n}" for n in EVERY} for t in study.trials[1:])


# --- what the searcher sees ------------------------------------------------------------------------------------
class Spy:
    """A searcher plugin that proposes random configs and keeps every history it was shown."""

    def __init__(self):
        self.seen = []

    def ask(self, space, trials, n=1):
        self.seen.append(list(trials))
        return space.sample(n, seed=len(trials))


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_records_carry_the_direction_pending_pruned_and_failed_trials(direction):
    spy = Spy()
    study = optuna.create_study(direction=direction, sampler=TorchHPOSampler(spy, seed=0))
    dists = {"x": FloatDistribution(0, 1), "c": CategoricalDistribution(["a", "b"])}
    for value in (1.0, 2.0):
        study.tell(study.ask(dists), value)
    pruned = study.ask(dists)
    pruned.report(5.0, 0)
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    study.tell(study.ask(dists), float("nan"))  # Optuna fails it
    running = study.ask(dists)  # its relative params wait in system attrs until the objective suggests them
    study.ask(dists)
    records = spy.seen[-1]
    assert [r.status for r in records] == [th.Status.COMPLETED, th.Status.COMPLETED, th.Status.PRUNED,
                                           th.Status.FAILED, th.Status.RUNNING]
    sign = 1 if direction == "maximize" else -1
    assert [records[0].score, records[1].score] == [sign * 1.0, sign * 2.0]
    assert records[2].reports == {1: 5.0} and records[2].score_at(1) == sign * 5.0  # Optuna's step 0: the first
    assert records[4].config["c"] == ["a", "b"].index(running.params["c"])
    assert records[4].config["x"] == running.params["x"]


def test_seed_makes_the_study_reproducible_and_reseed_rng_changes_it():
    def params(sampler):
        study = optuna.create_study(sampler=sampler)
        study.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_int("n", 1, 9, log=True), n_trials=6)
        return [t.params for t in study.trials]

    assert params(TorchHPOSampler("tpe", seed=1)) == params(TorchHPOSampler("tpe", seed=1))
    assert params(TorchHPOSampler("tpe", seed=1)) != params(TorchHPOSampler("tpe", seed=2))
    reseeded = TorchHPOSampler("tpe", seed=1)
    reseeded.reseed_rng()
    assert params(reseeded) != params(TorchHPOSampler("tpe", seed=1))


def test_define_by_run_conditional_params_enqueue_and_threads():
    def objective(trial):
        if trial.suggest_categorical("kind", ["a", "b"]) == "a":
            return trial.suggest_float("xa", -1, 1) ** 2
        return trial.suggest_int("nb", 1, 8)

    study = optuna.create_study(sampler=TorchHPOSampler(th.RandomSearch(seed=0), seed=0))
    study.enqueue_trial({"kind": "b", "nb": 7})
    study.optimize(objective, n_trials=10, n_jobs=2)
    assert study.trials[0].params == {"kind": "b", "nb": 7}
    assert all(t.state is optuna.trial.TrialState.COMPLETE for t in study.trials) and len(study.trials) == 10
    assert {t.params["kind"] for t in study.trials} == {"a", "b"}
    xs = [t.params["xa"] for t in study.trials if "xa" in t.params]
    assert len(set(xs)) == len(xs)  # the threads' asks saw each other's pending params


def test_multi_objective_is_refused_with_the_fix():
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=TorchHPOSampler("random"))
    with pytest.raises(ValueError, match="multi-objective samplers"):
        study.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=1)
    with pytest.raises(ValueError, match="2 objectives"):
        TorchHPOPruner(th.MedianStopping()).prune(study, study.trials[0])


# --- the pruner ------------------------------------------------------------------------------------------------
def curves(offsets, epochs=9, first_step=0, nan_at=None):
    """An objective whose trial ``k`` reports ``offsets[k] + 1 / (epoch + 1)`` (minimized)."""
    def objective(trial):
        offset = offsets[trial.number]
        trial.suggest_float("x", 0, 1)
        for epoch in range(epochs):
            value = float("nan") if epoch == nan_at else offset + 1 / (epoch + 1)
            trial.report(value, epoch + first_step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return offset
    return objective


def states(study):
    return "".join(t.state.name[0] for t in study.trials)


def test_asha_prunes_laggards_and_lets_a_rung_leader_go_on():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), pruner=TorchHPOPruner(th.ASHA(1, 9)))
    study.optimize(curves([1.0, 2.0, 0.5, 3.0, 0.2, 0.1]), n_trials=6)
    # Trial 0 leads rung 1 (epoch 0) and rung 3 (epoch 2): ASHA would pause it for its peers, which Optuna cannot,
    # so it goes on as the leader that every later promotion keeps; trial 1 trails and is pruned at once.
    assert states(study) == "CPCPCC"
    assert [max(t.intermediate_values) for t in study.trials] == [8, 0, 8, 0, 8, 8]
    assert study.trials[0].system_attrs["torchhpo:scheduler"] == {"attrs": {"bracket": 0}, "budget": None}
    assert study.trials[5].system_attrs["torchhpo:scheduler"]["attrs"] == {"bracket": 0, "rung": 2}  # promoted


@pytest.mark.parametrize("first_step", [0, 1])
def test_patience_prunes_at_the_plateau_whatever_the_first_step(first_step):
    study = optuna.create_study(pruner=TorchHPOPruner(th.Patience(2), first_step=first_step))
    flat = {0: 1.0, 1: 0.5, 2: 0.6, 3: 0.7, 4: 0.8}

    def objective(trial):
        for epoch, value in flat.items():
            trial.report(value, epoch + first_step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return 0.0

    study.optimize(objective, n_trials=1)
    assert study.trials[0].state is optuna.trial.TrialState.PRUNED
    assert max(study.trials[0].intermediate_values) == 3 + first_step  # two reports without beating 0.5


def test_a_nan_report_prunes_and_a_report_before_first_step_is_an_error():
    study = optuna.create_study(pruner=TorchHPOPruner(th.MedianStopping()))
    study.optimize(curves([1.0], nan_at=2), n_trials=1)
    assert states(study) == "P" and max(study.trials[0].intermediate_values) == 2
    late = optuna.create_study(pruner=TorchHPOPruner(th.MedianStopping(), first_step=1))
    with pytest.raises(ValueError, match=r"reported step 0, before first_step=1.*first_step=0"):
        late.optimize(curves([1.0]), n_trials=1)


def test_reports_past_the_budget_go_on_with_a_warning():
    study = optuna.create_study(pruner=TorchHPOPruner(th.ASHA(1, 3)))
    with pytest.warns(UserWarning, match="past its budget of 3 epochs"):
        study.optimize(curves([1.0], epochs=5), n_trials=1)
    assert states(study) == "C"


def test_brackets_persist_in_sqlite_across_processes(tmp_path):
    """Hyperband(1, 9): brackets of 9, 5 and 3 trials. This process, with a fresh pruner, goes on filling them from
    the attrs that another process stored, instead of starting the first bracket again."""
    url = f"sqlite:///{tmp_path / 'o.db'}"
    code = f"""
import optuna, torchhpo as th
from torchhpo.integrations.optuna import TorchHPOPruner, TorchHPOSampler
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(study_name="s", storage="{url}", load_if_exists=True,
                            sampler=TorchHPOSampler("random", seed=0), pruner=TorchHPOPruner(th.Hyperband(1, 9)))
def objective(trial):
    x = trial.suggest_float("x", 0, 1)
    for epoch in range(9):
        trial.report(x + 1 / (epoch + 1), epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return x
study.optimize(objective, n_trials=6)
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, timeout=120,
                   env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": ""})
    namespace = {}
    exec(code, namespace)  # the same study, here
    study = optuna.load_study(study_name="s", storage=url)
    brackets = [t.system_attrs["torchhpo:scheduler"]["attrs"]["bracket"] for t in study.trials]
    assert brackets == [2] * 9 + [1] * 3
    assert all("torchhpo:param:x" in t.system_attrs for t in study.trials[1:])  # trial 0 had no relative space
    assert len({t.params["x"] for t in study.trials}) == 12  # the second process saw the first one's draws


def test_pruner_takes_a_name_and_refuses_none():
    assert isinstance(TorchHPOPruner("median").scheduler, th.MedianStopping)
    with pytest.raises(ValueError, match="NopPruner"):
        TorchHPOPruner(None)
    with pytest.raises(ValueError, match="first_step"):
        TorchHPOPruner("median", first_step=-1)


# --- the recipe ------------------------------------------------------------------------------------------------
def test_recipe_switches_a_study_in_one_line():
    with warnings.catch_warnings():
        out = run_script("recipes/optuna_sampler_pruner.py", "--smoke")
    assert "optuna (TPESampler + HyperbandPruner)" in out and "torchhpo (GP + Hyperband)" in out
    assert np.isfinite([float(line.split("best val loss")[1].split()[0]) for line in out.splitlines()
                        if "best val loss" in line]).all()
