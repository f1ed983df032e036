"""Whatever goes wrong in one trial fails that trial with a reason, and the study goes on, on every executor:
odd exceptions and return values, a driver that cannot handle a report, processes a trial leaves behind; and
the setups that used to hang or cascade (a Ray cluster without the resources asked, a script without a
``__main__`` guard) stop at once with one error that names the fix."""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from support import ROOT

import torchhpo as th
from torchhpo.trial import Decision

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


# --- the driver cannot handle a report ---------------------------------------------------------------------------
class RefuseTrialOne:
    """A buggy user scheduler: it raises on every report of trial 1."""

    def on_report(self, trial, step, score, peers):
        if trial.number == 1:
            raise RuntimeError("scheduler bug")
        return Decision.CONTINUE


def three_epochs(config, trial):
    for epoch in trial.epochs(3):
        trial.report(config["x"] + epoch)
    return config["x"]


def swallows(config, trial):
    """Catches every exception around report: the trial must still fail (its report was lost)."""
    for epoch in trial.epochs(3):
        try:
            trial.report(config["x"] + epoch)
        except Exception:
            pass
    return config["x"]


@pytest.mark.parametrize("train", [three_epochs, swallows])
def test_a_scheduler_error_fails_only_that_trial(executor, train):
    got = run(executor, train, [0.1, 0.2, 0.3], study={"scheduler": RefuseTrialOne()})
    bad = got[0.2]
    assert bad.status is th.Status.FAILED
    assert bad.reason.startswith("the driver could not handle the report at step 1: RuntimeError: scheduler bug"), \
        bad.reason
    assert all(got[x].status is th.Status.COMPLETED for x in (0.1, 0.3))


def test_storage_refusing_a_report_fails_only_that_trial(executor, tmp_path):
    def train(config, trial):
        trial.report(config["x"], step=2**70 if config["x"] == 0.2 else 1)  # beyond SQLite's 64-bit INTEGER
        return config["x"]

    got = run(executor, train, [0.1, 0.2, 0.3], study={"storage": tmp_path / "s.db"})
    assert got[0.2].status is th.Status.FAILED
    assert got[0.2].reason.startswith(f"the driver could not handle the report at step {2**70}: OverflowError")
    assert all(got[x].status is th.Status.COMPLETED for x in (0.1, 0.3))


def test_a_scheduler_returning_no_decision_fails_that_trial(executor):
    class Stringly:
        def on_report(self, trial, step, score, peers):
            return "stop" if trial.number == 0 else Decision.CONTINUE

    got = run(executor, three_epochs, [0.1, 0.2], study={"scheduler": Stringly()})
    assert got[0.1].status is th.Status.FAILED and "returned a str ('stop'); expected a Decision" in got[0.1].reason
    assert got[0.2].status is th.Status.COMPLETED


class Logged:
    """A user's executor around another one: it sees every report by wrapping the trial's own reporter, the one
    place the report path is wired."""

    def __init__(self, inner, seen):
        self.inner, self.seen, self.slots, self.concurrent = inner, seen, inner.slots, inner.concurrent

    def submit(self, fn, trial, *, timeout=None):
        hook = trial.reporter

        def logged(number, step, value):
            self.seen.append((number, step))
            return hook(number, step, value)

        trial.reporter = logged
        self.inner.submit(fn, trial, timeout=timeout)

    def wait(self, timeout=None):
        return self.inner.wait(timeout)

    def close(self):
        self.inner.close()


def test_an_executor_wrapping_the_reporter_sees_every_report_and_keeps_the_guard(executor):
    seen = []
    got = run(Logged(executor, seen), three_epochs, [0.1, 0.2, 0.3], study={"scheduler": RefuseTrialOne()})
    assert got[0.2].status is th.Status.FAILED
    assert got[0.2].reason.startswith("the driver could not handle the report at step 1: RuntimeError: scheduler bug")
    assert all(got[x].status is th.Status.COMPLETED for x in (0.1, 0.3))
    assert sorted(seen) == [(0, 1), (0, 2), (0, 3), (1, 1), (2, 1), (2, 2), (2, 3)]


