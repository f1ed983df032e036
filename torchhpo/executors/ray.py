"""``Ray``: trials as Ray tasks on a Ray cluster; the study, searcher, scheduler and storage stay in the driver.

Ray itself is imported when a ``Ray`` executor is built (``import ray`` here is the Ray package: imports are
absolute), so that ``import torchhpo`` does not need it.

Checkpoints on a cluster of several nodes travel with the task ("ship"): the driver puts a paused trial's
checkpoint file in Ray's object store with the task, the trial saves into a folder of its own node, and the last
state it saved comes back with its outcome, to be written into the study's checkpoint folder. A trial paused on
one node therefore resumes on any other, and the study's folder stays on the driver's machine alone.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from torchhpo.checks import integer, number
from torchhpo.executors.base import (
    Outcome,
    Refusal,
    TrainFn,
    answer_report,
    decided,
    error_text,
    release_memory,
    run_trial,
)
from torchhpo.threads import Threads, trial_threads
from torchhpo.trial import Decision, Reporter, Status, Trial, checkpoint_file

CHECKPOINTS = ("auto", "ship", "shared")

__all__ = ["Ray"]


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ImportError("th.Ray needs Ray: pip install 'torchhpo[ray]' (or pip install 'ray[default]')") from e
    return ray


class _Mailbox:
    """The Ray actor (async) between trials and the driver: a trial's report waits here for the driver's decision."""

    def __init__(self) -> None:
        import asyncio

        self._reports: list[tuple[int, int, float]] = []
        self._started: list[int] = []
        self._arrived = asyncio.Event()
        self._decisions: dict[int, Any] = {}

    async def report(self, number: int, step: int, value: float) -> Decision | Refusal:
        import asyncio

        decision = asyncio.get_running_loop().create_future()
        self._decisions[number] = decision
        self._reports.append((number, step, value))
        self._arrived.set()
        return await decision

    async def start(self, number: int) -> None:
        self._started.append(number)
        self._arrived.set()

    async def poll(self, timeout: float) -> tuple[list[int], list[tuple[int, int, float]]]:
        """The trials started and the reports waiting for a decision since the last poll; waits up to ``timeout``
        seconds for one to arrive."""
        import asyncio

        if not self._reports and not self._started:
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        self._arrived.clear()
        out = self._started, self._reports
        self._started, self._reports = [], []
        return out

    async def decide(self, number: int, decision: Decision | Refusal) -> None:
        waiting = self._decisions.pop(number, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(decision)


def _ray_trial(fn: TrainFn, trial: Trial, mailbox: Any, gpus: float, threads: int, ship: bool,
               shipped: bytes | None) -> tuple[Outcome, bytes | None]:
    """One trial as a Ray task: reports go through the mailbox actor and block for the driver's decision. With
    ``ship`` the trial checkpoints into a folder of this node, starting from ``shipped`` (the driver's checkpoint
    file, if any), and the file it last saved returns with the outcome (``None``: it saved nothing)."""
    import ray

    torch.set_num_threads(threads)
    trial.device = torch.device("cuda:0" if gpus > 0 and torch.cuda.is_available() else "cpu")
    trial.reporter = lambda number, step, value: decided(ray.get(mailbox.report.remote(number, step, value)))
    mailbox.start.remote(trial.number)  # the trial's clock (timeout_per_trial) starts now, not at submit
    try:
        if not ship or trial.checkpoint_dir is None:
            return run_trial(fn, trial), None
        with tempfile.TemporaryDirectory(prefix="torchhpo-ckpt-") as local:
            trial.checkpoint_dir = Path(local)
            path = checkpoint_file(trial.checkpoint_dir, trial.number)
            if shipped is not None:
                path.write_bytes(shipped)
            outcome = run_trial(fn, trial)
            saved = path.read_bytes() if path.exists() else None
            return outcome, saved if saved != shipped else None
    finally:
        trial.reporter = None
        release_memory()


class Ray:
    """Runs trials as Ray tasks on a Ray cluster; the study, searcher, scheduler and storage stay in the driver.

    Reports travel through an async actor: the trial blocks on it until the driver, polling it in ``wait()``,
    decides. A task whose worker dies fails its trial ("worker died: ...") and Ray starts a new worker.

    Args:
        address: ``None`` starts (or joins the already started) local Ray; ``"auto"`` joins the cluster this
            machine belongs to (``ray start --head`` / ``ray start --address=...``); ``"ray://host:10001"`` a
            remote one.
        resources_per_trial: Ray resources of one trial, e.g. ``{"cpu": 1, "gpu": 1}`` (fractions allowed); a
            ``ValueError`` when no node of the cluster has that much.
        slots: trials at once; default: as many as the cluster's CPUs and GPUs hold.
        threads: ``torch.set_num_threads`` in each trial, before it starts. ``"auto"``: ``$TORCHHPO_THREADS`` (in
            the driver's environment) if set, else the trial's ``resources_per_trial["cpu"]`` rounded down, at
            least 1, at most ``$OMP_NUM_THREADS`` if set (``torchhpo.threads.trial_threads``).
        checkpoints: how ``trial.save``/``trial.load`` reach the study's checkpoint folder. ``"ship"``: through
            Ray's object store with each task (any node can resume any paused trial; the folder is only on the
            driver's machine); ``"shared"``: directly, for a folder every node mounts at the same path (NFS, a
            shared disk), which saves copying large states; ``"auto"`` (default): ``"ship"`` when the cluster has
            more than one node at construction, else ``"shared"``.

    Example:
        >>> import torchhpo as th
        >>> ex = th.Ray(address="auto", resources_per_trial={"cpu": 2, "gpu": 1})  # doctest: +SKIP
    """

    concurrent = True  # trials run while the driver waits: the study prefetches the next config meanwhile

    def __init__(self, address: str | None = None, resources_per_trial: dict[str, float] | None = None, *,
                 slots: int | None = None, threads: Threads = "auto",
                 checkpoints: str = "auto") -> None:
        res = {"cpu": 1.0, "gpu": 0.0, **(resources_per_trial or {})}
        if set(res) - {"cpu", "gpu"} or res["cpu"] == res["gpu"] == 0:
            raise ValueError(f"Ray: resources_per_trial must be like {{'cpu': 1, 'gpu': 0}} with non-negative numbers, "
                             f"not all zero; got {resources_per_trial!r}")
        res = {key: number(f"Ray: resources_per_trial[{key!r}]", value) for key, value in res.items()}
        integer("Ray: slots", slots, none=True)
        self.threads = trial_threads("Ray", threads, res["cpu"])  # checked before a Ray starts
        if checkpoints not in CHECKPOINTS:
            raise ValueError(f"Ray: checkpoints must be one of {list(CHECKPOINTS)}, got {checkpoints!r}")
        ray = _import_ray()
        self._own = not ray.is_initialized()
        if self._own:
            ray.init(address=address, include_dashboard=False, logging_level="warning")
        self.resources = res
        total = ray.cluster_resources()
        unfit = _unfit(res, total, _node_resources(ray))
        if unfit is not None:  # no trial could ever be scheduled: say so now instead of waiting forever
            if self._own:
                ray.shutdown()
            raise ValueError(unfit)
        self.ship = checkpoints == "ship" or (checkpoints == "auto" and len(_node_resources(ray)) > 1)
        fits = [total.get(k.upper(), 0.0) / v for k, v in res.items() if v > 0]
        self.slots = slots or max(1, int(min(fits) + 1e-9))
        self._task = ray.remote(_ray_trial).options(num_cpus=res["cpu"], num_gpus=res["gpu"], max_retries=0)
        # on the driver's node: a mailbox on a worker node would die with it and take every trial's reports along
        here = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
            node_id=ray.get_runtime_context().get_node_id(), soft=False)
        self._mailbox = ray.remote(_Mailbox).options(num_cpus=0, scheduling_strategy=here).remote()
        self._poll: Any = None
        self._fn: tuple[Any, Any] | None = None
        # ref -> the trial, its reporter (answers its reports), its deadline (from when it starts) and its timeout
        self._running: dict[Any, tuple[Trial, Reporter | None, float, float | None]] = {}

    def __enter__(self) -> Ray:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Ray(resources_per_trial={self.resources}, slots={self.slots}, threads={self.threads}, "
                f"checkpoints={'ship' if self.ship else 'shared'!r})")

    def submit(self, fn: TrainFn, trial: Trial, *, timeout: float | None = None) -> None:
        ray = _import_ray()
        if len(self._running) >= self.slots:
            raise RuntimeError(f"Ray: all {self.slots} slots are busy; wait() for one before submitting")
        if self._fn is None or self._fn[0] is not fn:
            self._fn = (fn, ray.put(fn))  # shipped to the object store once, not once per trial
        path = trial.checkpoint_path
        shipped = ray.put(path.read_bytes()) if self.ship and path is not None and path.exists() else None
        ref = self._task.remote(self._fn[1], trial, self._mailbox, self.resources["gpu"], self.threads, self.ship,
                                shipped)
        self._running[ref] = (trial, trial.reporter, math.inf, timeout)

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        ray = _import_ray()
        end = math.inf if timeout is None else time.monotonic() + timeout
        out: list[Outcome] = []
        while self._running and not out:
            if self._poll is None:
                self._poll = self._mailbox.poll.remote(0.5)
            limit = min(end, *(d for _, _, d, _ in self._running.values())) - time.monotonic()
            ready, _ = ray.wait([self._poll, *self._running], num_returns=1,
                                timeout=None if limit == math.inf else max(0.0, limit))
            if self._poll in ready:
                self._answer(*ray.get(self._poll))
                self._poll = None
            out += [self._collect(ref) for ref in ready if ref in self._running]
            out += self._expire()
            if time.monotonic() >= end:
                break
        return out

    def _answer(self, started: list[int], reports: list[tuple[int, int, float]]) -> None:
        for ref, (trial, reporter, _, timeout) in self._running.items():
            if trial.number in started:
                self._running[ref] = (trial, reporter, math.inf if timeout is None else time.monotonic() + timeout, timeout)
        reporters = {trial.number: reporter for trial, reporter, _, _ in self._running.values()}
        for trial_number, step, value in reports:  # a trial no longer running (timed out) is told to stop
            answer = (answer_report(reporters[trial_number], trial_number, step, value) if trial_number in reporters
                      else Decision.STOP)
            self._mailbox.decide.remote(trial_number, answer)

    def _collect(self, ref: Any) -> Outcome:
        ray = _import_ray()
        trial = self._running.pop(ref)[0]
        try:
            outcome, saved = ray.get(ref)
            if saved is not None and trial.checkpoint_path is not None:
                _write_atomically(trial.checkpoint_path, saved)
            return outcome
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.OutOfMemoryError) as e:
            message = error_text(e).partition(": ")[2].strip() or type(e).__name__
            return Outcome(trial.number, Status.FAILED, reason=f"worker died: {message.splitlines()[0]}")
        except ray.exceptions.RayError as e:  # e.g. the function could not be unpickled on the worker
            return Outcome(trial.number, Status.FAILED, reason=error_text(e))

    def _expire(self) -> list[Outcome]:
        ray, now, out = _import_ray(), time.monotonic(), []
        for ref, (trial, _, deadline, timeout) in list(self._running.items()):
            if now >= deadline:
                ray.cancel(ref, force=True)  # kills the worker process; Ray starts another
                del self._running[ref]
                out.append(Outcome(trial.number, Status.FAILED, reason=f"timed out after {timeout:g} s"))
        return out

    def close(self) -> None:
        """Cancel the running trials (their workers are killed); shut Ray down only if this executor started it
        (it cannot be used again then; one given a running Ray can)."""
        ray = _import_ray()
        for ref in self._running:
            ray.cancel(ref, force=True)
        self._running.clear()
        self._poll = None
        if self._own and ray.is_initialized():
            ray.shutdown()
            self._own = False


def _write_atomically(path: Path, data: bytes) -> None:
    """``data`` into ``path`` whole or not at all (a crash leaves the previous checkpoint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".shipped")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _node_resources(ray: Any) -> list[dict[str, float]]:
    """The resources of each live node of the Ray cluster (empty when Ray cannot say)."""
    try:
        return [dict(node.get("Resources", {})) for node in ray.nodes() if node.get("Alive", True)]
    except Exception:  # an older or remote Ray without node listings: the cluster's totals still guard
        return []


