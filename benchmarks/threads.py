"""Torch threads per trial: a small-model study run as the docs show it (``th.Study(...).optimize``), with the
thread count each executor used before ``threads="auto"`` against the automatic count, side by side in one run.

    python benchmarks/threads.py            # digits MLP, 10 trials x 3 epochs, Inline and Processes(2), 3 repeats
    python benchmarks/threads.py --quick    # smoke run

Before the rule, ``Inline`` left torch's own count (every core) and ``Processes`` gave each worker
``os.cpu_count() // workers``; now both follow ``torchhpo.executors.base.trial_threads``. Run it without
``OMP_NUM_THREADS`` in the environment, or torch's own count is that variable's. Writes
benchmarks/results/threads.md and threads.png. Each repeat runs the contenders in turn, so that load on a shared
machine hits them alike; figures are medians. Quote the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from _common import RESULTS, header, save

import torchhpo as th
from torchhpo.problems import digits_data, digits_mlp_space, train_digits_mlp

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
    text = header("Torch threads per trial", sys.argv) + (
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
    if args.quick:
        print(text)
        return text
    _plot(median)
    save("threads.md", text)
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
