"""``Ray``: trials as Ray tasks on a Ray cluster; the study, searcher, scheduler and storage stay in the driver.

Ray itself is imported when a ``Ray`` executor is built (``import ray`` here is the Ray package: imports are
absolute), so that ``import torchhpo`` does not need it.

Checkpoints on a cluster of several nodes travel with the task ("ship"): the driver puts a paused trial's
checkpoint file in Ray's object store with the task, the trial saves into a folder of its own node, and the last
state it saved comes back with its outcome, to be written into the study's checkpoint folder. A trial paused on
one node therefore resumes on any other, and the study's folder stays on the driver's machine alone. Large states
travel instead through storage that every node reaches (a ``pyarrow.fs`` URI: S3, GCS, HDFS, a shared path): the
trial reads and writes its file there, and the driver streams it to and from the study's folder, never holding
it in memory.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import tempfile
import time
import uuid
from collections.abc import Callable
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

CHECKPOINTS = ("auto", "ship", "shared")  # or a pyarrow.fs URI
CANCEL_WAIT = 10.0  # seconds close() waits for cancelled tasks to end before it removes the bucket folder

__all__ = ["Ray"]

log = logging.getLogger("torchhpo")


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
        self._started: list[tuple[int, bool]] = []
        self._arrived = asyncio.Event()
        self._decisions: dict[int, Any] = {}

    async def report(self, number: int, step: int, value: float) -> Decision | Refusal:
        import asyncio

        decision = asyncio.get_running_loop().create_future()
        self._decisions[number] = decision
        self._reports.append((number, step, value))
        self._arrived.set()
        return await decision

    async def start(self, number: int, training: bool = True) -> None:
        """Trial ``number``'s training started (its clock runs) or, ``training=False``, ended (it stops)."""
        self._started.append((number, training))
        self._arrived.set()

    async def poll(self, timeout: float) -> tuple[list[tuple[int, bool]], list[tuple[int, int, float]]]:
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


