"""Executors with real processes and a real local Ray: the contract, refill and batch modes, worker death,
timeouts, retries, Ctrl-C, and clear errors for bad arguments."""

import multiprocessing as mp
import os
import pickle
import signal
import threading
import time

import pytest
from support import ROOT

import torchhpo as th
from torchhpo.executors import Executor, make_executor
from torchhpo.testing import check_executor
from torchhpo.trial import Decision

SPACE = th.Space({"x": th.Float(0.0, 1.0)})


@pytest.fixture(scope="module")
def procs():
    """Two CPU workers shared by this module's study tests (a worker start imports torch: seconds here)."""
    with th.Processes(devices=["cpu"] * 2) as ex:
        yield ex


class Recorder:
    """A searcher that records each ask: how many configs, and how many trials were running (pending)."""

    def __init__(self, seed=0):
        self.inner, self.asks = th.Sobol(seed=seed), []

    def ask(self, space, trials, n=1):
        self.asks.append((n, sum(t.status is th.Status.RUNNING for t in trials)))
        self.threads = [*getattr(self, "threads", []), threading.current_thread().name]
        return self.inner.ask(space, trials, n)


class StopAbove:
    """A tiny scheduler: stop a trial at step 1 when its report is above ``threshold`` (for mode="min")."""

    def __init__(self, threshold):
        self.threshold = threshold

    def on_report(self, trial, step, score, peers):
        return Decision.STOP if step == 1 and -score > self.threshold else Decision.CONTINUE


def curve(config, trial):
    for epoch in trial.epochs(3):
        trial.report(config["x"] + epoch)
    return config["x"]


# --- the contract -----------------------------------------------------------------------------------------------
def test_contract_inline():
    check_executor(th.Inline)


def test_contract_processes():
    check_executor(lambda: th.Processes(devices=["cpu"], per_device=2))


def test_contract_ray(ray_cluster):
    check_executor(lambda: th.Ray(resources_per_trial={"cpu": 1}))
    assert ray_cluster.is_initialized(), "Ray(address=None) must not shut down a Ray the user started"


def test_inline_asks_after_each_result_without_prefetching():
    study = th.Study(SPACE, searcher=Recorder(), seed=0)
    study.optimize(curve, n_trials=4, progress=False)
    assert study.searcher.asks == [(1, 0)] * 4 and set(study.searcher.threads) == {threading.current_thread().name}


def test_inline_prefetch_thread_asks_while_the_trial_trains():
    """``prefetch="thread"`` with ``Inline``: after the first config, each ask runs in the prefetch thread with
    the training trial pending, and the trials still run in the caller's thread."""
    seen = []

    def train(config, trial):
        seen.append(threading.current_thread().name)
        return curve(config, trial)

    study = th.Study(SPACE, searcher=Recorder(), seed=0)
    study.optimize(train, n_trials=5, prefetch="thread", progress=False)
    asks = study.searcher.asks
    assert asks[0] == (1, 0) and all(pending == 1 for n, pending in asks[1:]), asks
    assert all(name.startswith("torchhpo-prefetch") for name in study.searcher.threads[1:])
    assert seen == [threading.current_thread().name] * 5 and len({t.config["x"] for t in study.trials}) == 5


class MarksItsProcess:
    """A picklable searcher (Sobol inside) that creates ``marker`` when it is asked outside the process that built
    it, and counts the asks it answered itself."""

    def __init__(self, marker):
        self.inner, self.marker, self.pid, self.asks = th.Sobol(seed=0), marker, os.getpid(), 0

    def ask(self, space, trials, n=1):
        if os.getpid() != self.pid:
            self.marker.touch()
        else:
            self.asks += 1
        return self.inner.ask(space, trials, n)


