"""Torch threads per trial and per model: a small-model study run as the docs show it (``th.Study(...).optimize``),
with the thread count each executor used before ``threads="auto"`` against the automatic count; then the models
the driver fits (a GP suggestion, a freeze-thaw decision) on torch's default threads against ``model_threads``,
with the cores idle and with every core busy training (one single-threaded worker process per CPU). Side by side
in one run.

    python benchmarks/threads.py            # digits MLP, 10 trials x 3 epochs, Inline and Processes(2), 3 repeats
    python benchmarks/threads.py --quick    # smoke run

Before the rule, ``Inline`` left torch's own count (every core) and ``Processes`` gave each worker
``os.cpu_count() // workers``; now both follow ``torchhpo.threads.trial_threads``. Run it without
``OMP_NUM_THREADS`` in the environment, or torch's own count is that variable's. Writes
benchmarks/results/threads.md and threads.png. Each repeat runs the contenders in turn, so that load on a shared
machine hits them alike; figures are medians. Quote the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from _common import RESULTS, header, save
from suggest_latency import steady_ask

import torchhpo as th
import torchhpo.threads
from torchhpo.problems import digits_data, digits_mlp_space, train_digits_mlp
from torchhpo.simulate import Curves

WORKERS = 2  # the Processes contender's workers


def contenders(torch_default: int) -> list[tuple[str, int, Callable[[int | str], Any]]]:
    """``(name, threads before the rule, make(threads))`` for each executor measured."""
    return [("Inline", torch_default, lambda threads: th.Inline("cpu", threads=threads)),
            (f"Processes({WORKERS})", max(1, (os.cpu_count() or 1) // WORKERS),
             lambda threads: th.Processes(devices=["cpu"] * WORKERS, threads=threads))]


def seconds(executor: Any, n_trials: int, epochs: int) -> float:
    """Wall seconds of one study of ``n_trials`` digits-MLP trials under ``executor`` (already warm)."""
    study = th.Study(digits_mlp_space(), mode="min", searcher="random", max_epochs=epochs, seed=0)
    start = time.perf_counter()
    study.optimize(train_digits_mlp, n_trials=n_trials, executor=executor, progress=False)
    return time.perf_counter() - start


def main() -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="trials per study (default 10)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="studies per contender (default 3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 trials x 1 epoch, 1 repeat, not saved")
    args = parser.parse_args()
    n_trials, epochs, repeats = (2, 1, 1) if args.quick else (args.trials, args.epochs, args.repeats)
    digits_data()  # loaded once, outside the clocks
    torch_default = torch.get_num_threads()
    runs: dict[tuple[str, str], list[float]] = {}
    executors = {}
    rows = []
    for name, before, make in contenders(torch_default):
        for label, threads in (("before", before), ("auto", "auto")):
            ex = executors[name, label] = make(threads)
            seconds(ex, 2, 1)  # workers started and warm before the clock
            rows.append((name, label, ex.threads))
    load = os.getloadavg()[0]
    for _ in range(repeats):
        for (name, label), ex in executors.items():
            runs.setdefault((name, label), []).append(seconds(ex, n_trials, epochs))
            print(name, label, f"{runs[name, label][-1]:.2f} s", flush=True)
    for ex in executors.values():
        ex.close()
    median = {key: statistics.median(v) for key, v in runs.items()}
    text = header("Torch threads per trial and per model", sys.argv) + (
        f"- load average (1 min) before the timed runs: {load:.2f}; OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, TORCHHPO_THREADS={os.environ.get('TORCHHPO_THREADS', 'unset')}\n"
        f"\nA random-search study of the digits MLP, {n_trials} trials x {epochs} epochs, "
        f"`th.Study(...).optimize(train_digits_mlp, executor=...)`; median of {repeats} repeats (contenders in "
        "turn), executors warm. `before`: the count each executor used before `threads=\"auto\"`.\n\n"
        "| executor | threads before | threads auto | seconds before | seconds auto | before / auto |\n"
        "|---|---|---|---|---|---|\n")
    for name, _, _ in contenders(torch_default):
        threads = {label: n for row_name, label, n in rows if row_name == name}
        text += (f"| {name} | {threads['before']} | {threads['auto']} | {median[name, 'before']:.2f} | "
                 f"{median[name, 'auto']:.2f} | {median[name, 'before'] / median[name, 'auto']:.2f}x |\n")
    text += models(args.quick, repeats)
    if args.quick:
        print(text)
        return text
    _plot(median)
    save("threads.md", text)
    return text


def _spin() -> None:
    """A busy worker: one thread training a small dense layer until it is terminated."""
    torch.set_num_threads(1)
    a = torch.randn(256, 256) / 16
    while True:
        a = torch.tanh(a @ a)


@contextmanager
def busy(workers: int) -> Iterator[None]:
    """``workers`` processes keeping a core each busy meanwhile (0: none)."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_spin, daemon=True) for _ in range(workers)]
    for p in procs:
        p.start()
    time.sleep(1.0 if procs else 0.0)  # started and spinning
    try:
        yield
    finally:
        for p in procs:
            p.terminate()
            p.join()