def _ray_trial(fn: TrainFn, trial: Trial, mailbox: Any, gpus: float, threads: int, move: str | _Bucket | None,
               start: bytes | bool | None) -> tuple[Outcome, bytes | bool | None]:
    """One trial as a Ray task: reports go through the mailbox actor and block for the driver's decision.

    ``move`` says how its checkpoint reaches the driver: ``None``, the study's folder directly (``"shared"``);
    ``"ship"``, the trial starts from ``start`` (the driver's checkpoint file, if any) in a folder of this node, and
    the file it last saved returns with the outcome; a ``_Bucket``, it starts from the bucket's copy of its file
    when ``start`` is ``True`` (else from nothing) and puts what it saves there (``True`` returns with the outcome).
    ``None`` in place of the file: it saved nothing."""
    import ray

    torch.set_num_threads(threads)
    trial.device = torch.device("cuda:0" if gpus > 0 and torch.cuda.is_available() else "cpu")
    trial.reporter = lambda number, step, value: decided(ray.get(mailbox.report.remote(number, step, value)))
    try:
        if move is None or trial.checkpoint_dir is None:
            mailbox.start.remote(trial.number)  # the trial's clock (timeout_per_trial) starts now, not at submit
            return run_trial(fn, trial), None
        with tempfile.TemporaryDirectory(prefix="torchhpo-ckpt-") as local:
            study_path = checkpoint_file(trial.checkpoint_dir, trial.number)  # the driver's: names it in the bucket
            trial.checkpoint_dir = Path(local)
            path = checkpoint_file(trial.checkpoint_dir, trial.number)
            if isinstance(move, _Bucket) and start is True:
                move.download(study_path, path)
            elif isinstance(start, bytes):
                path.write_bytes(start)
            held = path.open("rb") if path.exists() else None  # its inode stays taken: a save makes another
            try:
                before = _stamp(path)
                mailbox.start.remote(trial.number)  # the clock runs while it trains, not while files copy
                outcome = run_trial(fn, trial)
                mailbox.start.remote(trial.number, False)
                after = _stamp(path)
                saved = after is not None and after != before  # a file the trial deleted: nothing to send back
            finally:
                if held is not None:
                    held.close()
            if not saved:
                return outcome, None
            if not isinstance(move, _Bucket):
                return outcome, path.read_bytes()
            move.upload(path, study_path)
            return outcome, True
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
            more than one node at construction, else ``"shared"``. A ``pyarrow.fs`` URI (``"s3://bucket/ckpt"``,
            ``"gs://..."``, ``"hdfs://..."``, ``"file:///nfs/ckpt"``; needs ``pip install pyarrow``): through that
            storage, for states too large for the object store: the driver streams a resuming trial's file into a
            folder ``torchhpo-<id>`` of this executor's under it, the trial reads it there and writes what it saves
            back, and the driver streams that into the study's folder when the task ends (only running trials have
            files there; the folder goes when the executor closes). Credentials come from each node's
            environment, as pyarrow reads them.

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
        if not isinstance(checkpoints, str) or (checkpoints not in CHECKPOINTS and "://" not in checkpoints):
            raise ValueError(f"Ray: checkpoints must be one of {list(CHECKPOINTS)} or a pyarrow.fs URI such as "
                             f"'s3://bucket/checkpoints', got {checkpoints!r}")
        # this executor's own folder under the URI (made once Ray is up): executors sharing a bucket never meet
        bucket = None if checkpoints in CHECKPOINTS else _Bucket(checkpoints, f"torchhpo-{uuid.uuid4().hex[:12]}")
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
        try:
            if bucket is not None:
                bucket.create()
        except ValueError:
            if self._own:
                ray.shutdown()
            raise
        self._bucket = bucket
        self._refused: list[Outcome] = []  # trials whose checkpoint could not reach the bucket: failed at submit
        self._killed: dict[Any, Path | None] = {}  # cancelled tasks -> their bucket copy, deleted once they end
        self.checkpoints = (checkpoints if checkpoints != "auto" else "ship" if len(_node_resources(ray)) > 1
                            else "shared")
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
                f"checkpoints={self.checkpoints!r})")

    def submit(self, fn: TrainFn, trial: Trial, *, timeout: float | None = None) -> None:
        ray = _import_ray()
        if len(self._running) >= self.slots:
            raise RuntimeError(f"Ray: all {self.slots} slots are busy; wait() for one before submitting")
        if self._fn is None or self._fn[0] is not fn:
            self._fn = (fn, ray.put(fn))  # shipped to the object store once, not once per trial
        path = trial.checkpoint_path
        move = None if self.checkpoints == "shared" else self._bucket or "ship"
        start: Any = None
        if move is not None and path is not None and path.exists():
            if self._bucket is None:
                start = ray.put(path.read_bytes())
            else:
                try:
                    self._bucket.upload(path, path)
                except OSError as e:  # this trial fails alone (wait() returns it next), the study goes on
                    self._refused.append(Outcome(trial.number, Status.FAILED, reason=f"its checkpoint could not "
                                                 f"be copied to {self._bucket}: {error_text(e)}"))
                    return
                start = True
        ref = self._task.remote(self._fn[1], trial, self._mailbox, self.resources["gpu"], self.threads, move, start)
        self._running[ref] = (trial, trial.reporter, math.inf, timeout)

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        ray = _import_ray()
        end = math.inf if timeout is None else time.monotonic() + timeout
        out, self._refused = self._refused, []
        self._reap()
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
            self._reap()
            if time.monotonic() >= end:
                break
        return out

    def _answer(self, started: list[tuple[int, bool]], reports: list[tuple[int, int, float]]) -> None:
        clocks = dict(started)  # the latest news of each trial: training (its clock runs) or done training
        for ref, (trial, reporter, _, timeout) in self._running.items():
            if trial.number in clocks:
                deadline = time.monotonic() + timeout if clocks[trial.number] and timeout is not None else math.inf
                self._running[ref] = (trial, reporter, deadline, timeout)
        reporters = {trial.number: reporter for trial, reporter, _, _ in self._running.values()}
        for trial_number, step, value in reports:  # a trial no longer running (timed out) is told to stop
            answer = (answer_report(reporters[trial_number], trial_number, step, value) if trial_number in reporters
                      else Decision.STOP)
            self._mailbox.decide.remote(trial_number, answer)

    def _collect(self, ref: Any) -> Outcome:
        ray = _import_ray()
        trial = self._running.pop(ref)[0]
        path = trial.checkpoint_path
        try:
            outcome, saved = ray.get(ref)
            if isinstance(saved, bytes) and path is not None:
                _write_atomically(path, lambda tmp: tmp.write_bytes(saved))
            elif saved is True and self._bucket is not None and path is not None:
                try:
                    self._bucket.download(path, path)
                except OSError as e:  # what it saved is lost: a trial that goes on as if not would hide it
                    return Outcome(trial.number, Status.FAILED, reason=f"its checkpoint could not be copied from "
                                   f"{self._bucket} into the study's folder: {error_text(e)}")
            return outcome
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.OutOfMemoryError) as e:
            message = error_text(e).partition(": ")[2].strip() or type(e).__name__
            return Outcome(trial.number, Status.FAILED, reason=f"worker died: {message.splitlines()[0]}")
        except ray.exceptions.RayError as e:  # e.g. the function could not be unpickled on the worker
            return Outcome(trial.number, Status.FAILED, reason=error_text(e))
        finally:
            self._discard(path)

    def _discard(self, path: Path | None) -> None:
        """The bucket's copy of a study's checkpoint file, deleted once its task ended (the study's folder has
        what the trial saved; a resume uploads it again): only running trials have files there. Best effort."""
        if self._bucket is not None and path is not None:
            try:
                self._bucket.delete(path)
            except OSError as e:  # close() removes the folder
                log.warning("Ray: could not delete %s's copy of %s (%s)", self._bucket, path.name, error_text(e))

    def _expire(self) -> list[Outcome]:
        ray, now, out = _import_ray(), time.monotonic(), []
        for ref, (trial, _, deadline, timeout) in list(self._running.items()):
            if now >= deadline:
                ray.cancel(ref, force=True)  # kills the worker process; Ray starts another
                del self._running[ref]
                if self._bucket is not None:  # its copy goes once it ended: an upload in flight could land after
                    self._killed[ref] = trial.checkpoint_path
                out.append(Outcome(trial.number, Status.FAILED, reason=f"timed out after {timeout:g} s"))
        return out

    def _reap(self) -> None:
        """Delete the bucket copies of cancelled tasks that have ended."""
        if self._killed:
            ray = _import_ray()
            ended, _ = ray.wait(list(self._killed), num_returns=len(self._killed), timeout=0)
            for ref in ended:
                self._discard(self._killed.pop(ref))

    def close(self) -> None:
        """Cancel the running trials (their workers are killed); shut Ray down only if this executor started it
        (it cannot be used again then; one given a running Ray can)."""
        ray = _import_ray()
        for ref in self._running:
            ray.cancel(ref, force=True)
        cancelled = [*self._running, *self._killed]
        self._running.clear()
        self._killed.clear()
        self._poll = None
        self._refused.clear()
        try:
            if self._bucket is not None:
                if cancelled:  # an upload in flight would land after the folder went, and make it again
                    ray.wait(cancelled, num_returns=len(cancelled), timeout=CANCEL_WAIT)
                self._bucket.remove()
        except OSError as e:
            log.warning("Ray: could not delete %s (%s); delete it by hand", self._bucket, error_text(e))
        finally:
            if self._own and ray.is_initialized():
                ray.shutdown()
                self._own = False