def test_prefetch_process_asks_in_a_process_of_its_own(tmp_path):
    """``prefetch="process"``: once the model process is up (a thread asks until then), proposals come
    from a copy of the searcher there, while an Inline trial trains in the driver; nothing repeats or is lost."""
    marker = tmp_path / "asked-elsewhere"
    after = []

    def train(config, trial):
        time.sleep(0.1)
        return config["x"]

    def stop_soon(study, record):  # a few trials after the first remote proposal, or at the timeout
        after.append(marker.exists())
        if after.count(True) >= 4:
            study.stop()

    study = th.Study(SPACE, searcher=MarksItsProcess(marker), storage=tmp_path / "s.db", seed=0)
    study.optimize(train, n_trials=2000, timeout=120, prefetch="process", callbacks=[stop_soon], progress=False)
    assert marker.exists(), "no ask ran in the model process"
    assert all(t.status is th.Status.COMPLETED for t in study.trials)
    assert len({t.config["x"] for t in study.trials}) == len(study.trials)
    assert study.searcher.asks < len(study.trials)  # the others were proposed by the copy in the model process


class SlowOnceRemote:
    """A picklable searcher (Sobol inside) whose second ask in the model process touches ``marker`` and then takes
    a minute, as a large GP fit might."""

    def __init__(self, marker):
        self.inner, self.marker, self.pid, self.remote = th.Sobol(seed=0), marker, os.getpid(), 0

    def ask(self, space, trials, n=1):
        if os.getpid() != self.pid:
            self.remote += 1
            if self.remote == 2:
                self.marker.touch()
                time.sleep(60)
        return self.inner.ask(space, trials, n)


def test_an_interrupted_study_does_not_wait_for_the_model_process_ask(tmp_path):
    """Ctrl-C while the model process proposes configs nobody will take: ``optimize`` stops that process and
    raises at once, instead of waiting out its ask; the interrupted trial is failed, the others kept."""
    marker, raised = tmp_path / "remote-ask-running", []

    def train(config, trial):
        end = time.monotonic() + 1.0
        while time.monotonic() < end:  # each trial watches for the slow remote ask a moment
            if marker.exists():
                raised.append(time.monotonic())
                raise KeyboardInterrupt
            time.sleep(0.02)
        return config["x"]

    study = th.Study(SPACE, searcher=SlowOnceRemote(marker), storage=tmp_path / "s.db", seed=0)
    with pytest.raises(KeyboardInterrupt):
        study.optimize(train, n_trials=200, timeout=120, prefetch="process", progress=False)
    assert raised, "the model process never asked twice"
    # the slow ask started before the interrupt and would have held optimize for a minute
    assert time.monotonic() - raised[0] < 10
    assert study.trials[-1].status is th.Status.FAILED and len(study.trials) >= 2
    assert all(t.status is th.Status.COMPLETED for t in study.trials[:-1])


def test_prefetch_process_refuses_a_searcher_it_cannot_send():
    class Local(Recorder):
        pass

    searcher = Local()
    searcher.lock = threading.Lock()  # cannot be pickled
    study = th.Study(SPACE, searcher=searcher, seed=0)
    with pytest.raises(TypeError, match=r"prefetch='process'.*cannot be pickled.*prefetch='thread'"):
        study.optimize(curve, n_trials=2, prefetch="process", progress=False)
    with pytest.raises(ValueError, match=r"prefetch='sometimes' must be one of"):
        study.optimize(curve, n_trials=2, prefetch="sometimes", progress=False)
    assert study.trials == []


