"""The command line: ``torchhpo run | show | list | plot | bench`` (every subcommand with examples: docs/cli.md).

    torchhpo run                                  # tune the digits CNN (the embedded default job), SQLite storage
    torchhpo run train.py:train --space space.json --trials 20 --storage runs/s.db --study s --devices cpu,cpu
    torchhpo show runs/s.db --study s             # every trial and the best config
    torchhpo list runs/s.db                       # the studies in a file
    torchhpo plot runs/s.db --study s --out plots/
    torchhpo bench --searchers gp-logei,tpe,random --problems branin,hartmann6 --seeds 10 --workers 2 --out bench/
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torchhpo.executors import make_executor
from torchhpo.space import Space
from torchhpo.study import FailingTrials, Study, Tuned
from torchhpo.trial import Status

__all__ = ["main"]

DEMO = {"name": "digits_cnn", "storage": "runs/digits_cnn.db", "max_epochs": 27, "scheduler": "hyperband"}


def _target(spec: str) -> Callable[..., Any]:
    """The training function ``spec`` names: ``path/to/train.py:fn`` or ``package.module:fn``.

    A script is imported by its file name from its folder (put first on ``sys.path``, which worker processes
    inherit), so that ``--devices cpu,cpu`` workers find the function as this process did."""
    where, _, attr = spec.rpartition(":")
    if not where or not attr.isidentifier():
        raise ValueError(f"run: target {spec!r} must be FILE.py:FUNCTION or MODULE:FUNCTION, e.g. train.py:train")
    if where.endswith(".py"):
        path = Path(where).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"run: {where}: no such script")
        sys.path.insert(0, str(path.parent))
        module = importlib.import_module(path.stem)
        if Path(module.__file__ or "").resolve() != path:
            raise ValueError(f"run: {path.name} has the name of the module {module.__name__} ({module.__file__}); "
                             "rename the script")
    else:
        module = importlib.import_module(where)
    fn = getattr(module, attr, None)
    if not callable(fn):
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise ValueError(f"run: {where} has no function {attr!r}; it defines {found}")
    return fn


def _job(args: argparse.Namespace) -> tuple[Callable[..., Any], dict[str, Any], str]:
    """The training function, ``Study`` arguments and the value's label of ``torchhpo run``'s arguments."""
    if args.target is None:
        from torchhpo.problems import digits_space, train_digits_cnn

        if args.space is not None or args.mode is not None:
            raise ValueError("run: --space and --mode go with a target (train.py:fn); the demo has its own")
        study = {"space": digits_space(), "mode": "min", "name": args.study or DEMO["name"],
                 "max_epochs": args.max_epochs or DEMO["max_epochs"], "scheduler": args.scheduler or DEMO["scheduler"]}
        return train_digits_cnn, study | {"storage": args.storage or DEMO["storage"]}, "validation loss"
    fn = _target(args.target)
    tuned = fn if isinstance(fn, Tuned) else None  # @th.tune carries its space, mode and epochs
    if args.space is not None:
        space = Space.from_dict(json.loads(Path(args.space).read_text()))
    elif tuned is not None:
        space = tuned.space
    else:
        raise ValueError("run: --space is needed: a JSON file of th.Space.to_dict(), e.g. "
                         "Path('space.json').write_text(json.dumps(space.to_dict()))")
    name = args.study or getattr(fn, "__name__", "default")
    study = {"space": space, "mode": args.mode or (tuned.mode if tuned else "min"), "name": name,
             "max_epochs": args.max_epochs or (tuned.max_epochs if tuned else None),
             "fidelity": tuned.fidelity if tuned else "epochs", "scheduler": args.scheduler or "none",
             "storage": args.storage or f"runs/{name}.db"}
    return fn, study, "value"


def _run(args: argparse.Namespace) -> int:
    fn, kwargs, label = _job(args)
    if kwargs["scheduler"] == "none":
        kwargs["scheduler"] = None
    devices = args.devices.split(",") if args.devices and "," in args.devices else args.devices
    study = Study(searcher=args.searcher, seed=args.seed, **kwargs)
    study.fail_stale_trials()
    ran = sum(not (t.status is Status.FAILED and (t.reason or "").startswith("interrupted")) for t in study.trials)
    if ran:  # re-running resumes to the same total: interrupted trials are run again, nothing more
        print(f"resuming {kwargs['storage']}: {ran} of {args.trials} trials already ran")
    executor = make_executor(None, devices, threads=args.threads)  # the per-trial thread rule, or --threads
    try:
        study.optimize(fn, n_trials=max(0, args.trials - ran), executor=executor, progress=not args.no_progress)
    finally:
        executor.close()
    _print_best(study, label)
    study.close()
    print(f"all trials are in {kwargs['storage']}; see them with: torchhpo show {kwargs['storage']} --study {study.name}")
    return 0


def _threads(text: str) -> int | str:
    return text if text == "auto" else int(text)


def _print_best(study: Study, label: str = "value") -> None:
    best = study.best
    better = "lower" if study.mode == "min" else "higher"
    print(f"best trial #{best.number}: {label} {best.value:.4g} ({better} is better)")
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
    print(f"study '{study.name}' ({study.mode}imize: {'lower' if study.mode == 'min' else 'higher'} is better), "
          f"{len(trials)} trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    print("| # | status | value | epochs | " + " | ".join([*names, *extra]) + " | reason |")
    print("|---" * (5 + len(names) + len(extra)) + "|")
    for t in trials[: args.top]:
        value = "" if t.value is None else f"{t.value:.4g}"
        cells = [_cell(t.config.get(n, "")) for n in names] + [_cell(t.user_attrs.get(k, "")) for k in extra]
        reason = (t.reason or "").strip().splitlines()[0] if (t.reason or "").strip() else ""
        print(f"| {t.number} | {t.status.value} | {value} | {max(t.reports, default=0)} | " + " | ".join(cells)
              + f" | {reason.replace('|', '/')} |")
    if counts["completed"]:
        _print_best(study)
    return 0


def _list(args: argparse.Namespace) -> int:
    from torchhpo.storage import SQLiteStorage

    if not Path(args.path).is_file():
        raise FileNotFoundError(f"{args.path}: no such study file; check the path")
    storage = SQLiteStorage(args.path, readonly=True)
    try:
        found = storage.studies()
    finally:
        storage.close()
    print("| study | direction | trials | completed | best value | parameters |\n|---|---|---|---|---|---|")
    for name, space, mode in found:
        study = Study.load(args.path, name=name, readonly=True)
        done = sum(t.status is Status.COMPLETED for t in study.trials)
        best = f"{study.best.value:.4g}" if done else ""
        print(f"| {name} | {mode}imize | {len(study.trials)} | {done} | {best} | {', '.join(space.names)} |")
        study.close()
    return 0


def _plot(args: argparse.Namespace) -> int:
    from torchhpo import plot

    study = Study.load(args.path, name=args.name, readonly=True)
    for path in plot.save_all(study, Path(args.out)):
        print(path)
    return 0


def _seeds(text: str) -> list[int]:
    """``"10"``: seeds 0..9; ``"100-109"``: those seeds."""
    a, dash, b = text.partition("-")
    if not (a.isdigit() and (b.isdigit() or not dash)):
        raise ValueError(f"bench: --seeds {text!r} must be a count (10) or a range (100-109)")
    return list(range(int(a), int(b) + 1)) if dash else list(range(int(a)))


def _bench(args: argparse.Namespace) -> int:
    import torch

    from torchhpo.bench import PROBLEMS, SEARCHERS, compare

    if args.list:
        print("searchers: " + ", ".join(SEARCHERS) + "\nproblems: " + ", ".join(PROBLEMS))
        return 0
    torch.set_num_threads(1)  # as each worker has: the numbers do not depend on --workers
    out = Path(args.out)
    res = compare(args.searchers.split(","), args.problems.split(","), args.budget, _seeds(args.seeds),
                  workers=args.workers, progress=not args.no_progress, out=out)
    if res.reused:
        print(f"reused {res.reused} of {len(res.runs)} runs from {out / 'results.json'}")
    (out / "results.md").write_text(res.markdown(f"torchhpo {' '.join(args.argv)}"))
    print(res.table())
    print("warnings (counted, not printed): " + ("; ".join(res.warning_summary()) or "none"))
    try:
        import matplotlib  # noqa: F401 (only whether it is installed)
    except ImportError:
        print("plots skipped: matplotlib is not installed (pip install 'torchhpo[plot]')")
    else:
        for p in dict.fromkeys(k[1] for k in res.runs):
            res.plot(out / f"regret-{p}.png", problem=p)
            print(out / f"regret-{p}.png")
    print(out / "results.md")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="torchhpo", description="PyTorch-native hyperparameter optimization")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="tune a training function fn(config, trial) (default: the digits CNN demo)")
    run.add_argument("target", nargs="?", help="FILE.py:FUNCTION or MODULE:FUNCTION; none: the digits CNN demo")
    run.add_argument("--space", default=None, help="JSON file of th.Space.to_dict() (needed with a target unless "
                     "it is @th.tune-decorated)")
    run.add_argument("--mode", choices=("min", "max"), default=None, help="min (default) or max")
    run.add_argument("--study", default=None, help="the study's name in the file (default: the function's name)")
    run.add_argument("--trials", type=int, default=40, help="trials to run in all, resuming included (default 40)")
    run.add_argument("--searcher", default="gp", help="random | sobol | tpe | gp (default gp)")
    run.add_argument("--scheduler", default=None, help="sha | hyperband | asha | median | none (default: hyperband "
                     "for the demo, none for a target)")
    run.add_argument("--storage", default=None, help="SQLite file; re-running resumes it (default runs/STUDY.db)")
    run.add_argument("--max-epochs", type=int, default=None, help="epochs of a fully trained trial (demo: 27)")
    run.add_argument("--devices", default=None, help="'auto' (every GPU, else CPU), 'cpu', 'cuda:0', or several "
                     "comma-separated ('cpu,cpu', 'cuda:0,cuda:1'): one worker process each")
    run.add_argument("--threads", type=_threads, default="auto", help="torch CPU threads per trial: 'auto' "
                     "(default: the usable CPUs, one left to the driver, divided among the trials at once) or a count")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=_run)
    for cmd, helptext, func in (("show", "print a study's trials, best first", _show),
                                ("plot", "save a study's figures (PNG) into a folder", _plot)):
        p = sub.add_parser(cmd, help=helptext)
        p.add_argument("path", help="the study's SQLite file")
        p.add_argument("--study", "--name", dest="name", default=None, help="the study, when the file holds several")
        p.set_defaults(func=func)
        if cmd == "show":
            p.add_argument("--top", type=int, default=20, help="how many trials to list (default 20)")
        else:
            p.add_argument("--out", default="plots", help="folder for the PNGs (default plots/)")
    ls = sub.add_parser("list", help="list the studies in a SQLite file")
    ls.add_argument("path", help="the SQLite file")
    ls.set_defaults(func=_list)
    bench = sub.add_parser("bench", help="compare searchers on benchmark problems (regret table and plots)")
    bench.add_argument("--searchers", default="gp-logei,tpe,random", help="comma-separated (torchhpo bench --list)")
    bench.add_argument("--problems", default="branin,hartmann6", help="comma-separated (torchhpo bench --list)")
    bench.add_argument("--budget", type=int, default=50, help="evaluations per run (default 50)")
    bench.add_argument("--seeds", default="10", help="a count (10: seeds 0..9) or a range (100-109)")
    bench.add_argument("--workers", type=int, default=1, help="worker processes, one torch thread each (default 1)")
    bench.add_argument("--out", default="bench", help="folder of results.json (resumed), results.md and the plots")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench.add_argument("--list", action="store_true", help="list the searchers and problems, run nothing")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    args.argv = argv
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError, FailingTrials) as e:
        print(f"torchhpo: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
