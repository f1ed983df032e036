"""Cost of one suggestion (model fit + acquisition optimization) on Hartmann6 after n observations.

    python benchmarks/suggest_latency.py           # n = 50, 100, 200, 400, 800 and a q=8 batch at n=200
    python benchmarks/suggest_latency.py --quick   # smoke run: n = 20, a q=2 batch, one repeat
    python benchmarks/suggest_latency.py --steady  # the second GP ask after n - 1 Sobol points, vs Optuna
    python benchmarks/suggest_latency.py --tpe     # TPE instead: torchhpo's and Optuna's at n = 100, 1000, 5000

Side by side in one run: torchhpo's GP (default LogEI; warm-started, as in a running study: it asked once at
n - 1 first), Optuna's GPSampler (likewise asked once before) and the plain BoTorch loop. CPU seconds are the
figure to quote on a shared machine (one torch thread); wall seconds are shown too. Every method is timed here,
around its ask, alike. Writes benchmarks/results/suggest_latency[-quick].md (with ``--tpe``: suggest_latency_tpe.md,
torchhpo's TPE against Optuna's TPESampler, both asked once before at n - 1 like a running study).

``--steady`` times the steady state of a real loop instead, on Hartmann6 and the mixed problem: n - 1 Sobol
points, a first GP ask whose proposal is evaluated and told, then the timed second ask, for torchhpo's GP and
Optuna's GPSampler alternately on the same histories. Its table is the second section of suggest_latency.md;
each mode rewrites only its own section.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import torch
from _common import RESULTS, header, save
from peers import BoTorchLoop, optuna_distributions

import torchhpo as th
from torchhpo.bench import PROBLEMS
from torchhpo.trial import Status, TrialRecord

PROBLEM = PROBLEMS["hartmann6"]
STEADY = "\n## Steady state: the second GP ask after Sobol points (`--steady`)\n\n"


def history(n: int, seed: int | None = None) -> list[TrialRecord]:
    configs = PROBLEM.space.sample(n, seed=n if seed is None else seed)
    return [TrialRecord(i, c, Status.COMPLETED, PROBLEM.fn(c), sign=-1) for i, c in enumerate(configs)]


def timed(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def torchhpo_gp(trials: list[TrialRecord], q: int) -> dict[str, float]:
    gp = th.GP(seed=0)
    gp.ask(PROBLEM.space, trials[:-1], 1)  # the previous suggestion of a running study: warms the fit
    wall, cpu = timed(lambda: gp.ask(PROBLEM.space, trials, q))
    return {"wall": wall, "cpu": cpu}


def optuna_gp(trials: list[TrialRecord], q: int) -> dict[str, float]:
    return optuna_peer(trials, q, "gp")


def optuna_peer(trials: list[TrialRecord], q: int, kind: str) -> dict[str, float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = optuna_distributions(PROBLEM.space)
    sampler = optuna.samplers.GPSampler(seed=0) if kind == "gp" else optuna.samplers.TPESampler(seed=0)
    study = optuna.create_study(sampler=sampler, direction="minimize")
    study.add_trials([optuna.trial.create_trial(params=t.config, distributions=dists, value=t.value)
                      for t in trials[:-1]])
    study.ask(dists)  # warms its kernel-parameter cache like a running study
    last = trials[-1]
    study.add_trial(optuna.trial.create_trial(params=last.config, distributions=dists, value=last.value))
    wall, cpu = timed(lambda: [study.ask(dists) for _ in range(q)])
    return {"wall": wall, "cpu": cpu}


def torchhpo_tpe(trials: list[TrialRecord], q: int) -> dict[str, float]:
    tpe = th.TPE(seed=0)
    tpe.ask(PROBLEM.space, trials[:-1], 1)
    wall, cpu = timed(lambda: tpe.ask(PROBLEM.space, trials, q))
    return {"wall": wall, "cpu": cpu}


def optuna_tpe(trials: list[TrialRecord], q: int) -> dict[str, float]:
    return optuna_peer(trials, q, "tpe")


def botorch_loop(trials: list[TrialRecord], q: int) -> dict[str, float]:
    loop = BoTorchLoop()
    X = PROBLEM.space.encode([t.config for t in trials])
    y = torch.tensor([t.value for t in trials], dtype=torch.float64)
    wall, cpu = timed(lambda: loop.suggest(PROBLEM.space, X, y, seed=0, q=q))
    return {"wall": wall, "cpu": cpu}


def steady_ask(method: str, problem: str, n: int, history: int) -> tuple[float, float]:
    """Wall and CPU seconds of the second GP ask after ``n - 1`` Sobol points (the first ask's proposal
    evaluated)."""
    P = PROBLEMS[problem]
    configs = P.space.sobol(n - 1, seed=history)
    if method == "torchhpo":
        gp = th.GP(seed=history, n_initial=1)
        trials = [TrialRecord(i, c, Status.COMPLETED, P.fn(c), sign=-1) for i, c in enumerate(configs)]
        first = gp.ask(P.space, trials, 1)[0]
        trials.append(TrialRecord(n - 1, first, Status.COMPLETED, P.fn(first), sign=-1))
        return timed(lambda: gp.ask(P.space, trials, 1))
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = optuna_distributions(P.space)
    study = optuna.create_study(sampler=optuna.samplers.GPSampler(seed=history), direction="minimize")
    study.add_trials([optuna.trial.create_trial(params=c, distributions=dists, value=P.fn(c)) for c in configs])
    trial = study.ask(dists)
    study.tell(trial, P.fn(dict(trial.params)))
    return timed(lambda: study.ask(dists))


def steady(argv: list[str], sizes: list[int], histories: int, repeats: int) -> None:
    """The ``--steady`` table: per problem and n, the median over histories of each method's median CPU time."""
    methods = ["torchhpo", "optuna"]
    text = STEADY + header("", ["benchmarks/suggest_latency.py", *argv]).split("\n", 2)[2]
    text += (f"- the second GP ask after n - 1 Sobol points (the first ask's proposal evaluated and told), CPU "
             f"seconds; torchhpo GP (LogEI) and Optuna GPSampler alternate on the same {histories} histories, "
             f"{repeats} repeat(s) each; median over histories of the median over repeats.\n\n"
             "| problem | n | torchhpo CPU s | Optuna CPU s | ratio | per history (torchhpo / Optuna) |\n"
             "|---|---|---|---|---|---|\n")
    for problem in ("hartmann6", "mixed"):
        for n in sizes:
            cost: dict[str, list[float]] = {m: [] for m in methods}
            for h in range(histories):
                runs: dict[str, list[float]] = {m: [] for m in methods}
                for r in range(repeats):  # alternate which goes first: the machine's load drifts
                    for m in methods if (h + r) % 2 == 0 else methods[::-1]:
                        runs[m].append(steady_ask(m, problem, n, h)[1])
                for m in methods:
                    cost[m].append(statistics.median(runs[m]))
            ours, theirs = statistics.median(cost["torchhpo"]), statistics.median(cost["optuna"])
            each = ", ".join(f"{a:.3f}/{b:.3f}" for a, b in zip(cost["torchhpo"], cost["optuna"], strict=True))
            text += f"| {problem} | {n} | {ours:.3f} | {theirs:.3f} | {ours / theirs:.2f}x | {each} |\n"
            print(text.splitlines()[-1], flush=True)
    path = RESULTS / "suggest_latency.md"
    first = path.read_text().split(STEADY)[0] if path.exists() else ""
    save("suggest_latency.md", first + text)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--histories", type=int, default=5, help="histories the batch/single cost ratio is taken over")
    ap.add_argument("--tpe", action="store_true", help="time TPE (torchhpo's and Optuna's) instead of the GPs")
    ap.add_argument("--steady", action="store_true", help="the second GP ask after Sobol points, vs Optuna")
    ap.add_argument("--sizes", default="50,200,800", help="the n of --steady")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    if args.tpe:
        return tpe_latency(argv, [100] if args.quick else [100, 1000, 5000], 1 if args.quick else args.repeats)
    if args.steady:
        return steady(argv, [int(n) for n in args.sizes.split(",")], args.histories, args.repeats)
    sizes, repeats, batch_n, q = ([20], 1, 20, 2) if args.quick else ([50, 100, 200, 400, 800], args.repeats, 200, 8)
    methods = {"torchhpo GP (LogEI)": torchhpo_gp, "BoTorch loop": botorch_loop}
    if importlib.util.find_spec("optuna"):
        methods["Optuna GPSampler"] = optuna_gp
    rows = []
    for n, k in [(n, 1) for n in sizes] + [(batch_n, q)]:
        trials = history(n)
        for name, fn in methods.items():
            runs = [fn(trials, k) for _ in range(repeats)]
            med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
            rows.append((name, n, k, med))
    # one history's figures swing with how many L-BFGS iterations its acquisition happens to need: the batch
    # ratio and the comparison with Optuna at n = batch_n are also taken over other random histories
    ratios, single, peer = [], [], []
    for h in range(1 if args.quick else args.histories):
        trials = history(batch_n, seed=10_000 + h)
        cost = {k: statistics.median(torchhpo_gp(trials, k)["cpu"] for _ in range(repeats)) for k in (1, q)}
        ratios.append(cost[q] / cost[1])
        single.append(cost[1])
        if "Optuna GPSampler" in methods:
            peer.append(statistics.median(optuna_gp(trials, 1)["cpu"] for _ in range(repeats)))
    text = header("Cost of a suggestion (benchmarks/suggest_latency.py)", ["benchmarks/suggest_latency.py", *argv])
    text += (f"- Hartmann6, n random observations; median of {repeats} repeats; seconds. Optuna has no joint "
             f"batch: its q={q} row is {q} sequential asks.\n\n"
             "| method | n | q | CPU s | wall s |\n|---|---|---|---|---|\n")
    for name, n, k, m in rows:
        text += f"| {name} | {n} | {k} | {m['cpu']:.3f} | {m['wall']:.3f} |\n"
    text += (f"\ntorchhpo GP, a q = {q} batch ÷ one suggestion (CPU, median of {repeats} repeats each) at n = {batch_n} "
             f"over {len(ratios)} other random histories: median {statistics.median(ratios):.2f}x, range "
             f"{min(ratios):.2f}x-{max(ratios):.2f}x ({', '.join(f'{r:.2f}' for r in ratios)}).\n")
    if peer:
        text += (f"One suggestion at n = {batch_n} over the same histories, CPU s: torchhpo median "
                 f"{statistics.median(single):.3f} ({', '.join(f'{c:.3f}' for c in single)}), Optuna GPSampler median "
                 f"{statistics.median(peer):.3f} ({', '.join(f'{c:.3f}' for c in peer)}).\n")
    path = RESULTS / "suggest_latency.md"
    kept = path.read_text().partition(STEADY) if path.exists() and not args.quick else ("", "", "")
    save(f"suggest_latency{'-quick' if args.quick else ''}.md", text + kept[1] + kept[2])


def tpe_latency(argv: list[str], sizes: list[int], repeats: int) -> None:
    methods = {"torchhpo TPE": torchhpo_tpe}
    if importlib.util.find_spec("optuna"):
        methods["Optuna TPESampler"] = optuna_tpe
    text = header("Cost of a TPE suggestion (benchmarks/suggest_latency.py --tpe)",
                  ["benchmarks/suggest_latency.py", *argv])
    text += (f"- Hartmann6, n random observations; one suggestion, median of {repeats} repeats; seconds; both "
             "samplers asked once at n - 1 first, as in a running study. Defaults of both (Optuna's is multivariate)."
             "\n\n| method | n | CPU s | wall s |\n|---|---|---|---|\n")
    for n in sizes:
        trials = history(n)
        for name, fn in methods.items():
            runs = [fn(trials, 1) for _ in range(repeats)]
            med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
            text += f"| {name} | {n} | {med['cpu']:.4f} | {med['wall']:.4f} |\n"
    save("suggest_latency_tpe.md", text)


if __name__ == "__main__":
    main(sys.argv[1:])