# --- the study loop with workers --------------------------------------------------------------------------------
def test_async_refill_passes_running_trials_as_pending_and_never_repeats(procs):
    offset = 0.5  # a closure: captured and shipped to the workers with cloudpickle

    def train(config, trial):
        time.sleep(0.2)
        assert str(trial.device) == "cpu" and os.environ["CUDA_VISIBLE_DEVICES"] == ""
        return (config["x"] - offset) ** 2

    study = th.Study(SPACE, searcher=Recorder(), seed=0)
    study.optimize(train, n_trials=6, executor=procs, progress=False)
    assert [t.status for t in study.trials] == [th.Status.COMPLETED] * 6
    assert len({t.config["x"] for t in study.trials}) == 6, "two workers received the same config"
    assert study.searcher.asks[0] == (2, 0)
    # every later config is proposed while both workers train (both trials pending), in the prefetch thread,
    # so that a freed worker gets its next config at once instead of idling through the searcher's work
    assert all(pending == 2 for n, pending in study.searcher.asks[1:]), study.searcher.asks
    assert all(name.startswith("torchhpo-prefetch") for name in study.searcher.threads[1:])
    assert len({t.attrs["seconds"] > 0.15 for t in study.trials}) == 1  # measured in the worker, around the call


def test_batch_mode_asks_one_batch_per_free_executor(procs):
    study = th.Study(SPACE, searcher=Recorder(), seed=0)
    study.optimize(lambda c, t: c["x"], n_trials=5, executor=procs, batch=True, progress=False)
    assert study.searcher.asks == [(2, 0), (2, 0), (1, 0)]
    assert len(study.trials) == 5 and all(t.status is th.Status.COMPLETED for t in study.trials)


def test_scheduler_decisions_reach_workers(procs):
    study = th.Study(SPACE, scheduler=StopAbove(0.5), seed=0)
    study.optimize(curve, n_trials=6, executor=procs, progress=False)
    for t in study.trials:
        if t.config["x"] > 0.5:
            assert t.status is th.Status.PRUNED and list(t.reports) == [1]
        else:
            assert t.status is th.Status.COMPLETED and list(t.reports) == [1, 2, 3]


def test_killed_worker_fails_its_trial_and_the_study_goes_on(procs, tmp_path):
    def train(config, trial):
        if config["x"] == 0.25:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.05)
        return config["x"]

    path = tmp_path / "s.db"
    study = th.Study(SPACE, storage=path, seed=0)
    for x in (0.1, 0.25, 0.3, 0.4, 0.5, 0.6):
        study.enqueue({"x": x})
    study.optimize(train, n_trials=6, executor=procs, progress=False)
    back = {t.config["x"]: t for t in th.Study.load(path).trials}
    assert back[0.25].status is th.Status.FAILED and "worker died" in back[0.25].reason
    assert "SIGKILL" in back[0.25].reason
    assert all(back[x].status is th.Status.COMPLETED and back[x].value == x for x in (0.1, 0.3, 0.4, 0.5, 0.6))


def test_timeout_per_trial_kills_a_runaway_trial(procs):
    def train(config, trial):
        if config["x"] == 0.5:
            time.sleep(60)
        return config["x"]

    study = th.Study(SPACE, seed=0)
    for x in (0.5, 0.1, 0.2):
        study.enqueue({"x": x})
    start = time.monotonic()
    study.optimize(train, n_trials=3, executor=procs, timeout_per_trial=1.0, progress=False)
    assert time.monotonic() - start < 30
    slow, *rest = study.trials
    assert slow.status is th.Status.FAILED and slow.reason == "timed out after 1 s"
    assert [t.status for t in rest] == [th.Status.COMPLETED] * 2


def test_retries_rerun_a_failed_config_as_new_trials():
    failed = set()

    def flaky(config, trial):
        if config["x"] not in failed:
            failed.add(config["x"])
            raise RuntimeError("flaky")
        return config["x"]

    study = th.Study(SPACE, seed=0)
    study.optimize(flaky, n_trials=3, retries=2, progress=False)
    assert len(study.trials) == 6
    again = [t for t in study.trials if "retry_of" in t.attrs]
    assert all(t.status is th.Status.FAILED for t in study.trials if t not in again)
    assert all(t.status is th.Status.COMPLETED for t in again)
    assert sorted(t.attrs["retry_of"] for t in again) == [t.number for t in study.trials if t not in again]
    assert all(t.config == study.trials[t.attrs["retry_of"]].config for t in again)


