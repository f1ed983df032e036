"""Tabulate a task's learning curves: every config of a seeded Sobol sample trained for a fixed number of epochs.

The tables (``torchhpo/data/{task}_curves.npz``; tasks in ``torchhpo.problems.TASKS``: the digits CNN and the
digits MLP x 27 epochs, a 1-D CNN on generated signals x 81 epochs) are what ``torchhpo.simulate`` replays with a
simulated clock, so that schedulers x searchers x many seeds compare in seconds. Each row is trained by the task's
real training function (through ``tabulate`` below) with trial number = row index (its training seed), so a real
run of row ``i`` as trial ``i`` reproduces row ``i`` (tests/test_simulate.py).

Stored per config and epoch (``n x E`` float32): validation loss, validation accuracy, test accuracy and seconds
of training per epoch; plus the configs (JSON) and metadata (versions, machine, seed).

    python benchmarks/make_curves.py --workers 2                # digits CNN: 1,000 configs x 27 epochs (~16 min)
    python benchmarks/make_curves.py --task digits_mlp --workers 2   # digits MLP: 1,000 configs (~7 min)
    python benchmarks/make_curves.py --task signals_cnn --n 200   # signals 1-D CNN: 200 configs x 81 epochs (~15 min)
    python benchmarks/make_curves.py --task signals_cnn --n 400 --grow   # its rows 200..399, appended
    python benchmarks/make_curves.py --quick                    # 4 configs x 3 epochs, to a temporary file
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from torchhpo.problems import TASKS, evaluate
from torchhpo.simulate import METRICS, SHIPPED, Curves
from torchhpo.space import Config
from torchhpo.trial import Decision, TrainingDiverged, Trial

EPOCHS = {"digits_cnn": 27, "digits_mlp": 27, "signals_cnn": 81}  # each shipped table's length (--epochs default)


def tabulate(configs: Sequence[Config], epochs: int, *, first: int = 0, task: str = "digits_cnn") -> Curves:
    """Train ``task`` (a name in ``torchhpo.problems.TASKS``) on each config, as trial number ``first + row`` (its
    training seed); tabulate the curves.

    The task's real training function runs unchanged; after each epoch's report the saved checkpoint is evaluated
    for the accuracies, and that evaluation is left out of the seconds. A run that diverges (reports NaN or inf)
    keeps the seconds of the epoch that diverged and NaN from that epoch on: ``Simulated`` replays it as a FAILED
    trial, as a real study records it.
    """
    if task not in TASKS:
        raise ValueError(f"tabulate: task {task!r} is unknown; choose one of {sorted(TASKS)}")
    spec = TASKS[task]
    data = spec.data()
    out: dict[str, list[list[float]]] = {m: [] for m in METRICS}
    with tempfile.TemporaryDirectory() as workdir:
        for i, config in enumerate(configs):
            rows: dict[str, list[float]] = {m: [] for m in METRICS}
            trial = Trial(first + i, config, max_epochs=epochs, checkpoint_dir=workdir)
            model = spec.model(config)
            clock = [time.perf_counter()]

            def reporter(number: int, step: int, value: float, trial: Trial = trial, model: Any = model,
                         rows: dict = rows, clock: list = clock) -> Decision:
                rows["seconds"].append(time.perf_counter() - clock[0])
                model.load_state_dict(trial.load()["model"])  # saved just before this report
                rows["val_loss"].append(value)
                rows["val_acc"].append(evaluate(model, data.X_val, data.y_val)[1])
                rows["test_acc"].append(evaluate(model, data.X_test, data.y_test)[1])
                clock[0] = time.perf_counter()
                return Decision.CONTINUE

            trial.reporter = reporter
            try:
                spec.train(config, trial)
            except TrainingDiverged:  # the epoch that diverged took its time; its metrics are NaN (below)
                rows["seconds"].append(time.perf_counter() - clock[0])
            for m in METRICS:
                out[m].append(rows[m] + [math.nan] * (epochs - len(rows[m])))
    return Curves(spec.space(), [dict(c) for c in configs], *(np.array(out[m], dtype=np.float32) for m in METRICS),
                  meta={"task": task, "epochs": epochs, "n": len(configs), "torch": torch.__version__})


def _chunk(args: tuple[list[dict], int, int, str]) -> Curves:
    configs, epochs, first, task = args
    torch.set_num_threads(1)
    return tabulate(configs, epochs, first=first, task=task)


def make(task: str, n: int, epochs: int, seed: int, workers: int, out: Path, grow: Curves | None = None) -> Curves:
    """Tabulate the first ``n`` configs of the task's Sobol sample; with ``grow`` (a table of a prefix of the same
    sample), train only the rows after it and keep its rows as they are."""
    spec = TASKS[task]
    configs = spec.space().sobol(n, seed=seed)
    start = time.time()
    size = 8
    parts, first = ([grow], len(grow.configs)) if grow is not None else ([], 0)
    if grow is not None and (grow.epochs != epochs or grow.configs != configs[:first] or first >= n):
        raise ValueError(f"make: the table to grow ({first} rows x {grow.epochs} epochs) is not a prefix of "
                         f"{n} configs x {epochs} epochs of {task}'s Sobol sample (seed {seed}); give a larger --n, "
                         "the table's --epochs and --seed, or drop --grow")
    jobs = [(configs[i:i + size], epochs, i, task) for i in range(first, n, size)]
    done = first
    with ProcessPoolExecutor(workers) as pool:
        for part in pool.map(_chunk, jobs):  # in order, as they finish
            parts.append(part)
            done += len(part.configs)
            eta = (time.time() - start) / (done - first) * (n - done)
            print(f"\r{done}/{n} rows, {time.time() - start:.0f} s, ~{eta:.0f} s left", end="", file=sys.stderr)
    print(file=sys.stderr)
    meta = {"task": task, "seed": seed, "n": n, "epochs": epochs, "sampler": f"{spec.space.__name__}().sobol(n, seed)",
            "training": f"torchhpo.problems.{spec.train.__name__}(config, Trial(number=row)), "
                        f"{spec.data.__name__}() defaults",
            "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "machine": platform.platform(), "processor": platform.processor() or platform.machine(),
            "workers": workers, "threads_per_worker": 1, "wall_seconds": round(time.time() - start, 1)}
    if grow is not None:  # its rows were trained earlier: their run's description stays with them
        meta["grown_from"] = {k: grow.meta.get(k) for k in ("n", "machine", "wall_seconds", "torch")}
    curves = Curves(spec.space(), configs, *(np.concatenate([getattr(p, m) for p in parts]) for m in METRICS),
                    meta=meta)
    out.parent.mkdir(parents=True, exist_ok=True)
    curves.save(out)
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB) in {time.time() - start:.0f}s")
    return curves


def summarize(curves: Curves) -> str:
    """Markdown: the spread of final values and how well early ranks predict final ranks (Spearman; a run that
    diverged ranks last from the epoch it diverged)."""
    from scipy.stats import spearmanr

    loss = np.nan_to_num(curves.val_loss, nan=np.inf)
    last = loss[:, -1]
    done = np.isfinite(last)
    qs = [0, 0.1, 0.5, 0.9, 1]
    lines = [f"{len(last)} configs x {curves.epochs} epochs ({(~done).sum()} diverged: NaN from then on); "
             "quantiles 0/10/50/90/100% of the others:",
             f"- final val loss: {np.round(np.quantile(last[done], qs), 4).tolist()}",
             f"- final val acc: {np.round(np.quantile(curves.val_acc[done, -1], qs), 4).tolist()}",
             f"- seconds per epoch: {np.round(np.quantile(curves.seconds[done].mean(1), qs), 4).tolist()}",
             "", "| epoch | Spearman(val loss at epoch, at the last epoch) | ranks after this epoch of the 5 best at the last |",
             "|---|---|---|"]
    best = np.argsort(last)[:5]
    for e in sorted({e for e in (1, 3, 9) if e < curves.epochs} | {curves.epochs}):
        ranks = np.argsort(np.argsort(loss[:, e - 1], kind="stable"), kind="stable")[best] + 1
        lines.append(f"| {e} | {spearmanr(loss[:, e - 1], last).statistic:.3f} | {ranks.tolist()} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="digits_cnn", choices=sorted(TASKS))
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=None, help="default: the shipped table's length (27 or 81)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="default: the shipped table of the task")
    p.add_argument("--summary", action="store_true", help="only summarize the existing table")
    p.add_argument("--quick", action="store_true", help="4 configs x 3 epochs to a temporary file")
    p.add_argument("--grow", action="store_true", help="keep the rows of the existing table, train only the new ones")
    a = p.parse_args()
    torch.set_num_threads(1)
    out = a.out or SHIPPED[a.task]
    if a.summary:
        curves = Curves.load(out)
    elif a.quick:
        with tempfile.TemporaryDirectory() as d:
            curves = make(a.task, 4, 3, a.seed, 1, Path(d) / "curves.npz")
    else:
        curves = make(a.task, a.n, a.epochs or EPOCHS[a.task], a.seed, a.workers, out,
                      Curves.load(out) if a.grow else None)
    text = summarize(curves) + f"\n\nmeta: {curves.meta}\n"
    print(text)
    if not a.quick and out == SHIPPED[a.task]:  # the published summary describes the shipped table
        (Path(__file__).parent / "results").mkdir(exist_ok=True)
        name = "curves_summary.md" if a.task == "digits_cnn" else f"curves_summary_{a.task}.md"
        (Path(__file__).parent / "results" / name).write_text(text)


if __name__ == "__main__":
    main()
