import re

import numpy as np
import pytest
import torch

import torchhpo as th
from torchhpo.trial import Decision


def test_epochs_and_default_steps():
    trial = th.Trial(0, {}, max_epochs=3)
    seen = []
    trial.reporter = lambda n, step, v: seen.append((n, step, v)) or Decision.CONTINUE
    assert list(trial.epochs()) == [0, 1, 2]
    t = th.Trial(5, {}, reporter=trial.reporter)
    t.report(1.0)
    t.report(2.0, step=10)
    t.report(3.0)
    assert seen == [(5, 1, 1.0), (5, 10, 2.0), (5, 11, 3.0)]


def test_report_stop_raises_pruned_and_ends_epochs():
    trial = th.Trial(0, {}, max_epochs=10, reporter=lambda n, s, v: Decision.STOP if s == 3 else Decision.CONTINUE)
    ran = []
    with pytest.raises(th.TrialPruned):
        for epoch in trial.epochs():
            ran.append(epoch)
            trial.report(1.0)
    assert ran == [0, 1, 2] and trial.pruned


def test_epochs_needs_a_budget_and_caps_at_the_trials():
    with pytest.raises(ValueError, match="no epoch budget"):
        list(th.Trial(0, {}).epochs())
    assert list(th.Trial(0, {}, max_epochs=2).epochs(5)) == [0, 1]
    assert list(th.Trial(0, {}).epochs(2)) == [0, 1]


def test_checkpoint_resume_continues_after_saved_epoch(tmp_path):
    def train(trial, stop_after=None):
        w = trial.load() or {"w": torch.zeros(2)}
        done = []
        for epoch in trial.epochs():
            w["w"] += 1
            trial.save(w)
            done.append(epoch)
            if epoch == stop_after:
                break
        return w, done

    first = th.Trial(7, {}, max_epochs=5, checkpoint_dir=tmp_path)
    _, done = train(first, stop_after=1)
    assert done == [0, 1]
    w, done = train(th.Trial(7, {}, max_epochs=5, checkpoint_dir=tmp_path))
    assert done == [2, 3, 4] and torch.equal(w["w"], torch.full((2,), 5.0))
    assert th.Trial(8, {}, checkpoint_dir=tmp_path).load() is None


def test_save_without_checkpoint_dir_is_a_clear_error():
    with pytest.raises(RuntimeError, match="no checkpoint_dir"):
        th.Trial(0, {}).save({})


def test_trial_pickles_without_its_reporter():
    import pickle

    trial = th.Trial(3, {"a": 1}, device="cpu", reporter=lambda *a: Decision.CONTINUE)
    back = pickle.loads(pickle.dumps(trial))
    assert back.reporter is None and back.config == {"a": 1} and back.device == torch.device("cpu")


def test_record_scores_turn_the_sign():
    r = th.TrialRecord(0, {}, th.Status.COMPLETED, 2.0, {1: 3.0}, sign=-1)
    assert r.score == -2.0 and r.scores == {1: -3.0}
    assert th.TrialRecord(0, {}).score is None and th.TrialRecord(0, {}).duration is None


@pytest.mark.parametrize("step, error, message", [
    ("2", TypeError, "step must be an int >= 1, got str '2'"),
    (2.0, TypeError, "step must be an int >= 1, got float 2.0"),
    (True, TypeError, "step must be an int >= 1, got bool True"),
    (np.bool_(True), TypeError, "step must be an int >= 1, got numpy.bool"),
    (torch.tensor(2.0), TypeError, "got torch.Tensor"),
    (0, ValueError, "step must be an int >= 1, got 0"),
    (-5, ValueError, "step must be an int >= 1, got -5"),
])
def test_report_refuses_steps_that_are_not_positive_ints(step, error, message):
    seen = []
    trial = th.Trial(0, {}, reporter=lambda n, s, v: seen.append((s, v)) or Decision.CONTINUE)
    with pytest.raises(error, match=re.escape(message)):
        trial.report(1.0, step=step)
    assert seen == [] and trial.last_step == 0


@pytest.mark.parametrize("value, message", [
    ("1.5", "value must be a number, got str '1.5'"),
    (b"1.5", "value must be a number, got bytes b'1.5'"),
    (None, "value must be a number, got NoneType None"),
    (True, "value must be a number, got bool True"),
    ([1.0], "value must be a number, got list [1.0]"),
    (torch.ones(2), "value must be a number, got torch.Tensor"),
])
def test_report_refuses_values_that_are_not_numbers(value, message):
    seen = []
    trial = th.Trial(0, {}, reporter=lambda n, s, v: seen.append((s, v)) or Decision.CONTINUE)
    with pytest.raises(TypeError, match=re.escape(message)):
        trial.report(value)
    assert seen == [] and trial.last_step == 0


def test_report_takes_numpy_and_torch_scalars_as_plain_numbers():
    seen = []
    trial = th.Trial(0, {}, reporter=lambda n, s, v: seen.append((s, v)) or Decision.CONTINUE)
    trial.report(np.float32(0.5), step=np.int64(2))
    trial.report(torch.tensor(0.25), step=torch.tensor(3))
    trial.report(np.float64(0.125))
    trial.report(7)
    assert seen == [(2, 0.5), (3, 0.25), (4, 0.125), (5, 7.0)]
    assert all(type(s) is int and type(v) is float for s, v in seen)  # what SQLite and JSON can store


@pytest.mark.parametrize("budget", [2.5, "3", True])
def test_epochs_refuses_a_budget_that_is_not_an_int(budget):
    with pytest.raises(TypeError, match=re.escape(f"epochs(): max_epochs must be an int >= 0, got {budget!r}")):
        list(th.Trial(0, {}).epochs(budget))
    with pytest.raises(TypeError, match="max_epochs must be an int"):
        list(th.Trial(0, {}, max_epochs=budget).epochs())
    assert list(th.Trial(0, {}).epochs(np.int64(2))) == [0, 1]


def test_epochs_refuses_a_negative_budget():
    with pytest.raises(ValueError, match=r"max_epochs must be an int >= 0, got -1"):
        list(th.Trial(0, {}).epochs(-1))