class _Bucket:
    """Folder ``folder`` under a ``pyarrow.fs`` URI that the driver and every node reach; files stream in chunks.
    A study's checkpoint file (its path on the driver's machine) has one place in it: trials of several studies
    run by one executor never meet. Pickles as its URI and folder (a task opens the filesystem anew, with its
    node's credentials)."""

    def __init__(self, uri: str, folder: str) -> None:
        try:
            from pyarrow import fs
        except ImportError as e:
            raise ImportError("th.Ray(checkpoints=URI) needs pyarrow: pip install 'torchhpo[ray]' (or pip install "
                              "pyarrow)") from e
        self.uri, self.folder = uri, folder
        try:  # the URI's options (?region=..., ?endpoint_override=...) stay with it: the folder joins its path
            self._fs, base = fs.FileSystem.from_uri(uri)
        except (ValueError, OSError) as e:
            raise ValueError(f"Ray: checkpoints={uri!r} cannot be used: {e}") from e
        self._base = f"{base.rstrip('/')}/{folder}" if base.rstrip("/") else folder

    def __reduce__(self) -> tuple[Any, ...]:
        return _Bucket, (self.uri, self.folder)

    def __str__(self) -> str:
        return f"{self.uri} (folder {self.folder})"

    def create(self) -> None:
        try:
            self._fs.create_dir(self._base, recursive=True)
        except OSError as e:
            raise ValueError(f"Ray: checkpoints={self.uri!r} cannot be used: {e}") from e

    def _place(self, study_path: Path) -> str:
        folder = hashlib.sha1(str(study_path.parent).encode()).hexdigest()[:12]
        return f"{self._base}/{folder}/{study_path.name}"

    def upload(self, path: Path, study_path: Path) -> None:
        """The local file ``path`` as the bucket's copy of the study's file ``study_path``."""
        from pyarrow import fs

        place = self._place(study_path)
        self._fs.create_dir(place.rpartition("/")[0], recursive=True)
        fs.copy_files(str(path), place, source_filesystem=fs.LocalFileSystem(), destination_filesystem=self._fs)

    def download(self, study_path: Path, path: Path) -> None:
        """The bucket's copy of ``study_path`` into the local file ``path``, whole or not at all
        (``FileNotFoundError`` when it has none)."""
        from pyarrow import fs

        place = self._place(study_path)
        if self._fs.get_file_info(place).type == fs.FileType.NotFound:
            raise FileNotFoundError(f"{self}: no {place}")
        _write_atomically(path, lambda tmp: fs.copy_files(place, str(tmp), source_filesystem=self._fs,
                                                          destination_filesystem=fs.LocalFileSystem()))

    def delete(self, study_path: Path) -> None:
        try:
            self._fs.delete_file(self._place(study_path))
        except FileNotFoundError:
            pass

    def remove(self) -> None:
        """Delete this folder and everything in it."""
        try:
            self._fs.delete_dir(self._base)
        except FileNotFoundError:
            pass


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """Which version of a file ``path`` holds (inode, modification time, size; ``trial.save`` replaces the file),
    or ``None`` when there is none."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _write_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """``path``'s new content, written by ``write(tmp)`` into a file beside it, whole or not at all (a crash leaves
    the previous checkpoint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".shipped")
    write(tmp)
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

