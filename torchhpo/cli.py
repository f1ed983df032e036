"""The command line: ``torchhpo run | show | plot``.

    torchhpo run                                  # tune the digits CNN (the embedded default job), SQLite storage
    torchhpo run --trials 40 --storage runs/digits.db --seed 1
    torchhpo show runs/digits.db                  # every trial and the best config
    torchhpo plot runs/digits.db --out plots/     # history, learning curves, parallel coordinates (PNG)
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from torchhpo.study import Study
from torchhpo.trial import Status

__all__ = ["main"]


def _run(args: argparse.Namespace) -> int:
    import torch

    from torchhpo.problems import digits_space, train_digits_cnn

    torch.set_num_threads(args.threads)  # a tiny CNN: more threads only add contention on a busy machine
    scheduler = None if args.scheduler == "none" else args.scheduler
    study = Study(digits_space(), mode="min", searcher=args.searcher, scheduler=scheduler, storage=args.storage,
                  name="digits_cnn", seed=args.seed, max_epochs=args.max_epochs)
    study.fail_stale_trials()
    ran = sum(not (t.status is Status.FAILED and (t.reason or "").startswith("interrupted")) for t in study.trials)
    if ran:  # re-running resumes to the same total: interrupted trials are run again, nothing more
        print(f"resuming {args.storage}: {ran} of {args.trials} trials already ran")
    study.optimize(train_digits_cnn, n_trials=max(0, args.trials - ran), devices=args.devices,
                   progress=not args.no_progress)
    _print_best(study)
    study.close()
    print(f"all trials are in {args.storage}; see them with: torchhpo show {args.storage}")
    return 0


def _print_best(study: Study) -> None:
    best = study.best
    print(f"best trial #{best.number}: validation loss {best.value:.4f}")
    for k, v in best.config.items():
        print(f"  {k:<14} {v:.4g}" if isinstance(v, float) else f"  {k:<14} {v}")


def _cell(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value).replace("|", "/")


def _show(args: argparse.Namespace) -> int:
    study = Study.load(args.path, name=args.name, readonly=True)  # looking never writes
    trials = sorted(study.trials, key=lambda t: (t.score is None, -(t.score or 0.0)))
    names = study.space.names
    extra = sorted({k for t in trials[: args.top] for k in t.user_attrs})  # trial.set_attr's
    counts = Counter(t.status.value for t in trials)
    print(f"study '{study.name}' ({study.mode}imize), {len(trials)} trials: "
          + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    print("| # | status | value | epochs | " + " | ".join([*names, *extra]) + " | reason |")
    print("|---" * (5 + len(names) + len(extra)) + "|")
    for t in trials[: args.top]:
        value = "" if t.value is None else f"{t.value:.4g}"
        cells = [_cell(t.config[n]) for n in names] + [_cell(t.user_attrs.get(k, "")) for k in extra]
        reason = (t.reason or "").strip().splitlines()[0] if (t.reason or "").strip() else ""
        print(f"| {t.number} | {t.status.value} | {value} | {max(t.reports, default=0)} | " + " | ".join(cells)
              + f" | {reason.replace('|', '/')} |")
    if counts["completed"]:
        _print_best(study)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from torchhpo import plot

    study = Study.load(args.path, name=args.name, readonly=True)
    out = Path(args.out)
    for name, draw in (("history", plot.history), ("curves", plot.learning_curves),
                       ("parallel", plot.parallel_coordinates)):
        draw(study, out / f"{name}.png")
        print(out / f"{name}.png")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="torchhpo", description="PyTorch-native hyperparameter optimization")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="tune the digits CNN (scikit-learn's bundled digits) and print the best config")
    run.add_argument("--trials", type=int, default=40, help="trials to start (default 40)")
    run.add_argument("--searcher", default="gp", help="random | sobol | tpe | gp (default gp)")
    run.add_argument("--scheduler", default="hyperband", help="sha | hyperband | asha | median | none (default hyperband)")
    run.add_argument("--storage", default="runs/digits_cnn.db", help="SQLite file; re-running resumes it")
    run.add_argument("--max-epochs", type=int, default=27, help="epochs of a fully trained trial (default 27)")
    run.add_argument("--devices", default=None, help="'auto' (every GPU, else CPU), 'cpu' or 'cuda:0'")
    run.add_argument("--threads", type=int, default=1, help="torch CPU threads for training (default 1)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=_run)
    show = sub.add_parser("show", help="print a study's trials, best first")
    show.add_argument("path", help="the study's SQLite file")
    show.add_argument("--name", default=None, help="the study's name, when the file holds several")
    show.add_argument("--top", type=int, default=20, help="how many trials to list (default 20)")
    show.set_defaults(func=_show)
    pl = sub.add_parser("plot", help="save history, learning-curve and parallel-coordinate PNGs of a study")
    pl.add_argument("path", help="the study's SQLite file")
    pl.add_argument("--name", default=None, help="the study's name, when the file holds several")
    pl.add_argument("--out", default="plots", help="folder for the PNGs (default plots/)")
    pl.set_defaults(func=_plot)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"torchhpo: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