def test_retries_stop_after_k_attempts():
    study = th.Study(SPACE, seed=0)
    study.optimize(lambda c, t: float("nan"), n_trials=1, retries=2, progress=False)
    assert [t.attrs.get("retry_of") for t in study.trials] == [None, 0, 1]
    assert all(t.status is th.Status.FAILED for t in study.trials)


def test_interrupt_marks_running_failed_and_leaves_no_process(tmp_path):
    class Interrupt:  # Ctrl-C arriving while the driver waits on its workers
        def on_report(self, trial, step, score, peers):
            raise KeyboardInterrupt

    def train(config, trial):
        trial.report(1.0)
        time.sleep(60)

    before = set(mp.active_children())
    study = th.Study(SPACE, scheduler=Interrupt(), storage=tmp_path / "s.db", seed=0)
    with pytest.raises(KeyboardInterrupt):
        study.optimize(train, n_trials=4, devices=["cpu"] * 2, progress=False)
    assert set(mp.active_children()) <= before, "the workers outlived the interrupted study"
    back = th.Study.load(tmp_path / "s.db").trials
    assert len(back) == 2 and all(t.status is th.Status.FAILED and "interrupted" in t.reason for t in back)


# --- Ray --------------------------------------------------------------------------------------------------------
def test_ray_study_with_pruning_a_dead_worker_and_a_timeout(ray_cluster):
    def train(config, trial):
        if config["x"] == 0.25:
            os.kill(os.getpid(), signal.SIGKILL)
        if config["x"] == 0.75:
            time.sleep(60)
        return curve(config, trial)

    study = th.Study(SPACE, scheduler=StopAbove(0.5), seed=0)
    for x in (0.25, 0.75, 0.1, 0.6, 0.2):
        study.enqueue({"x": x})
    executor = th.Ray(resources_per_trial={"cpu": 1})
    study.optimize(train, n_trials=5, executor=executor, timeout_per_trial=3.0, progress=False)
    executor.close()
    got = {t.config["x"]: t for t in study.trials}
    assert got[0.25].status is th.Status.FAILED and "worker died" in got[0.25].reason
    assert got[0.75].status is th.Status.FAILED and got[0.75].reason == "timed out after 3 s"
    assert got[0.6].status is th.Status.PRUNED and list(got[0.6].reports) == [1]
    assert all(got[x].status is th.Status.COMPLETED and list(got[x].reports) == [1, 2, 3] for x in (0.1, 0.2))
    assert ray_cluster.is_initialized()


def _counted(config, trial):
    """Counts its epochs in its checkpoint; notes whether it started from a saved state."""
    state = trial.load()
    trial.set_attr("loaded", state is not None)
    state = state or {"epochs": []}
    for epoch in trial.epochs():
        state["epochs"].append(epoch)
        trial.save(state)
        trial.set_attr("epochs", list(state["epochs"]))
        trial.report(config["x"] * (epoch + 1) * trial.fidelity)
    return config["x"]


