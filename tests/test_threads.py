"""Torch threads inside trials: every executor sets its documented count (or the one given) while the trial runs,
through real executors and a training function that records what it sees; Inline gives the caller's back."""

import pytest
import torch

import torchhpo as th
import torchhpo.threads
from torchhpo.threads import DRIVER_CPUS, trial_threads, usable_cpus

SPACE = th.Space({"x": th.Float(0.0, 1.0)})


def threads_seen(config, trial):
    """Records the torch thread count the trial runs with."""
    trial.set_attr("threads", torch.get_num_threads())
    return config["x"]


def failing(config, trial):
    trial.set_attr("threads", torch.get_num_threads())
    raise RuntimeError("diverged")


def seen(executor, fn=threads_seen, n_trials=2):
    """The thread counts ``fn``'s trials saw under ``executor``."""
    study = th.Study(SPACE, searcher="random", seed=0)
    study.optimize(fn, n_trials=n_trials, executor=executor, progress=False, fail_fast=None)
    return {t.user_attrs["threads"] for t in study.trials}


@pytest.fixture
def no_thread_env(monkeypatch):
    """Neither TORCHHPO_THREADS nor OMP_NUM_THREADS set: the automatic count from the CPUs alone."""
    monkeypatch.delenv("TORCHHPO_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


@pytest.fixture
def caller_threads():
    """The test's own thread count, set to one the executors never choose here, and restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(usable_cpus() + 2)
    yield usable_cpus() + 2
    torch.set_num_threads(before)


def test_inline_default_is_every_cpu_but_the_drivers_and_the_caller_gets_its_count_back(no_thread_env,
                                                                                      caller_threads):
    assert seen(th.Inline("cpu")) == {max(1, usable_cpus() - DRIVER_CPUS)}
    assert torch.get_num_threads() == caller_threads


def test_inline_override_and_restore_after_a_failed_trial(no_thread_env, caller_threads):
    assert seen(th.Inline("cpu", threads=3)) == {3}
    assert seen(th.Inline("cpu", threads=2), failing) == {2}
    assert torch.get_num_threads() == caller_threads


def test_environment_sets_the_automatic_count(monkeypatch, caller_threads):
    monkeypatch.setenv("TORCHHPO_THREADS", "3")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # TORCHHPO_THREADS is the exact count; OMP_NUM_THREADS a ceiling
    assert seen(th.Inline("cpu")) == {3}
    assert seen(th.Inline("cpu", threads=2)) == {2}  # an explicit argument wins
    monkeypatch.delenv("TORCHHPO_THREADS")
    assert trial_threads("Inline", "auto", 8.0) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert (trial_threads("Inline", "auto", 8.0), trial_threads("Inline", "auto", 2.5)) == (4, 2)


def test_processes_default_and_override(no_thread_env):
    with th.Processes(devices=["cpu"] * 2) as ex:
        assert seen(ex, n_trials=4) == {max(1, (usable_cpus() - DRIVER_CPUS) // 2)}
    with th.Processes(devices=["cpu"], threads=3) as ex:
        assert seen(ex) == {3}


def test_ray_default_is_the_trials_cpus(ray_cluster, no_thread_env):
    with th.Ray(resources_per_trial={"cpu": 2}) as ex:
        assert ex.threads == 2 and seen(ex) == {2}
    with th.Ray(threads=3) as ex:
        assert seen(ex) == {3}


@pytest.mark.parametrize("make, message", [
    (lambda: th.Inline("cpu", threads="many"), "Inline: threads must be a positive int or 'auto', got 'many'"),
    (lambda: th.Inline("cpu", threads=0), "Inline: threads must be a positive int, got 0"),
    (lambda: th.Processes(devices=["cpu"], threads=1.5), "Processes: threads must be a positive int, got 1.5"),
])
def test_bad_thread_counts_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_environment_is_refused(monkeypatch):
    monkeypatch.setenv("TORCHHPO_THREADS", "all")
    with pytest.raises(ValueError, match="TORCHHPO_THREADS='all': expected a positive int"):
        th.Inline("cpu")



def test_make_executor_passes_threads_on(no_thread_env):
    from torchhpo.executors import make_executor

    assert seen(make_executor(None, "cpu", threads=2)) == {2}
    assert make_executor(None, ["cpu"] * 2, threads=3).threads == 3


def _recording(monkeypatch, owner, name, wrap=lambda f: f):
    """Wrap ``owner.name`` (in ``wrap``, e.g. ``staticmethod``) so that every call records the torch thread count
    it ran with."""
    counts = []
    inner = getattr(owner, name)

    def wrapper(*args, **kwargs):
        counts.append(torch.get_num_threads())
        return inner(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrap(wrapper))
    return counts


def _gp_study(searcher):
    study = th.Study(SPACE, searcher=searcher, seed=0)
    study.optimize(lambda config, trial: (config["x"] - 0.3) ** 2, n_trials=6, executor=th.Inline("cpu"),
                   progress=False)
    return study


def test_a_small_gp_suggestion_runs_on_the_drivers_thread_and_gives_the_callers_count_back(monkeypatch,
                                                                                          caller_threads):
    pytest.importorskip("botorch")
    import torchhpo.gp.searcher as gp_searcher
    counts = _recording(monkeypatch, gp_searcher, "maximize_acquisition")
    _gp_study(th.GP(seed=0, n_initial=3))
    assert counts and set(counts) == {DRIVER_CPUS}
    assert torch.get_num_threads() == caller_threads
    # from MODEL_THREADS_MIN_POINTS training points on, a CPU model keeps the caller's threads
    monkeypatch.setattr(torchhpo.threads, "MODEL_THREADS_MIN_POINTS", 3)
    counts.clear()
    _gp_study(th.GP(seed=0, n_initial=3))
    assert counts and set(counts) == {caller_threads}


def test_the_freeze_thaw_curve_model_runs_on_the_drivers_thread(monkeypatch, caller_threads):
    pytest.importorskip("botorch")
    from torchhpo.schedulers.curve_model import CurveModel
    counts = _recording(monkeypatch, CurveModel, "_solve", staticmethod)

    def train(config, trial):
        for epoch in trial.epochs():
            trial.report(config["x"] / (epoch + 1))
        return config["x"] / trial.max_epochs

    study = th.Study(SPACE, scheduler=th.FreezeThaw(1, 4), max_epochs=4, searcher="random", seed=0)
    study.optimize(train, n_trials=5, executor=th.Inline("cpu"), progress=False)
    assert counts and set(counts) == {DRIVER_CPUS}
    assert torch.get_num_threads() == caller_threads
