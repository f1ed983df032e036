"""Tabulate the digits CNN's learning curves: every config of a seeded Sobol sample trained for 27 epochs.

The table (``torchhpo/data/digits_cnn_curves.npz``) is what ``torchhpo.simulate`` replays with a simulated clock,
so that schedulers x searchers x many seeds compare in seconds. Each row is trained by the real
``torchhpo.problems.train_digits_cnn`` (through ``torchhpo.simulate.tabulate``) with trial number = row index
(its training seed), so a real run of row ``i`` as trial ``i`` reproduces row ``i`` (tests/test_simulate.py).

Stored per config and epoch (``n x E`` float32): validation loss, validation accuracy, test accuracy and seconds
of training per epoch; plus the configs (JSON) and metadata (versions, machine, seed).

    nice -n 5 python benchmarks/make_curves.py --workers 2      # 320 configs x 27 epochs (~10 min on 2 cores)
    python benchmarks/make_curves.py --quick                    # 4 configs x 3 epochs, to a temporary file
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from torchhpo.problems import digits_space
from torchhpo.simulate import METRICS, Curves, tabulate

OUT = Path(__file__).resolve().parents[1] / "torchhpo" / "data" / "digits_cnn_curves.npz"


def _chunk(args: tuple[list[dict], int, int]) -> Curves:
    configs, epochs, first = args
    torch.set_num_threads(1)
    return tabulate(configs, epochs, first=first)


def make(n: int, epochs: int, seed: int, workers: int, out: Path) -> Curves:
    configs = digits_space().sobol(n, seed=seed)
    start = time.time()
    size = 8
    jobs = [(configs[i:i + size], epochs, i) for i in range(0, n, size)]
    with ProcessPoolExecutor(workers) as pool:
        parts = list(pool.map(_chunk, jobs))
    meta = {"seed": seed, "n": n, "epochs": epochs, "sampler": "digits_space().sobol(n, seed)",
            "training": "torchhpo.problems.train_digits_cnn(config, Trial(number=row)), digits_data() defaults",
            "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "machine": platform.platform(), "processor": platform.processor() or platform.machine(),
            "workers": workers, "threads_per_worker": 1, "wall_seconds": round(time.time() - start, 1)}
    curves = Curves(digits_space(), configs, *(np.concatenate([getattr(p, m) for p in parts]) for m in METRICS),
                    meta=meta)
    out.parent.mkdir(parents=True, exist_ok=True)
    curves.save(out)
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB) in {time.time() - start:.0f}s")
    return curves


def summarize(curves: Curves) -> str:
    """Markdown: the spread of final values and how well early ranks predict final ranks (Spearman)."""
    from scipy.stats import spearmanr

    last = curves.val_loss[:, -1]
    qs = [0, 0.1, 0.5, 0.9, 1]
    lines = [f"{len(last)} configs x {curves.epochs} epochs; quantiles 0/10/50/90/100%:",
             f"- final val loss: {np.round(np.quantile(last, qs), 4).tolist()}",
             f"- final val acc: {np.round(np.quantile(curves.val_acc[:, -1], qs), 4).tolist()}",
             f"- seconds per epoch: {np.round(np.quantile(curves.seconds.mean(1), qs), 4).tolist()}",
             "", "| epoch | Spearman(val loss at epoch, at the last epoch) |", "|---|---|"]
    for e in sorted({e for e in (1, 3, 9) if e < curves.epochs} | {curves.epochs}):
        lines.append(f"| {e} | {spearmanr(curves.val_loss[:, e - 1], last).statistic:.3f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=320)
    p.add_argument("--epochs", type=int, default=27)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--summary", action="store_true", help="only summarize the existing table")
    p.add_argument("--quick", action="store_true", help="4 configs x 3 epochs to a temporary file")
    a = p.parse_args()
    torch.set_num_threads(1)
    if a.summary:
        curves = Curves.load(a.out)
    elif a.quick:
        with tempfile.TemporaryDirectory() as d:
            curves = make(4, 3, a.seed, 1, Path(d) / "curves.npz")
    else:
        curves = make(a.n, a.epochs, a.seed, a.workers, a.out)
    text = summarize(curves) + f"\n\nmeta: {curves.meta}\n"
    print(text)
    if not a.quick:
        (Path(__file__).parent / "results").mkdir(exist_ok=True)
        (Path(__file__).parent / "results" / "curves_summary.md").write_text(text)


if __name__ == "__main__":
    main()