def _unfit(res: dict[str, float], total: dict[str, float], nodes: list[dict[str, float]]) -> str | None:
    """Why a trial asking for ``res`` (``{"cpu": 1, "gpu": 0}``) could never be scheduled on a Ray cluster with
    these ``total`` resources (``{"CPU": 8.0, "GPU": 1.0}``) and ``nodes``, or ``None`` when it fits somewhere."""
    for key in ("cpu", "gpu"):
        want, have = res[key], total.get(key.upper(), 0.0)
        if want > have + 1e-9:
            fix = (f"drop '{key}' or connect to a cluster with {key.upper()}s" if have == 0 else
                   f"lower '{key}' to at most {have:g}, or connect to a larger cluster")
            return (f"Ray: resources_per_trial asks for {_count(want, key)} per trial; this Ray cluster has "
                    f"{_count(have, key)}: {fix}")
    if nodes and not any(all(node.get(k.upper(), 0.0) + 1e-9 >= v for k, v in res.items()) for node in nodes):
        each = "; ".join(f"{_count(n.get('CPU', 0.0), 'cpu')} and {_count(n.get('GPU', 0.0), 'gpu')}" for n in nodes)
        return (f"Ray: resources_per_trial asks for {_count(res['cpu'], 'cpu')} and {_count(res['gpu'], 'gpu')} per "
                f"trial, and a trial runs on one node; no node of this Ray cluster has that much (its nodes: {each}): "
                "lower resources_per_trial to what one node has")
    return None


def _count(n: float, key: str) -> str:
    """``"1 GPU"``, ``"2 CPUs"``, ``"0.5 GPU"``."""
    return f"{n:g} {key.upper()}{'s' if n > 1 or n == 0 else ''}"

