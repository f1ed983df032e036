"""The lecture's Bayesian-optimization demo: maximize f(x) = sin(x) x^2 + 2x on [-10, 10] with GP-UCB.

A random start, then 30 iterations of: refit the GP, pick the next x where alpha = mu + 2 sigma is largest.
The figure shows the true function, the GP mean with its +-2 sigma band, the acquisition curve, the evaluated
points and the next point.

    python recipes/bo_1d_demo.py                          # 30 iterations, writes runs/bo_1d_demo.png
    python recipes/bo_1d_demo.py --iterations 5 --out /tmp/demo.png   # a quick look
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torchhpo as th

# --- configuration --------------------------------------------------------------------------------------------
ITERATIONS = 30  # GP-UCB steps after the random start (the lecture's loop)
N_INITIAL = 1  # the random start: one point, as in the lecture
BETA = 2.0  # alpha = mu + BETA * sigma
SEED = 0
OUT = "runs/bo_1d_demo.png"
# ----------------------------------------------------------------------------------------------------------------


def f(x: float) -> float:
    return math.sin(x) * x**2 + 2 * x


def plot(searcher: th.GP, space: th.Space, trials: list[th.TrialRecord], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [round(-10 + 0.1 * i, 1) for i in range(201)]  # the lecture's grid, step 0.1
    X = space.encode([{"x": x} for x in xs])
    mean, std, acq = searcher.posterior(space, trials, X)
    nxt = searcher.ask(space, trials, 1)[0]["x"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=[3, 1])
    top.plot(xs, [f(x) for x in xs], "k--", lw=1, label="f(x) = sin(x) x² + 2x")
    top.plot(xs, mean, "C0", label="GP mean μ")
    top.fill_between(xs, mean - 2 * std, mean + 2 * std, color="C0", alpha=0.2, label="μ ± 2σ")
    top.plot([t.config["x"] for t in trials], [t.value for t in trials], "o", color="C1", ms=4, label="evaluated")
    top.axvline(nxt, color="C3", lw=1, label=f"next x = {nxt:.2f}")
    best = max(trials, key=lambda t: t.value)
    top.set(title=f"GP-UCB after {len(trials)} evaluations: best f({best.config['x']:.3f}) = {best.value:.2f}")
    top.legend(fontsize=8, loc="upper left")
    bottom.plot(xs, acq, "C2", label=f"α = μ + {searcher.beta:g}σ")
    bottom.axvline(nxt, color="C3", lw=1)
    bottom.set(xlabel="x")
    bottom.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=ITERATIONS)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    space = th.Space({"x": th.Float(-10.0, 10.0)})
    searcher = th.GP("ucb", beta=BETA, n_initial=N_INITIAL, seed=args.seed)
    study = th.Study(space, mode="max", searcher=searcher)
    study.optimize(lambda config, trial: f(config["x"]), n_trials=N_INITIAL + args.iterations, progress=False)
    print(f"best x = {study.best.config['x']:.4f}, f = {study.best.value:.4f} after {len(study.trials)} evaluations")
    plot(searcher, space, study.trials, args.out)
    print(f"figure: {args.out}")


if __name__ == "__main__":
    main()
