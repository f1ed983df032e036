"""Several driver processes on one SQLite study: do two drivers run twice the trials of one, losing none?

    python benchmarks/drivers.py            # 1-s trials, 30 s per run, 1 and 2 drivers, random and TPE + ASHA
    python benchmarks/drivers.py --quick    # smoke run (a few seconds)

Each driver is a separate process running ``Study(storage=shared.db).optimize(timeout=T)`` on trials that sleep
(1 s per trial: 9 epochs of 0.11 s), so the drivers compete only for the file, not for the two cores. Counted: the
trials each setting finished in the same wall time, whether their numbers are 0..n-1 without a gap, and whether
any trial was lost (left RUNNING, or FAILED). Under a pruning scheduler the work done is the epochs (a trial
can be 1 or 9 epochs), so both ratios are given. Trials still PAUSED at the timeout are not lost: the next
``optimize`` on the file resumes them. Writes benchmarks/results/drivers.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torchhpo as th
from benchmarks._common import header, save

DRIVER = textwrap.dedent("""
    import sys, time
    import torchhpo as th

    def train(config, trial):
        for epoch in trial.epochs():
            time.sleep(EPOCH)
            trial.report((config["x"] - 0.3) ** 2 + 1.0 / (epoch + 1))
        return (config["x"] - 0.3) ** 2

    if __name__ == "__main__":
        path, seed, searcher, scheduler, budget = sys.argv[1:6]
        space = th.Space({"x": th.Float(0.0, 1.0), "k": th.Int(1, 8)})
        with th.Study(space, storage=path, seed=int(seed), max_epochs=9, searcher=searcher,
                      scheduler=None if scheduler == "none" else scheduler) as study:
            study.optimize(train, timeout=float(budget), progress=False)
""")


def run(drivers: int, searcher: str, scheduler: str, budget: float, epoch: float, folder: Path) -> dict:
    path = folder / f"{searcher}-{scheduler}-{drivers}.db"
    script = folder / "driver.py"
    script.write_text(DRIVER.replace("EPOCH", repr(epoch)))
    start = time.monotonic()
    procs = [subprocess.Popen([sys.executable, str(script), str(path), str(seed), searcher, scheduler, str(budget)],
                              stderr=subprocess.PIPE, text=True) for seed in range(drivers)]
    errors = [p.communicate()[1] for p in procs]
    wall = time.monotonic() - start
    trials = th.Study.load(path, readonly=True).trials
    return {"drivers": drivers, "method": searcher if scheduler == "none" else f"{searcher} + {scheduler}",
            "trials": len(trials), "epochs": sum(max(t.reports, default=0) for t in trials), "wall": wall,
            "dense": [t.number for t in trials] == list(range(len(trials))),
            "lost": sum(t.status in (th.Status.RUNNING, th.Status.FAILED) for t in trials),
            "paused": sum(t.status is th.Status.PAUSED for t in trials),
            "exit": [p.returncode for p in procs], "errors": [e for e in errors if "Error" in e]}


def main() -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=30.0, help="seconds each driver runs")
    parser.add_argument("--quick", action="store_true", help="smoke run: 4-s budget, short epochs")
    parser.add_argument("--out", default="drivers.md", help="file name under benchmarks/results/")
    args = parser.parse_args()
    budget, epoch = (4.0, 0.02) if args.quick else (args.budget, 1.0 / 9)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for searcher, scheduler in (("random", "none"), ("tpe", "asha")):
            for drivers in (1, 2):
                row = run(drivers, searcher, scheduler, budget, epoch, Path(tmp))
                print(row, flush=True)
                rows.append(row)
    text = header("Several drivers on one SQLite study", sys.argv) + (
        f"\n{len(rows) // 2} methods; each driver a process running `optimize(timeout={budget:g})` on trials of "
        f"9 epochs x {epoch:.3g} s (sleeping, so the drivers share only the file).\n\n"
        "| method | drivers | trials | epochs | trials vs 1 driver | epochs vs 1 driver | numbers 0..n-1 | "
        "lost (RUNNING or FAILED) | PAUSED (resumable) | exit codes |\n|---|---|---|---|---|---|---|---|---|---|\n")
    for row in rows:
        one = next(r for r in rows if r["method"] == row["method"] and r["drivers"] == 1)
        text += (f"| {row['method']} | {row['drivers']} | {row['trials']} | {row['epochs']} | "
                 f"{row['trials'] / one['trials']:.2f}x | {row['epochs'] / one['epochs']:.2f}x | "
                 f"{'yes' if row['dense'] else 'NO'} | {row['lost']} | "
                 f"{row['paused']} | {row['exit']} |\n")
    if any(r["errors"] for r in rows):
        text += "\nErrors printed by drivers:\n\n" + "\n".join(f"    {e.strip()[-500:]}" for r in rows
                                                               for e in r["errors"]) + "\n"
    if args.quick:
        print(text)
        return text
    save(args.out, text)
    return text


if __name__ == "__main__":
    main()