def freeze_thaw_decision(trials: int) -> float:
    """Wall seconds of a warm freeze-thaw decision on ``trials`` paused digits-CNN-table trials cut at random
    ladder steps (the model fitted once on the same history before, as in a running study)."""
    curves = Curves.load()
    rng = np.random.default_rng(trials)
    rows = rng.choice(len(curves.configs), trials, replace=False)
    stops = rng.choice([1, 2, 3, 5, 8, 12, 18], trials)
    records = [th.TrialRecord(i, curves.configs[r], th.Status.PAUSED, sign=-1,
                              reports={e + 1: float(curves.val_loss[r, e]) for e in range(k)})
               for i, (r, k) in enumerate(zip(rows, stops, strict=True))]
    ft = th.FreezeThaw(1, curves.epochs)
    ft.chances(records)
    begin = time.perf_counter()
    ft.chances(records)
    return time.perf_counter() - begin


def models(quick: bool, repeats: int) -> str:
    """The model table: wall seconds per GP suggestion / freeze-thaw decision on torch's default threads and on
    one thread, cores idle and busy, and which of the two ``model_threads`` picks."""
    default, cores = torch.get_num_threads(), torchhpo.threads.usable_cpus()
    sizes = [("GP suggestion, Hartmann6", n, n, lambda n=n: steady_ask("torchhpo", "hartmann6", n, 0)[0])
             for n in ((50,) if quick else (50, 200, 800, 2000))]
    sizes += [("freeze-thaw decision, trials x 27 epochs", n, None, lambda n=n: freeze_thaw_decision(n))
              for n in ((20,) if quick else (50, 200))]
    threshold = torchhpo.threads.MODEL_THREADS_MIN_POINTS
    text = (f"\n## Models fitted in the driver\n\nWall seconds of one steady-state GP suggestion (the second GP ask "
            f"after n - 1 Sobol points, `suggest_latency.steady_ask`) and of one warm freeze-thaw decision (n paused "
            f"digits-CNN-table trials at random ladder steps, fewer than {threshold} reports) on torch's default "
            f"threads ({default}) and on one; `model_threads` runs a CPU model on one thread below {threshold} "
            f"training points, else on the caller's. `busy`: {cores} single-threaded worker processes spin "
            f"meanwhile, as `Processes` trials do. Median of {repeats} repeat(s), contenders in turn.\n\n"
            "| model | n | cores | seconds, default threads | seconds, one thread | default / one | "
            "model_threads picks |\n|---|---|---|---|---|---|---|\n")
    for workers, label in ((0, "idle"), (cores, "busy")):
        with busy(workers):
            for name, n, points, fn in sizes:
                runs: dict[str, list[float]] = {"default": [], "one": []}
                for r in range(repeats):
                    for which in ("default", "one") if r % 2 == 0 else ("one", "default"):
                        torchhpo.threads.MODEL_THREADS_MIN_POINTS = 0 if which == "default" else 10**9
                        runs[which].append(fn())
                torchhpo.threads.MODEL_THREADS_MIN_POINTS = threshold
                d, o = statistics.median(runs["default"]), statistics.median(runs["one"])
                picks = "default" if points is not None and points >= threshold else "one"
                text += f"| {name} | {n} | {label} | {d:.3f} | {o:.3f} | {d / o:.2f}x | {picks} |\n"
                print(text.splitlines()[-1], flush=True)
    return text


def _plot(median: dict[tuple[str, str], float]) -> None:
    """threads.png: seconds per study, before and auto, for each executor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(name for name, _ in median))
    fig, ax = plt.subplots(figsize=(5, 3))
    for k, label in enumerate(("before", "auto")):
        ax.bar([i + 0.4 * k for i in range(len(names))], [median[n, label] for n in names], width=0.4, label=label)
    ax.set_xticks([i + 0.2 for i in range(len(names))], names)
    ax.set_ylabel("seconds per study (median)")
    ax.legend()
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / "threads.png", dpi=100)


if __name__ == "__main__":
    main()
