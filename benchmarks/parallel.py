"""Parallel execution: 1 vs 2 workers on ~1-second CPU-bound trials, with Processes and Ray; GP + ASHA with 2 and 4
workers, the driver's prefetching against the version before it; Ray on two simulated nodes against one.

Plain processes doing the same work (no torchhpo) gives the speed-up the cores allow right now (the ceiling,
lower when other jobs share the machine). For each executor and worker count: trials per minute, speed-up over one
worker, worker utilization (time inside the user's function, measured in the worker, over workers x wall time),
seconds per trial inside the function (it grows when other jobs take the cores: the speed-up then falls although
utilization stays high) and the report round trip (trial.report -> driver's scheduler -> decision back in the
worker: median and p99). Workers are started and warmed up before the clock starts; each trial runs
``torch.set_num_threads(1)`` matrix products in 5 epochs, reporting after each.

The GP + ASHA table measures whether workers wait for the model: its trials *sleep* through their 1 s (5 epochs),
so that 4 workers on a machine of 2 shared cores measure the driver, not the cores; the GP's fits are the only
CPU work. Per row: utilization, how long a freed slot waits for its next trial (from the outcome reaching the
driver to the next submit: mean and max), and the searcher's asks (how many, mean seconds). ``--before DIR`` runs
the same rows with the torchhpo of another checkout (e.g. the commit before prefetching changed) in a
subprocess, side by side. The Ray rows start a ``ray.cluster_utils.Cluster`` of nodes with one CPU each, in a
subprocess: one node, then two (``th.Ray(checkpoints="ship")``: paused trials resume on either node from their
checkpoint), on the same sleeping trials with random search + ASHA, 36 per slot (``--node-trials``: a short run is
mostly its start and its tail). The checkpoints table runs successive halving on two simulated nodes with trials
that save a large state (16 and 256 MB) every epoch, once with ``checkpoints="ship"`` (Ray's object store) and
once through a ``file://`` URI, each in a fresh driver process: wall time and the driver's peak memory.
Run from the repository root (PYTHONPATH=. in a checkout not installed).

    git worktree add /tmp/before <commit before>                   # the baseline of the GP + ASHA rows
    nice -n 5 python benchmarks/parallel.py --before /tmp/before  # the published tables (results/parallel.md)
    python benchmarks/parallel.py --quick                         # seconds: a smoke run
    python benchmarks/parallel.py --searcher gp --scheduler asha  # the first table with GP + ASHA in the driver
                                                                  # (results/parallel_gp_asha.md)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import torchhpo as th

SPACE = th.Space({"x": th.Float(0.0, 1.0), "y": th.Float(0.0, 1.0)})
EPOCHS = 5


def calibrate(seconds: float) -> int:
    """How many 128 x 128 matmuls take ``seconds`` on one thread here."""
    torch.set_num_threads(1)
    a = torch.randn(128, 128)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < 0.3:
        a = torch.tanh(a @ a)
        n += 1
    return max(1, int(n * seconds / (time.perf_counter() - start)))


def cpu_trial(work: int):
    """A training function doing ``work`` matmuls in ``EPOCHS`` epochs; the value is a smooth function of x, y."""
    def train(config, trial):
        torch.set_num_threads(1)
        a = torch.randn(128, 128, generator=torch.Generator().manual_seed(trial.number))
        value = (config["x"] - 0.3) ** 2 + (config["y"] - 0.6) ** 2
        for epoch in trial.epochs(EPOCHS):
            for _ in range(work // EPOCHS):
                a = torch.tanh(a @ a)
            trial.report(value + 1.0 / (epoch + 1))
        return value
    return train


BARE = """
import sys, time, torch
torch.set_num_threads(1)
n, work = int(sys.argv[1]), int(sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()  # go
busy = 0.0
for _ in range(n):
    a, start = torch.randn(128, 128), time.perf_counter()
    for _ in range(work):
        a = torch.tanh(a @ a)
    busy += time.perf_counter() - start
print(busy, flush=True)
"""


def measure_bare(workers: int, n_trials: int, work: int) -> dict:
    """The same work in plain processes (no torchhpo, no reports; trials split evenly): the speed-up the cores
    allow. The processes import torch before the clock starts."""
    procs = [subprocess.Popen([sys.executable, "-c", BARE, str(n_trials // workers), str(work // EPOCHS * EPOCHS)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(workers)]
    for p in procs:
        p.stdout.readline()  # ready: torch imported
    start = time.perf_counter()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    busy = sum(float(p.stdout.readline()) for p in procs)
    wall = time.perf_counter() - start
    for p in procs:
        p.communicate()
    return {"executor": "bare processes (ceiling)", "workers": workers, "trials": n_trials, "wall_s": wall,
            "per_min": 60 * n_trials / wall, "util": busy / (wall * workers), "per_trial_s": busy / n_trials,
            "rtt_p50_ms": math.nan, "rtt_p99_ms": math.nan}


def latency_trial(path: str, n: int):
    """A training function timing ``n`` report round trips; writes them to ``path``."""
    def train(config, trial):
        times = []
        for step in range(1, n + 1):
            start = time.perf_counter()
            trial.report(1.0, step=step)
            times.append(time.perf_counter() - start)
        Path(path).write_text(json.dumps(times))
        return 0.0
    return train


def make(kind: str, workers: int):
    if kind == "processes":
        return th.Processes(devices=["cpu"] * workers, threads=1)
    return th.Ray(resources_per_trial={"cpu": 1}, slots=workers, threads=1)


def measure(kind: str, workers: int, n_trials: int, work: int, args: argparse.Namespace) -> dict:
    executor = make(kind, workers)
    try:
        warm = th.Study(SPACE, seed=0)
        warm.optimize(lambda c, t: 0.0, n_trials=2 * workers, executor=executor, progress=False)  # start workers
        study = th.Study(SPACE, mode="min", searcher=args.searcher, scheduler=args.scheduler, seed=args.seed,
                         max_epochs=EPOCHS)
        start = time.perf_counter()
        study.optimize(cpu_trial(work), n_trials=n_trials, executor=executor, batch=args.batch, progress=False)
        wall = time.perf_counter() - start
        busy = sum(t.attrs.get("seconds", 0.0) for t in study.trials)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "latency.json")
            th.Study(SPACE, seed=0).optimize(latency_trial(path, args.reports), n_trials=1, executor=executor,
                                             progress=False)
            times = sorted(json.loads(Path(path).read_text()))
    finally:
        executor.close()
    done = sum(t.status is not th.Status.FAILED for t in study.trials)
    return {"executor": kind, "workers": workers, "trials": done, "wall_s": wall, "per_min": 60 * done / wall,
            "util": busy / (wall * workers), "per_trial_s": busy / max(1, len(study.trials)),
            "rtt_p50_ms": 1e3 * statistics.median(times),
            "rtt_p99_ms": 1e3 * times[int(0.99 * (len(times) - 1))]}


def sleep_trial(seconds: float):
    """A training function sleeping ``seconds`` in ``EPOCHS`` epochs, checkpointing and reporting after each (a
    paused trial resumes where it stopped); the value is a smooth function of x, y."""
    def train(config, trial):
        import time

        value = (config["x"] - 0.3) ** 2 + (config["y"] - 0.6) ** 2
        trial.load()
        for epoch in trial.epochs(EPOCHS):
            time.sleep(seconds / EPOCHS)
            trial.save({})
            trial.report(value + 1.0 / (epoch + 1))
        return value
    return train


class Timed:
    """Executor wrapper: when each outcome reached the driver and when each trial was submitted."""

    def __init__(self, inner) -> None:
        self.inner, self.slots, self.concurrent = inner, inner.slots, inner.concurrent
        self.outcomes: list[float] = []
        self.submits: list[float] = []

    def submit(self, fn, trial, *, timeout=None) -> None:
        self.submits.append(time.perf_counter())
        self.inner.submit(fn, trial, timeout=timeout)

    def wait(self, timeout=None):
        out = self.inner.wait(timeout)
        self.outcomes += [time.perf_counter()] * len(out)
        return out

    def close(self) -> None:
        self.inner.close()

    def refills(self) -> list[float]:
        """Per freed slot, seconds until the next submit fills it (first freed, first filled; slots that free
        once nothing is left to start count none)."""
        events = sorted([(t, 0) for t in self.outcomes] + [(t, 1) for t in self.submits])
        freed: list[float] = []
        gaps = []
        for t, kind in events:
            if kind == 0:
                freed.append(t)
            elif freed:
                gaps.append(t - freed.pop(0))
        return gaps


class CountedSearcher:
    """Searcher wrapper: how many asks, and the seconds each took (in whichever thread)."""

    def __init__(self, inner) -> None:
        self.inner, self.seconds = inner, []

    def ask(self, space, trials, n=1):
        start = time.perf_counter()
        out = self.inner.ask(space, trials, n)
        self.seconds.append(time.perf_counter() - start)
        return out


def measure_gp(workers: int, n_trials: int, seconds: float, seed: int, prefetch: str = "auto") -> dict:
    """GP + ASHA on ``workers`` Processes, sleeping trials: utilization, refill delays, the searcher's asks (in
    the driver's process: those of a model process, ``prefetch="process"``, are not counted)."""
    from torchhpo.searchers import make_searcher

    ex = th.Processes(devices=["cpu"] * workers, threads=1)
    try:
        th.Study(SPACE, seed=0).optimize(lambda c, t: 0.0, n_trials=2 * workers, executor=ex, progress=False)
        timed, searcher = Timed(ex), CountedSearcher(make_searcher("gp", seed=seed))
        study = th.Study(SPACE, mode="min", searcher=searcher, scheduler="asha", seed=seed, max_epochs=EPOCHS)
        start = time.perf_counter()
        kwargs = {} if prefetch == "auto" else {"prefetch": prefetch}  # --before code may lack the argument
        study.optimize(sleep_trial(seconds), n_trials=n_trials, executor=timed, progress=False, **kwargs)
        wall = time.perf_counter() - start
    finally:
        ex.close()
    busy = sum(t.attrs.get("seconds", 0.0) for t in study.trials)
    gaps = sorted(timed.refills()) or [0.0]
    return {"workers": workers, "trials": len(study.trials), "wall_s": wall, "util": busy / (wall * workers),
            "refill_ms": 1e3 * statistics.mean(gaps), "refill_max_ms": 1e3 * gaps[-1], "asks": len(searcher.seconds),
            "ask_s": statistics.mean(searcher.seconds) if searcher.seconds else math.nan,
            "torchhpo": str(Path(th.__file__).parents[1])}


def gp_rows(args: argparse.Namespace, seconds: float, per_worker: int) -> list[dict]:
    """The GP + ASHA rows: (``--before``) the other checkout's, and this checkout's with the prefetch in a thread
    (the default) and in a model process, alternating per worker count."""
    rows = []
    for w in (2, 4):
        for code, prefetch in ([(args.before, "auto")] if args.before else []) + [(None, "auto"), (None, "process")]:
            if code is None:
                row = measure_gp(w, per_worker * w, seconds, args.seed, prefetch)
            else:
                spec = json.dumps({"workers": w, "n_trials": per_worker * w, "seconds": seconds, "seed": args.seed})
                out = subprocess.run([sys.executable, __file__, "--gp-row", spec], env={
                    **os.environ, "PYTHONPATH": str(Path(code).resolve())}, stdout=subprocess.PIPE, text=True, check=True)
                row = json.loads(out.stdout.splitlines()[-1])
            row["code"] = "before" if code else "this checkout" + (", prefetch='process'" if prefetch != "auto" else "")
            rows.append(row)
            print(row, flush=True)
    return rows


def gp_table(rows: list[dict], seconds: float, per_worker: int, before: str | None) -> str:
    lines = [f"## GP + ASHA: do workers wait for the model? (Processes, trials sleeping {seconds:g} s in {EPOCHS} "
             f"epochs, {per_worker} per worker)", "",
             "The trials sleep: CPU is not what this measures (4 workers on a machine of 2 shared cores would "
             "oversubscribe it), the GP's fits in the driver are the only CPU work. Utilization counts every idle "
             "second, the end of the run included (the last trials finish one by one).", ""]
    if before:
        rev = subprocess.run(["git", "-C", before, "log", "-1", "--format=%h %s"], capture_output=True, text=True)
        lines += [f"before: torchhpo of `{before}` ({rev.stdout.strip() or 'not a git checkout'}), run in a "
                  "subprocess alternately with this checkout's rows.", ""]
    lines += ["| code | workers | trials | wall (s) | utilization | freed slot waits, mean (ms) | max (ms) "
              "| searcher asks in the driver | s per ask |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['code']} | {r['workers']} | {r['trials']} | {r['wall_s']:.1f} | {100 * r['util']:.1f}% "
                     f"| {r['refill_ms']:.0f} | {r['refill_max_ms']:.0f} | {r['asks']} | {r['ask_s']:.2f} |")
    return "\n".join(lines) + "\n"


RAY_NODES = """
import json, sys, time
import ray
from ray.cluster_utils import Cluster
sys.path.insert(0, {bench!r})
import parallel
import torchhpo as th

cluster = Cluster(initialize_head=True, head_node_args={{"num_cpus": 1}})
ray.init(address=cluster.address, logging_level="warning", runtime_env={{"env_vars": {{"PYTHONPATH": {path!r}}}}})
rows = []
for nodes in (1, 2):
    if nodes == 2:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
    with th.Ray(resources_per_trial={{"cpu": 1}}, checkpoints="ship") as ex:
        th.Study(parallel.SPACE, seed=0).optimize(lambda c, t: 0.0, n_trials=2 * nodes, executor=ex, progress=False)
        study = th.Study(parallel.SPACE, mode="min", scheduler="asha", seed={seed}, max_epochs=parallel.EPOCHS)
        start = time.perf_counter()
        study.optimize(parallel.sleep_trial({seconds}), n_trials={per_worker} * nodes, executor=ex, progress=False)
        wall = time.perf_counter() - start
        busy = sum(t.attrs.get("seconds", 0.0) for t in study.trials)
        rows.append({{"nodes": nodes, "slots": ex.slots, "trials": len(study.trials), "wall_s": wall,
                     "util": busy / (wall * ex.slots), "epochs": sum(max(t.reports, default=0) for t in study.trials)}})
ray.shutdown()
cluster.shutdown()
print(json.dumps(rows))
"""


def ray_nodes(seconds: float, per_worker: int, seed: int) -> list[dict]:
    """Random search + ASHA on a simulated Ray cluster of one node, then two (one CPU each), in a subprocess."""
    root = str(Path(__file__).resolve().parents[1])
    code = RAY_NODES.format(bench=str(Path(__file__).resolve().parent), path=root, seed=seed, seconds=seconds,
                            per_worker=per_worker)
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": root}, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def nodes_table(rows: list[dict], seconds: float, per_worker: int) -> str:
    lines = [f"## Ray, two simulated nodes (`ray.cluster_utils.Cluster`, 1 CPU each; random search + ASHA, trials "
             f"sleeping {seconds:g} s in {EPOCHS} epochs, {per_worker} per slot, `th.Ray(checkpoints=\"ship\")`)", "",
             "| nodes | slots | trials | epochs run | wall (s) | epochs/min | speed-up | utilization |",
             "|---|---|---|---|---|---|---|---|"]
    base = rows[0]["epochs"] / rows[0]["wall_s"]
    for r in rows:
        rate = r["epochs"] / r["wall_s"]
        lines.append(f"| {r['nodes']} | {r['slots']} | {r['trials']} | {r['epochs']} | {r['wall_s']:.1f} "
                     f"| {60 * rate:.0f} | {rate / base:.2f}x | {100 * r['util']:.1f}% |")
    return "\n".join(lines) + "\n"


RAY_CHECKPOINTS = """
import json, resource, sys, tempfile, time
from pathlib import Path
import ray
from ray.cluster_utils import Cluster
import torch
sys.path.insert(0, {bench!r})
import parallel
import torchhpo as th

def train(config, trial):
    state = trial.load() or {{"weights": torch.zeros({numel}, dtype=torch.uint8)}}
    for epoch in trial.epochs():
        state["weights"] += 1
        trial.save(state)
        trial.report(config["x"] * (epoch + 1))
    return config["x"]

cluster = Cluster(initialize_head=True, head_node_args={{"num_cpus": 1}})
cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
ray.init(address=cluster.address, logging_level="warning", runtime_env={{"env_vars": {{"PYTHONPATH": {path!r}}}}})
with tempfile.TemporaryDirectory() as tmp:
    mode = {mode!r} if {mode!r} != "uri" else Path(tmp, "bucket").as_uri()
    with th.Ray(resources_per_trial={{"cpu": 1}}, checkpoints=mode) as ex:
        th.Study(parallel.SPACE, seed=0).optimize(lambda c, t: 0.0, n_trials=2, executor=ex, progress=False)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        study = th.Study(parallel.SPACE, mode="max", scheduler=th.SuccessiveHalving(1, 4, eta=2), seed=0,
                         max_epochs=4)
        start = time.perf_counter()
        study.optimize(train, n_trials=8, executor=ex, progress=False)
        wall = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        ok = study.checkpoint(study.best)["weights"].eq(4).all().item()
ray.shutdown()
cluster.shutdown()
print(json.dumps({{"wall_s": wall, "rss_before_mb": rss / 1024, "rss_peak_mb": peak / 1024, "ok": ok,
                  "statuses": sorted(t.status.value for t in study.trials)}}))
"""


def ray_checkpoints(sizes_mb: list[int]) -> list[dict]:
    """Successive halving (8 trials, 1-2-4 epochs) on two simulated Ray nodes whose trials save a state of each
    size every epoch, with ``checkpoints="ship"`` and through a ``file://`` URI: wall time and the driver's peak
    memory, each mode in a fresh driver process."""
    root, rows = str(Path(__file__).resolve().parents[1]), []
    for mb in sizes_mb:
        for mode in ("ship", "uri"):
            code = RAY_CHECKPOINTS.format(bench=str(Path(__file__).resolve().parent), path=root, mode=mode,
                                          numel=mb * 2**20)
            out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": root},
                                 capture_output=True, text=True)
            if out.returncode:
                raise RuntimeError(f"the {mode} run with {mb} MB failed:\n{out.stderr[-3000:]}")
            rows.append({"mb": mb, "mode": mode, **json.loads(out.stdout.splitlines()[-1])})
    return rows