@pytest.mark.parametrize("fidelity", ["epochs", "data"])
def test_ray_checkpoints_through_a_uri(ray_cluster, tmp_path, fidelity):
    """``checkpoints=URI``: a paused trial resumes from the file its last task put at the URI; the study's folder
    gets every saved state; a trial restarted from scratch (fidelity="data") does not see its old file; the
    executor's folder under the URI goes when it closes."""
    pytest.importorskip("pyarrow")
    bucket = tmp_path / "bucket"
    study = th.Study(SPACE, mode="max", scheduler=th.SuccessiveHalving(1, 4, eta=2), seed=0, max_epochs=4,
                     fidelity=fidelity, storage=tmp_path / "s.db")
    with th.Ray(resources_per_trial={"cpu": 1}, checkpoints=bucket.as_uri()) as executor:
        assert executor.checkpoints == bucket.as_uri()
        study.optimize(_counted, n_trials=8, executor=executor, progress=False)
        assert len(list(bucket.iterdir())) == 1, "the executor writes into one folder of its own"
        assert [p for p in bucket.rglob("*") if p.is_file()] == [], "only running trials have files there"
    assert list(bucket.iterdir()) == []
    trials = study.trials
    assert all(t.status in (th.Status.COMPLETED, th.Status.PRUNED) for t in trials)
    resumed = [t for t in trials if t.user_attrs["loaded"]]
    if fidelity == "epochs":
        assert resumed, "no trial resumed from the URI"
        assert all(t.user_attrs["epochs"] == list(range(len(t.user_attrs["epochs"]))) for t in trials)
        best = study.best
        assert best.status is th.Status.COMPLETED
        assert study.checkpoint(best) == {"epochs": [0, 1, 2, 3]}  # streamed into the study's folder
    else:  # every run starts from scratch: the driver forgot the file, and the URI must not hand it back
        assert resumed == [] and max(len(t.reports) for t in trials) > 1


def test_ray_copies_to_the_uri_that_fail_fail_their_trial_alone(ray_cluster, tmp_path, monkeypatch, caplog):
    """A paused trial whose checkpoint cannot reach the URI (a network error as it resumes) fails alone, the study
    goes on; a bucket copy that cannot be deleted afterwards only warns (its trial keeps its result)."""
    pytest.importorskip("pyarrow")
    from torchhpo.executors import ray as ray_executor

    upload, delete, calls = ray_executor._Bucket.upload, ray_executor._Bucket.delete, []

    def flaky_upload(self, path, study_path):  # in the driver only: the first resume's upload fails
        calls.append(path.name)
        if len(calls) == 1:
            raise OSError("connection reset by peer")
        return upload(self, path, study_path)

    def failing_delete(self, study_path):
        delete(self, study_path)
        raise OSError("503 SlowDown")

    monkeypatch.setattr(ray_executor._Bucket, "upload", flaky_upload)
    monkeypatch.setattr(ray_executor._Bucket, "delete", failing_delete)
    study = th.Study(SPACE, mode="max", scheduler=th.SuccessiveHalving(1, 4, eta=2), seed=0, max_epochs=4)
    with th.Ray(resources_per_trial={"cpu": 1}, checkpoints=(tmp_path / "bucket").as_uri()) as executor:
        study.optimize(_counted, n_trials=6, executor=executor, progress=False)
    failed = [t for t in study.trials if t.status is th.Status.FAILED]
    assert len(failed) == 1 and "could not be copied to" in failed[0].reason and "connection reset" in failed[0].reason
    assert sum(t.status is th.Status.COMPLETED for t in study.trials) >= 1
    assert all(t.status in (th.Status.COMPLETED, th.Status.PRUNED) for t in study.trials if t not in failed)
    assert "503 SlowDown" in caplog.text


def _slow_upload_after_training(config, trial):
    """Trains in a blink; its checkpoint takes 3 s to upload (the bucket's upload slowed in this worker)."""
    from torchhpo.executors import ray as ray_executor

    if not getattr(ray_executor._Bucket, "slowed", False):
        upload = ray_executor._Bucket.upload

        def slow(self, path, study_path):
            time.sleep(3)
            return upload(self, path, study_path)

        ray_executor._Bucket.upload, ray_executor._Bucket.slowed = slow, True
    for _ in trial.epochs():
        trial.save({"w": [1.0]})
        trial.report(config["x"])
    return config["x"]


def test_ray_timeout_per_trial_counts_training_not_copies(ray_cluster, tmp_path):
    """A trial that trains within ``timeout_per_trial`` completes although its checkpoint's copy through the URI
    takes longer than the timeout."""
    pytest.importorskip("pyarrow")
    study = th.Study(SPACE, seed=0, max_epochs=1)
    with th.Ray(resources_per_trial={"cpu": 1}, slots=1, checkpoints=(tmp_path / "b").as_uri()) as executor:
        study.optimize(_slow_upload_after_training, n_trials=1, executor=executor, timeout_per_trial=2.0,
                       progress=False)
    assert study.trials[0].status is th.Status.COMPLETED and study.checkpoint(0) == {"w": [1.0]}


