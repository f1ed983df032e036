import math

import pytest
import torch

import torchhpo as th

SPACE = th.Space({"x": th.Float(-2.0, 2.0), "k": th.Int(1, 3)})


def quadratic(config, trial):
    return (config["x"] - 1.0) ** 2 + config["k"]


def test_ask_tell_and_best_respect_mode():
    for mode, pick in (("min", min), ("max", max)):
        study = th.Study(SPACE, mode=mode, seed=0)
        for _ in range(6):
            trial = study.ask()
            study.tell(trial, quadratic(trial.config, trial))
        assert study.best.value == pick(t.value for t in study.trials)
        assert all(t.status is th.Status.COMPLETED for t in study.trials)


def test_ask_batch_and_numbers():
    study = th.Study(SPACE, seed=0)
    batch = study.ask(n=4)
    assert [t.number for t in batch] == [0, 1, 2, 3]
    assert all(t.status is th.Status.RUNNING for t in study.trials)
    assert len({str(t.config) for t in batch}) == 4


def test_enqueued_configs_run_first_and_are_validated():
    study = th.Study(SPACE, seed=0)
    study.enqueue({"x": 1.0, "k": 1})
    study.enqueue({"x": -1.0, "k": 2})
    with pytest.raises(ValueError, match="outside"):
        study.enqueue({"x": 5.0, "k": 1})
    study.optimize(quadratic, n_trials=4, progress=False)
    assert [t.config for t in study.trials[:2]] == [{"x": 1.0, "k": 1}, {"x": -1.0, "k": 2}]
    assert study.trials[0].attrs["source"] == "enqueued" and study.trials[2].attrs["source"] == "RandomSearch"
    assert study.best.config == {"x": 1.0, "k": 1}


def test_same_seed_same_study():
    a = th.Study(SPACE, seed=3).optimize(quadratic, n_trials=5, progress=False)
    b = th.Study(SPACE, seed=3).optimize(quadratic, n_trials=5, progress=False)
    assert [t.config for t in a.trials] == [t.config for t in b.trials]


def test_failures_are_data_and_the_study_goes_on():
    def flaky(config, trial):
        n = trial.number % 4
        if n == 0:
            raise RuntimeError("boom")
        if n == 1:
            return math.nan
        if n == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return config["x"]

    study = th.Study(SPACE, seed=0).optimize(flaky, n_trials=8, progress=False)
    statuses = [t.status for t in study.trials]
    assert statuses == [th.Status.FAILED] * 3 + [th.Status.COMPLETED] + [th.Status.FAILED] * 3 + [th.Status.COMPLETED]
    assert "RuntimeError: boom" in study.trials[0].reason and "Traceback" in study.trials[0].reason
    assert "returned nan" in study.trials[1].reason
    assert study.trials[2].reason.startswith("CUDA out of memory")
    assert study.best.number in (3, 7)


def test_reported_nan_fails_the_trial():
    def diverges(config, trial):
        for epoch in trial.epochs(3):
            trial.report(math.inf if epoch == 1 else 1.0)
        return 1.0

    study = th.Study(SPACE).optimize(diverges, n_trials=1, progress=False)
    assert study.trials[0].status is th.Status.FAILED and "diverged" in study.trials[0].reason


def test_none_return_falls_back_to_last_report():
    def reports_only(config, trial):
        for epoch in trial.epochs(4):
            trial.report(10.0 - epoch)

    def nothing(config, trial):
        return None

    study = th.Study(SPACE, max_epochs=4).optimize(reports_only, n_trials=1, progress=False)
    assert study.trials[0].value == 7.0 and study.trials[0].reports == {1: 10.0, 2: 9.0, 3: 8.0, 4: 7.0}
    study = th.Study(SPACE).optimize(nothing, n_trials=1, progress=False)
    assert study.trials[0].status is th.Status.FAILED and "returned None" in study.trials[0].reason


def test_ctrl_c_stops_with_storage_consistent(tmp_path):
    def interrupt(config, trial):
        if trial.number == 2:
            raise KeyboardInterrupt
        return config["x"]

    study = th.Study(SPACE, storage=tmp_path / "c.db")
    with pytest.raises(KeyboardInterrupt):
        study.optimize(interrupt, n_trials=5, progress=False)
    back = th.Study.load(tmp_path / "c.db")
    assert [t.status for t in back.trials] == [th.Status.COMPLETED] * 2 + [th.Status.FAILED]
    assert "interrupted" in back.trials[2].reason