# --- processes a trial leaves behind ------------------------------------------------------------------------------
def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting for a reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.skipif(os.name != "posix", reason="process groups are POSIX")
def test_a_killed_worker_takes_the_processes_its_trial_started_with_it(tmp_path):
    def train(config, trial):
        import subprocess

        child = subprocess.Popen(["sleep", "1000"])
        (tmp_path / f"{config['x']}").write_text(str(child.pid))
        if config["x"] == 0.2:
            os.kill(os.getpid(), 9)  # a crash: the worker is replaced
        time.sleep(60)  # 0.1 hangs: killed at its timeout

    with th.Processes(devices=["cpu"] * 2) as ex:
        got = run(ex, train, [0.1, 0.2], timeout_per_trial=3)
        assert got[0.1].status is th.Status.FAILED and got[0.1].reason == "timed out after 3 s"
        assert got[0.2].status is th.Status.FAILED and "worker died" in got[0.2].reason
        pids = [int((tmp_path / f"{x}").read_text()) for x in (0.1, 0.2)]
        end = time.monotonic() + 5
        while any(alive(p) for p in pids) and time.monotonic() < end:
            time.sleep(0.1)
        assert not any(alive(p) for p in pids), "a trial's child process outlived its killed worker"


# --- a script without `if __name__ == "__main__":` -----------------------------------------------------------------
SCRIPT = """
import torchhpo as th

def train(config, trial):
    return config["x"]

{top}
{guard}study = th.Study(th.Space({{"x": th.Float(0.0, 1.0)}}), seed=0, storage={db!r})
{indent}study.optimize(train, n_trials=4, {where}, progress=False)
{indent}print("best", study.best.value)
"""
HINT = "torchhpo: worker processes re-ran your script's top level"


@pytest.mark.parametrize("guarded, where", [(False, "devices"), (False, "executor"), (True, "executor")])
def test_a_script_without_a_main_guard_stops_with_one_clear_error(tmp_path, guarded, where):
    """``devices=`` builds the workers inside optimize; ``executor=`` is a ``Processes`` built at the script's
    top level, which a guarded script may do (it starts nothing until the study submits)."""
    script = tmp_path / "search.py"
    script.write_text(textwrap.dedent(SCRIPT.format(
        top='EX = th.Processes(devices=["cpu"] * 2)' if where == "executor" else "",
        guard='if __name__ == "__main__":\n    ' if guarded else "", indent="    " if guarded else "",
        where="executor=EX" if where == "executor" else 'devices=["cpu"] * 2', db=str(tmp_path / "s.db"))))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env,
                          cwd=tmp_path)
    assert time.monotonic() - start < 60
    back = th.Study.load(tmp_path / "s.db").trials
    if guarded:
        assert done.returncode == 0 and "best" in done.stdout, done.stderr
        assert len(back) == 4 and all(t.status is th.Status.COMPLETED for t in back)
        return
    assert done.returncode != 0
    assert done.stderr.count(HINT) == 1, done.stderr
    assert "if __name__ == '__main__':" in done.stderr
    for cascade in ("IntegrityError", "bootstrapping phase", "worker died"):
        assert cascade not in done.stderr, done.stderr
    assert len(back) <= 2 and all(t.status is th.Status.FAILED for t in back), "a worker started trials of its own"


# --- Ray ------------------------------------------------------------------------------------------------------------
def test_ray_refuses_resources_the_cluster_lacks(ray_cluster):
    have = ray_cluster.cluster_resources()
    cpus, gpus = have.get("CPU", 0.0), have.get("GPU", 0.0)
    if gpus == 0:  # this module's Ray (another module's may have GPUs)
        with pytest.raises(ValueError, match=r"asks for 1 GPU per trial; this Ray cluster has 0 GPUs: drop 'gpu' or "
                                             r"connect to a cluster with GPUs"):
            th.Ray(resources_per_trial={"gpu": 1})
    with pytest.raises(ValueError, match=rf"asks for {cpus + 1:g} CPUs per trial; this Ray cluster has {cpus:g} CPUs?: "
                                         rf"lower 'cpu' to at most {cpus:g}"):
        th.Ray(resources_per_trial={"cpu": cpus + 1})
    assert ray_cluster.is_initialized(), "a refused Ray() must not shut down the Ray it was given"


def test_ray_resources_must_fit_on_one_node():
    from torchhpo.executors.ray import _unfit

    nodes = [{"CPU": 8.0}, {"CPU": 2.0, "GPU": 1.0}]
    assert "no node of this Ray cluster has that much" in _unfit({"cpu": 4, "gpu": 1}, {"CPU": 10, "GPU": 1}, nodes)
    assert _unfit({"cpu": 2, "gpu": 1}, {"CPU": 10, "GPU": 1}, nodes) is None


def test_ray_a_scheduler_error_fails_only_that_trial(ray_cluster):
    with th.Ray(resources_per_trial={"cpu": 1}) as ex:
        got = run(ex, three_epochs, [0.1, 0.2, 0.3], study={"scheduler": RefuseTrialOne()})
    assert got[0.2].status is th.Status.FAILED
    assert got[0.2].reason.startswith("the driver could not handle the report at step 1: RuntimeError: scheduler bug")
    assert all(got[x].status is th.Status.COMPLETED for x in (0.1, 0.3))