def _deletes_its_checkpoint(config, trial):
    for _ in trial.epochs():
        trial.save({"w": [1.0]})
        trial.report(config["x"])
    trial.checkpoint_path.unlink()  # e.g. cleaning up after itself once fully trained
    return config["x"]


@pytest.mark.parametrize("mode", ["ship", "uri"])
def test_ray_a_resumed_trial_that_deletes_its_checkpoint_still_completes(ray_cluster, tmp_path, mode):
    """Nothing to send back is no error: the promoted trial resumes from its file, deletes it at the end, and
    completes."""
    pytest.importorskip("pyarrow")
    study = th.Study(SPACE, mode="max", scheduler=th.SuccessiveHalving(1, 2, eta=2), seed=0, max_epochs=2)
    checkpoints = "ship" if mode == "ship" else (tmp_path / "b").as_uri()
    with th.Ray(resources_per_trial={"cpu": 1}, checkpoints=checkpoints) as executor:
        study.optimize(_deletes_its_checkpoint, n_trials=2, executor=executor, progress=False)
    assert sorted(t.status.value for t in study.trials) == ["completed", "pruned"]


def test_ray_uri_options_stay_with_the_uri():
    """``s3://bucket/ckpt?region=...``: the executor's folder joins the path, the options stay options (a folder
    appended to the whole string would land in the last option's value)."""
    pytest.importorskip("pyarrow")
    from torchhpo.executors.ray import _Bucket

    bucket = _Bucket("s3://mybucket/ckpt?region=eu-west-1&endpoint_override=localhost:9000&scheme=http", "torchhpo-1")
    assert bucket._base == "mybucket/ckpt/torchhpo-1" and bucket._fs.region == "eu-west-1"
    assert pickle.loads(pickle.dumps(bucket))._base == bucket._base


def test_ray_a_checkpoint_lost_at_the_uri_fails_its_trial_alone(ray_cluster, tmp_path, monkeypatch):
    """A state saved at the URI that cannot reach the study's folder is lost: its trial FAILED with the reason,
    never a paused or completed trial without its checkpoint; the study goes on."""
    pytest.importorskip("pyarrow")
    from torchhpo.executors import ray as ray_executor

    real, seen = ray_executor._Bucket.download, []

    def flaky(self, study_path, path, **kwargs):  # in the driver only: the third copy into the study's folder fails
        seen.append(study_path)
        if len(seen) == 3:
            raise OSError("connection reset")
        return real(self, study_path, path, **kwargs)

    monkeypatch.setattr(ray_executor._Bucket, "download", flaky)
    study = th.Study(SPACE, mode="max", seed=0, max_epochs=2)
    with th.Ray(resources_per_trial={"cpu": 1}, checkpoints=(tmp_path / "bucket").as_uri()) as executor:
        study.optimize(_counted, n_trials=5, executor=executor, progress=False)
    statuses = [t.status for t in study.trials]
    assert statuses.count(th.Status.FAILED) == 1 and statuses.count(th.Status.COMPLETED) == 4
    failed = next(t for t in study.trials if t.status is th.Status.FAILED)
    assert "could not be copied" in failed.reason and "connection reset" in failed.reason


# --- choosing an executor, and bad arguments --------------------------------------------------------------------
def test_devices_build_the_executor():
    assert isinstance(make_executor(None, ["cpu", "cpu"]), th.Processes)
    assert make_executor(None, ["cpu", "cpu"]).slots == 2
    assert isinstance(make_executor(None, "cpu"), th.Inline)
    assert isinstance(make_executor(None, "cpu", timeout_per_trial=5), th.Processes)
    assert th.Processes(devices=["cpu"], per_device=3).slots == 3