def test_timeout_stops_starting_trials():
    import time

    def slow(config, trial):
        time.sleep(0.05)
        return 0.0

    study = th.Study(SPACE).optimize(slow, timeout=0.3, progress=False)
    assert 3 <= len(study.trials) <= 8


def test_tell_errors():
    study = th.Study(SPACE)
    trial = study.ask()
    with pytest.raises(ValueError, match="give the trial's value"):
        study.tell(trial)
    with pytest.raises(ValueError, match="no trial number 9"):
        study.tell(9, 1.0)
    with pytest.raises(ValueError, match="status must be"):
        study.tell(trial, 1.0, status="done")
    study.tell(trial, status=th.Status.FAILED, reason="oops")
    with pytest.raises(ValueError, match="already failed"):
        study.tell(trial, 1.0)
    t2 = study.ask()
    assert study.tell(t2, math.inf).status is th.Status.FAILED


def test_tell_pruned_keeps_last_report():
    study = th.Study(SPACE)
    trial = study.ask()
    trial.report(3.0)
    trial.report(2.0)
    assert study.tell(trial, status=th.Status.PRUNED).value == 2.0


def test_bad_arguments_are_clear():
    with pytest.raises(TypeError, match="wrap your dict"):
        th.Study({"x": th.Float(0, 1)})
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        th.Study(SPACE, mode="minimize")
    with pytest.raises(ValueError, match="max_epochs must be a positive int"):
        th.Study(SPACE, max_epochs=0)
    with pytest.raises(ValueError, match="give n_trials, timeout or max_epochs_total"):
        th.Study(SPACE).optimize(quadratic)
    with pytest.raises(ValueError, match="n_trials must be"):
        th.Study(SPACE).optimize(quadratic, n_trials=-1)
    with pytest.raises(ValueError, match="ask\\(n\\)"):
        th.Study(SPACE).ask(0)
    with pytest.raises(ValueError, match="no trial has completed"):
        _ = th.Study(SPACE).best


def test_progress_bar_shows_best(capsys):
    th.Study(SPACE, seed=0).optimize(quadratic, n_trials=3)
    err = capsys.readouterr().err
    assert "3/3" in err and "best=" in err


def test_dataframe():
    pytest.importorskip("pandas")
    df = th.Study(SPACE, seed=0).optimize(quadratic, n_trials=3, progress=False).to_dataframe()
    assert list(df["number"]) == [0, 1, 2] and "config.x" in df and set(df["status"]) == {"completed"}


def test_tune_decorator_keeps_the_function_callable():
    @th.tune(SPACE, mode="min", max_epochs=3)
    def train(config, trial):
        """Docs survive."""
        for _ in trial.epochs():
            trial.report(config["x"])
        return quadratic(config, trial)

    assert train({"x": 1.0, "k": 1}) == 1.0
    assert train.__doc__ == "Docs survive." and train.__name__ == "train"
    with pytest.raises(ValueError, match="outside"):
        train({"x": 9.0, "k": 1})
    study = train.optimize(n_trials=5, seed=0, progress=False)
    assert study.name == "train" and study.mode == "min" and len(study.trials) == 5
    assert all(t.reports.keys() == {1, 2, 3} for t in study.trials)
    with pytest.raises(TypeError, match="Space"):
        th.tune({"x": 1})
    with pytest.raises(ValueError, match="mode"):
        th.tune(SPACE, mode="up")


@pytest.mark.parametrize(("kwargs", "match"), [({"fidelity": "bogus"}, "fidelity must be 'epochs' or 'data'"),
                                               ({"fidelity": "data", "scheduler": "median"}, "needs a rung scheduler")])
def test_a_refused_fidelity_creates_no_study_file(tmp_path, kwargs, match):
    """The arguments are checked before the storage is opened: a mistake leaves no file (and no open handle)."""
    with pytest.raises(ValueError, match=match):
        th.Study(SPACE, storage=tmp_path / "s.db", **kwargs)
    assert not (tmp_path / "s.db").exists()


def test_what_the_driver_took_at_construction_cannot_be_reassigned_unseen():
    study = th.Study(th.Space({"x": th.Float(0.0, 1.0)}), seed=0)
    for name, value in (("searcher", th.Sobol(seed=1)), ("scheduler", "asha"), ("max_epochs", 3), ("mode", "max")):
        with pytest.raises(AttributeError, match=f"Study.{name} is fixed once the study is built"):
            setattr(study, name, value)
    study.stale_after = 5.0  # a knob the driver reads at each use stays settable
    assert study.stale_after == 5.0 and isinstance(study.searcher, th.RandomSearch)
