"""CPU against GPU for the GP's work: one q=8 suggestion (fit + acquisition) at n = 200, 1000, 4000.

    python benchmarks/gpu.py           # needs a CUDA GPU; on a CPU-only machine it says so and exits 0
    python benchmarks/gpu.py --quick   # n = 200 only

One run, both devices, Hartmann6 with n random observations; wall seconds (CUDA synchronized). The crossing
point is what ``GPOptions.gpu_min_points`` (device="auto") should be set to. Writes benchmarks/results/gpu.md.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import torch
from _common import header, save

import torchhpo as th
from torchhpo.bench import PROBLEMS
from torchhpo.trial import Status, TrialRecord


def one(device: str, trials: list[TrialRecord]) -> tuple[float, float]:
    """(CPU s, wall s) of a warm q=8 ask on ``device``, timed around the ask."""
    gp = th.GP(seed=0, device=device)
    space = PROBLEMS["hartmann6"].space
    gp.ask(space, trials[:-1], 1)  # warm-up: CUDA context, kernels, and the warm start of the hyperparameters
    if device == "cuda":
        torch.cuda.synchronize()
    w, c = time.perf_counter(), time.process_time()
    gp.ask(space, trials, 8)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.process_time() - c, time.perf_counter() - w


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA GPU on this machine; nothing to compare (run it where there is one)")
        return
    warnings.simplefilter("ignore")
    problem = PROBLEMS["hartmann6"]
    text = header("CPU against GPU (benchmarks/gpu.py)", ["benchmarks/gpu.py", *argv])
    text += (f"- GPU: {torch.cuda.get_device_name()}; CPU s is the driver process's CPU time (on the GPU it "
             "undercounts the work: compare wall s)\n\n| n | device | CPU s | wall s |\n|---|---|---|---|\n")
    for n in [200] if args.quick else [200, 1000, 4000]:
        configs = problem.space.sample(n, seed=n)
        trials = [TrialRecord(i, c, Status.COMPLETED, problem.fn(c), sign=-1) for i, c in enumerate(configs)]
        for device in ("cpu", "cuda"):
            cpu, wall = one(device, trials)
            text += f"| {n} | {device} | {cpu:.3f} | {wall:.3f} |\n"
    save("gpu.md" if not args.quick else "gpu-quick.md", text)


if __name__ == "__main__":
    main(sys.argv[1:])