@pytest.mark.parametrize("make, match", [
    (lambda: th.Processes(devices=["cpu"], per_device=0), "per_device must be a positive int"),
    (lambda: th.Processes(devices=[]), "devices is empty"),
    (lambda: th.Processes(devices=["cpu"], threads=0), "threads must be a positive int"),
    (lambda: th.Ray(resources_per_trial={"tpu": 1}), "resources_per_trial must be like"),
    (lambda: th.Ray(resources_per_trial={"cpu": 0}), "resources_per_trial must be like"),
    (lambda: th.Ray(slots=0), "slots must be a positive int"),
    (lambda: th.Ray(checkpoints="nfs"), "or a pyarrow.fs URI"),
    (lambda: th.Ray(checkpoints="nosuch://bucket"), "cannot be used: Unrecognized filesystem"),
    (lambda: make_executor(th.Inline(), ["cpu"]), "either executor= or devices="),
    (lambda: make_executor(th.Inline(), timeout_per_trial=3), "Inline .* cannot stop"),
])
def test_bad_arguments_say_how_to_fix_them(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("kwargs, match", [
    ({"retries": -1}, "retries must be a non-negative int"),
    ({"timeout_per_trial": 0}, "timeout_per_trial must be a positive number"),
    ({"executor": th.Inline(), "devices": ["cpu", "cpu"]}, "either executor= or devices="),
    ({"executor": th.Inline(), "timeout_per_trial": 1}, "Inline .* cannot stop"),
])
def test_bad_optimize_arguments(kwargs, match):
    study = th.Study(SPACE)
    with pytest.raises(ValueError, match=match):
        study.optimize(lambda c, t: 0.0, n_trials=1, progress=False, **kwargs)
    assert study.trials == [], "a refused call must not start trials"


class Bare:
    """A user's executor that predates ``concurrent``: it lacks a member of the protocol."""

    slots = 1

    def submit(self, fn, trial, *, timeout=None):
        raise AssertionError("a refused executor must not be used")

    def wait(self, timeout=None):
        return []

    def close(self):
        pass


def test_an_executor_off_the_protocol_is_refused_naming_what_it_lacks():
    study = th.Study(SPACE)
    with pytest.raises(TypeError, match=r"executor: Bare lacks concurrent; an executor has slots \(int\), concurrent"):
        study.optimize(lambda c, t: 0.0, n_trials=1, executor=Bare(), progress=False)
    no_slots = type("NoSlots", (Bare,), {"concurrent": False, "slots": 0})()
    with pytest.raises(ValueError, match=r"executor: NoSlots\.slots must be a positive int, got 0"):
        study.optimize(lambda c, t: 0.0, n_trials=1, executor=no_slots, progress=False)
    assert study.trials == []
    assert all(isinstance(ex, Executor) for ex in (th.Inline("cpu"), th.Processes(["cpu"])))


def test_unpicklable_function_is_refused_before_any_worker_starts():
    lock = threading.Lock()
    before = len(mp.active_children())
    ex = th.Processes(devices=["cpu"])
    with pytest.raises(TypeError, match="cannot be pickled"):
        ex.submit(lambda c, t: lock.locked(), th.Trial(0, {"x": 0.0}))
    assert len(mp.active_children()) == before
    ex.close()


# --- the recipe and the benchmark, with tiny settings -------------------------------------------------------------

def test_recipe_multi_gpu_batch_smoke(tmp_path, monkeypatch, load_script):
    try:
        th.Study(SPACE, searcher="gp", scheduler="asha", max_epochs=2)
    except (ImportError, ValueError) as e:
        pytest.skip(f"the recipe needs the GP searcher and ASHA: {e}")
    argv = ["multi_gpu_batch.py", "--devices", "cpu,cpu", "--trials", "4", "--epochs", "2",
            "--storage", str(tmp_path / "r.db")]
    monkeypatch.setattr("sys.argv", argv)
    study = load_script(ROOT / "recipes" / "multi_gpu_batch.py").main()
    assert len(study.trials) == 4 and all(t.status.is_final for t in study.trials)
    assert study.best.value > 0


def test_benchmark_parallel_quick(tmp_path, monkeypatch, load_script):
    monkeypatch.setattr("sys.argv", ["parallel.py", "--quick", "--out", str(tmp_path)])
    load_script(ROOT / "benchmarks" / "parallel.py").main()
    text = (tmp_path / "parallel-quick.md").read_text()
    assert "| processes | 1 |" in text and "| processes | 2 |" in text and "torch " in text


def test_gpu_pinning_counts_the_gpus_the_driver_sees(monkeypatch):
    from torchhpo.executors.processes import _pin

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert _pin("cuda:3") == ("3", "cuda:0") and _pin("cpu") == ("", "cpu")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert _pin("cuda:1") == ("3", "cuda:0")
    with pytest.raises(ValueError, match="not visible here"):
        _pin("cuda:2")


def test_study_timeout_stops_starting_trials_and_lets_running_ones_finish(procs):
    def train(config, trial):
        time.sleep(1.0)
        return config["x"]

    study = th.Study(SPACE, seed=0)
    study.optimize(train, timeout=0.5, executor=procs, progress=False)
    assert len(study.trials) == 2 and all(t.status is th.Status.COMPLETED for t in study.trials)


def test_ray_missing_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ImportError, match=r"pip install 'torchhpo\[ray\]'"):
        th.Ray()


