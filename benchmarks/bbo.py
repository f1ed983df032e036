"""Sample efficiency of search: final log10 regret after 50 evaluations on Branin, Hartmann6, Ackley5, mixed.

    python benchmarks/bbo.py                       # seeds 0..9 (BoTorch loop: seeds 0..3, it is slow)
    python benchmarks/bbo.py --seeds 100-109 --tag tune   # tuning seeds, never the reported ones
    python benchmarks/bbo.py --quick               # smoke run: the mixed problem, 8 evaluations, 1 seed
    # in parallel, then one table from both parts:
    python benchmarks/bbo.py --only gp-logei,gp-ucb --tag gp &
    python benchmarks/bbo.py --only optuna-gp,optuna-tpe,random,sobol,botorch-loop --loop-seeds 0-1 --tag peers
    python benchmarks/bbo.py --merge gp,peers
    # later parts replace earlier runs of the same optimizer, problem and seed; --only filters a merge;
    # the part "published" is bbo.json.gz, the runs behind the current bbo.md. The current table:
    python benchmarks/bbo.py --only tpe,optuna-tpe,random,sobol --seeds 0-19 --tag tpe
    python benchmarks/bbo.py --merge published,tpe

Writes benchmarks/results/bbo[-TAG].md, its runs as bbo[-TAG].json.gz (a merge: the runs it merged, the data behind
its table) and one regret-curve PNG per problem.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import warnings
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import torch
from _common import RESULTS, header, save
from peers import BoTorchLoop, OptunaPeer

import torchhpo as th
from torchhpo.bench import Results, compare


def seeds_of(text: str) -> list[int]:
    a, _, b = text.partition("-")
    return list(range(int(a), int(b or a) + 1))


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run")
    ap.add_argument("--seeds", default="0-9", help="a range like 0-9")
    ap.add_argument("--loop-seeds", default="0-3", help="seeds for the slow plain BoTorch loop")
    ap.add_argument("--budget", type=int, default=50)
    ap.add_argument("--problems", default="branin,hartmann6,ackley5,mixed", help="to run or, with --merge, to show")
    ap.add_argument("--only", default="", help="comma-separated optimizer names to run or, with --merge, to show")
    ap.add_argument("--tag", default="", help="suffix of the result files")
    ap.add_argument("--merge", default="", help="comma-separated tags whose saved runs make one table")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    seeds, loop_seeds, budget = seeds_of(args.seeds), seeds_of(args.loop_seeds), args.budget
    problems = args.problems.split(",")
    if args.quick:
        seeds, loop_seeds, problems, budget = [0], [0], ["mixed"], 8
    opts: dict = {"gp-logei": th.GP(), "gp-qlognei": th.GP("qlognei"), "gp-ucb": th.GP("ucb", beta=2.0),
                  "tpe": th.TPE(), "random": th.RandomSearch(), "sobol": th.Sobol()}
    if importlib.util.find_spec("optuna"):
        opts |= {"optuna-gp": OptunaPeer("gp"), "optuna-tpe": OptunaPeer("tpe")}
    slow = {"botorch-loop": BoTorchLoop(n_initial=10 if not args.quick else 4)}
    if args.only:
        keep = set(args.only.split(","))
        opts, slow = {k: v for k, v in opts.items() if k in keep}, {k: v for k, v in slow.items() if k in keep}
    res = Results()
    names = {t: "bbo.json.gz" if t == "published" else f"bbo-{t}.json.gz" for t in args.merge.split(",") if t}
    parts = [Results.load(RESULTS / name) for name in names.values()] if args.merge else [
        compare(opts, problems, budget, seeds) if opts else None,
        compare(slow, problems, budget, loop_seeds) if slow else None]
    for part in parts:  # later parts replace earlier runs of the same (optimizer, problem, seed)
        if part is not None:
            res.runs |= {k: r for k, r in part.runs.items()
                         if not args.merge or ((not args.only or k[0] in keep) and k[1] in problems)}
            res.optima |= part.optima
    tag = f"-{args.tag}" if args.tag else ("-quick" if args.quick else "")
    res.save(RESULTS / f"bbo{tag}.json.gz")  # a merge saves the runs it merged: the data behind its table
    problems = list(dict.fromkeys(k[1] for k in res.runs))
    by_opt = {o: sorted({k[2] for k in res.runs if k[0] == o}) for o in dict.fromkeys(k[0] for k in res.runs)}
    text = header("Sample efficiency (benchmarks/bbo.py)", ["benchmarks/bbo.py", *argv])
    text += (f"- budget {budget} evaluations, minimize; seeds: "
             + ", ".join(f"{o} {s[0]}..{s[-1]}" for o, s in by_opt.items()) + "\n"
             "- cells: median [IQR] of final log10 simple regret (floored at 1e-12); lower is better; mean rank: 1 + "
             "for each other optimizer, the share of the (problem, seed) runs both made where it ended lower (the "
             "plain mean rank when all ran the same seeds; rows with more seeds meet the others on the common "
             "ones)\n\n")
    text += res.table() + "\n"
    for p in problems:
        res.plot(str(RESULTS / f"bbo{tag}-{p}.png"), problem=p)
    save(f"bbo{tag}.md", text)


if __name__ == "__main__":
    main(sys.argv[1:])