def checkpoints_table(rows: list[dict]) -> str:
    lines = ["## Ray checkpoints of large states: through the object store or a URI (two simulated nodes, 1 CPU "
             "each; successive halving, 8 trials, 1 / 2 / 4 epochs, 14 tasks; each trial saves its state every "
             "epoch; the best's checkpoint checked in the study's folder)", "",
             "| state (MB) | `checkpoints=` | wall (s) | driver peak RSS (MB) | over its RSS before the study (MB) "
             "| best's checkpoint in the study's folder |", "|---|---|---|---|---|---|"]
    for r in rows:
        mode = "`\"ship\"`" if r["mode"] == "ship" else "a `file://` URI"
        lines.append(f"| {r['mb']} | {mode} | {r['wall_s']:.1f} | {r['rss_peak_mb']:.0f} "
                     f"| {r['rss_peak_mb'] - r['rss_before_mb']:.0f} | {'yes' if r['ok'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def table(rows: list[dict], title: str) -> str:
    lines = [title, "", "| executor | workers | trials | wall (s) | trials/min | speed-up | utilization | s per trial "
             "| report RTT p50 (ms) | p99 (ms) |", "|---|---|---|---|---|---|---|---|---|---|"]
    base = {r["executor"]: r["per_min"] for r in rows if r["workers"] == 1}
    speedup = {(r["executor"], r["workers"]): r["per_min"] / base[r["executor"]] for r in rows}
    for r in rows:
        rtt = "| - | - |" if math.isnan(r["rtt_p50_ms"]) else f"| {r['rtt_p50_ms']:.3f} | {r['rtt_p99_ms']:.3f} |"
        lines.append(f"| {r['executor']} | {r['workers']} | {r['trials']} | {r['wall_s']:.1f} | {r['per_min']:.1f} "
                     f"| {speedup[r['executor'], r['workers']]:.2f}x | {100 * r['util']:.1f}% "
                     f"| {r['per_trial_s']:.2f} {rtt}")
    ceiling = speedup.get(("bare processes (ceiling)", 2))
    if ceiling:
        share = ", ".join(f"{k} {v / ceiling:.2f}" for (k, w), v in speedup.items() if w == 2 and "bare" not in k)
        lines += ["", f"2-worker speed-up as a fraction of the ceiling's ({ceiling:.2f}x): {share}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny settings: a smoke run in seconds")
    p.add_argument("--parts", default=None,
                   help="comma-separated: cpu,gp,nodes,checkpoints (default all; quick: cpu,gp)")
    p.add_argument("--executors", default=None, help="comma-separated: processes,ray (quick: processes)")
    p.add_argument("--trial-seconds", type=float, default=None, help="time per trial (default 1, quick 0.1)")
    p.add_argument("--trials", type=int, default=None, help="trials per worker (default 12, quick 2; gp: x2)")
    p.add_argument("--node-trials", type=int, default=36, help="trials per slot of the Ray nodes table")
    p.add_argument("--reports", type=int, default=None, help="report round trips timed (default 1000, quick 50)")
    p.add_argument("--searcher", default="random")
    p.add_argument("--scheduler", default=None)
    p.add_argument("--batch", action="store_true", help="batch mode: ask q = workers configs at once")
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--before", default=None, help="a checkout whose torchhpo runs the GP + ASHA rows side by side")
    p.add_argument("--gp-row", default=None, help=argparse.SUPPRESS)  # one GP row (JSON settings) for --before
    p.add_argument("--out", default=str(Path(__file__).parent / "results"), help="folder of the result file")
    args = p.parse_args()
    if args.gp_row:
        print(json.dumps(measure_gp(**json.loads(args.gp_row))))
        return
    q = args.quick
    parts = (args.parts or ("cpu,gp" if q else "cpu,gp,nodes,checkpoints")).split(",")
    kinds = (args.executors or ("processes" if q else "processes,ray")).split(",")
    seconds = args.trial_seconds or (0.1 if q else 1.0)
    per_worker = args.trials or (2 if q else 12)
    args.reports = args.reports or (50 if q else 1000)
    before = os.getloadavg()
    sections = []
    if "cpu" in parts:
        work = calibrate(seconds)
        rows = [measure_bare(w, per_worker * w, work) for w in (1, 2)]
        rows += [measure(kind, w, per_worker * w, work, args) for kind in kinds for w in (1, 2)]
        sections.append(table(rows, f"## CPU-bound trials: {seconds:g} s of 1-thread matmuls ({work} products) in "
                              f"{EPOCHS} epochs, {per_worker} per worker; searcher {args.searcher}, scheduler "
                              f"{args.scheduler}, batch {args.batch}"))
    if "gp" in parts:
        sections.append(gp_table(gp_rows(args, seconds, 2 * per_worker), seconds, 2 * per_worker, args.before))
    if "nodes" in parts:
        sections.append(nodes_table(ray_nodes(seconds, args.node_trials, args.seed), seconds, args.node_trials))
    if "checkpoints" in parts:
        sections.append(checkpoints_table(ray_checkpoints([16, 256])))
    load = os.getloadavg()
    versions = f"torch {torch.__version__}, torchhpo {th.__version__}, python {platform.python_version()}"
    if "ray" in kinds or "nodes" in parts or "checkpoints" in parts:
        import ray
        versions += f", ray {ray.__version__}"
    command = " ".join(["python", "benchmarks/parallel.py", *sys.argv[1:]])
    meta = (f"# Parallel execution{' (quick)' if q else ''}\n\n`{command}` (under `nice -n 5`); "
            f"{platform.machine()} {platform.system()}, {os.cpu_count()} cores, 1-min load average {before[0]:.2f} "
            f"before the run and {load[0]:.2f} after (other jobs share the cores); {versions}; seed {args.seed}.")
    text = meta + "\n\n" + "\n".join(sections)
    print(text)
    out = Path(args.out)  # a folder; the file is named after the searcher and scheduler when they are not the default
    out.mkdir(parents=True, exist_ok=True)
    name = "parallel" if (args.searcher, args.scheduler, args.batch) == ("random", None, False) else (
        f"parallel_{args.searcher}_{args.scheduler}{'_batch' if args.batch else ''}")
    (out / f"{name}{'-quick' if q else ''}.md").write_text(text)


if __name__ == "__main__":
    main()