def test_ray_uri_checkpoints_without_pyarrow_give_an_install_hint(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "pyarrow", None)  # as if pyarrow were not installed
    monkeypatch.setitem(__import__("sys").modules, "pyarrow.fs", None)
    with pytest.raises(ImportError, match=r"checkpoints=URI\) needs pyarrow: pip install 'torchhpo\[ray\]'"):
        th.Ray(checkpoints="s3://bucket/ckpt")


def test_successive_halving_pauses_and_resumes_across_worker_processes(procs, tmp_path):
    """Paused trials resume from their checkpoints in whichever worker is free: no epoch is trained twice."""
    log = tmp_path / "epochs"
    log.mkdir()

    def train(config, trial):
        for epoch in trial.epochs():
            with open(log / f"{trial.number}", "a") as f:  # a side channel: every epoch actually trained
                f.write(f"{epoch}\n")
            trial.save({"epoch": epoch})
            trial.report((config["x"] - 0.3) ** 2 + 1.0 / (epoch + 1))
        return (config["x"] - 0.3) ** 2

    study = th.Study(SPACE, scheduler=th.SuccessiveHalving(1, 9, eta=3), max_epochs=9, seed=0)
    study.optimize(train, n_trials=9, executor=procs, progress=False)
    assert all(t.status in (th.Status.COMPLETED, th.Status.PRUNED) for t in study.trials)
    assert sum(t.status is th.Status.COMPLETED for t in study.trials) == 1
    assert sorted(max(t.reports) for t in study.trials) == [1] * 6 + [3] * 2 + [9]
    for t in study.trials:
        ran = [int(e) for e in (log / f"{t.number}").read_text().split()]
        assert ran == list(range(max(t.reports))), (t.number, ran)


def test_simulated_clock_does_not_prefetch():
    """Virtual time has nothing to overlap: a sequential simulated run asks after every result, like Inline."""
    from torchhpo.simulate import Curves, Simulated, Tabulated

    curves = Curves.load()
    study = th.Study(curves.space, searcher=Tabulated(curves, Recorder()), max_epochs=curves.epochs, seed=0)
    study.optimize(lambda c, t: None, n_trials=3, executor=Simulated(curves, slots=1), progress=False)
    assert study.searcher.searcher.asks == [(1, 0)] * 3
