"""Whatever goes wrong in one trial fails that trial with a reason, and the study goes on, on every executor:
exceptions that cannot be printed, and returned values that are not numbers."""

import numpy as np
import pytest
import torch

import torchhpo as th

SPACE = th.Space({"x": th.Float(0.0, 1.0)})
EXECUTORS = {"inline": lambda: th.Inline("cpu"), "processes": lambda: th.Processes(devices=["cpu"] * 2)}


@pytest.fixture(scope="module", params=sorted(EXECUTORS))
def executor(request):
    """Each executor once for the module (a worker start imports torch: seconds here)."""
    ex = EXECUTORS[request.param]()
    yield ex
    ex.close()


def run(executor, train, xs, **kwargs):
    """A study that runs ``train`` once on each ``x`` of ``xs`` (in this order) and returns its trials by x."""
    study = th.Study(SPACE, seed=0, **kwargs.pop("study", {}))
    for x in xs:
        study.enqueue({"x": x})
    study.optimize(train, n_trials=len(xs), executor=executor, progress=False, **kwargs)
    return {t.config["x"]: t for t in study.trials}


# --- what a training function raises or returns -----------------------------------------------------------------
class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no")


RETURNS = {  # x -> what the training function returns (or raises), and the status and reason expected
    0.1: (Unprintable("x"), th.Status.FAILED, "Unprintable"),
    0.2: ("1.5", th.Status.FAILED, "returned a str ('1.5'); expected a real number"),
    0.3: (True, th.Status.FAILED, "returned a bool (True); expected a real number"),
    0.4: (torch.tensor([0.5, 0.5]), th.Status.FAILED, "returned a Tensor of shape (2,); expected a real number"),
    0.5: (10**400, th.Status.FAILED, "returned an int too large for a float"),
    0.6: (np.float32(0.25), th.Status.COMPLETED, 0.25),
    0.7: (torch.tensor(0.5, dtype=torch.float64), th.Status.COMPLETED, 0.5),
    0.8: (3, th.Status.COMPLETED, 3.0),
    0.9: (np.int64(2), th.Status.COMPLETED, 2.0),
}


def odd(config, trial):
    out = RETURNS[config["x"]][0]
    if isinstance(out, BaseException):
        raise out
    return out


def test_odd_exceptions_and_return_values_fail_only_their_trial(executor):
    got = run(executor, odd, list(RETURNS))
    for x, (_, status, expected) in RETURNS.items():
        t = got[x]
        assert t.status is status, (x, t.status, t.reason)
        if status is th.Status.COMPLETED:
            assert t.value == expected and type(t.value) is float
        else:
            assert expected in t.reason, (x, t.reason)
    assert got[0.1].reason.startswith("Unprintable("), got[0.1].reason  # str() failed: its repr stands in
