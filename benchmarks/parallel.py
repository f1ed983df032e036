"""Parallel execution: 1 vs 2 workers on ~1-second CPU-bound trials, with Processes and Ray.

Plain processes doing the same work (no torchhpo) gives the speed-up the cores allow right now (the ceiling,
lower when other jobs share the machine). For each executor and worker count: trials per minute, speed-up over one
worker, worker utilization (time inside the user's function, measured in the worker, over workers x wall time),
seconds per trial inside the function (it grows when other jobs take the cores: the speed-up then falls although
utilization stays high) and the report round trip (trial.report -> driver's scheduler -> decision back in the
worker: median and p99). Workers are started and warmed up before the clock starts; each trial runs
``torch.set_num_threads(1)`` matrix products in 5 epochs, reporting after each. Run from the repository root
(PYTHONPATH=. in a checkout not installed).

    nice -n 5 python benchmarks/parallel.py                       # the published table (results/parallel.md)
    python benchmarks/parallel.py --quick                         # seconds: a smoke run
    python benchmarks/parallel.py --searcher gp --scheduler asha  # the same with GP + ASHA in the driver
                                                                  # (results/parallel_gp_asha.md)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
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
    import subprocess
    import sys

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


def table(rows: list[dict], meta: str) -> str:
    lines = [meta, "", "| executor | workers | trials | wall (s) | trials/min | speed-up | utilization | s per trial "
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
    p.add_argument("--executors", default=None, help="comma-separated: processes,ray (quick: processes)")
    p.add_argument("--trial-seconds", type=float, default=None, help="CPU time per trial (default 1, quick 0.1)")
    p.add_argument("--trials", type=int, default=None, help="trials per worker (default 12, quick 2)")
    p.add_argument("--reports", type=int, default=None, help="report round trips timed (default 1000, quick 50)")
    p.add_argument("--searcher", default="random")
    p.add_argument("--scheduler", default=None)
    p.add_argument("--batch", action="store_true", help="batch mode: ask q = workers configs at once")
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--out", default=str(Path(__file__).parent / "results"), help="folder of the result file")
    args = p.parse_args()
    q = args.quick
    kinds = (args.executors or ("processes" if q else "processes,ray")).split(",")
    seconds = args.trial_seconds or (0.1 if q else 1.0)
    per_worker = args.trials or (2 if q else 12)
    args.reports = args.reports or (50 if q else 1000)
    before = os.getloadavg()
    work = calibrate(seconds)
    rows = [measure_bare(w, per_worker * w, work) for w in (1, 2)]
    rows += [measure(kind, w, per_worker * w, work, args) for kind in kinds for w in (1, 2)]
    load = os.getloadavg()
    versions = f"torch {torch.__version__}, torchhpo {th.__version__}, python {platform.python_version()}"
    if "ray" in kinds:
        import ray
        versions += f", ray {ray.__version__}"
    meta = (f"# Parallel execution{' (quick)' if q else ''}\n\n{platform.machine()} {platform.system()}, "
            f"{os.cpu_count()} cores, 1-min load average {before[0]:.2f} before the run and {load[0]:.2f} after "
            f"(other jobs share the cores); {versions}."
            f"\nTrials: {seconds:g} s of 1-thread matmuls ({work} products) in {EPOCHS} epochs, {per_worker} per "
            f"worker; searcher {args.searcher}, scheduler {args.scheduler}, batch {args.batch}, seed {args.seed}.")
    text = table(rows, meta)
    print(text)
    out = Path(args.out)  # a folder; the file is named after the searcher and scheduler when they are not the default
    out.mkdir(parents=True, exist_ok=True)
    name = "parallel" if (args.searcher, args.scheduler, args.batch) == ("random", None, False) else (
        f"parallel_{args.searcher}_{args.scheduler}{'_batch' if args.batch else ''}")
    (out / f"{name}{'-quick' if q else ''}.md").write_text(text)


if __name__ == "__main__":
    main()
