"""Multi-GPU batch tuning: a GP proposes one batch of q configs at a time, q = the number of workers (one per
device), and ASHA stops poor trials early; the lecture's digits CNN is the model.

Each worker is a process pinned to one device (CUDA_VISIBLE_DEVICES), so a batch trains on every GPU at once; the
GP asks the next batch jointly (q-batch acquisition) once the whole batch has finished or been pruned. Drop
``--batch`` to refill each GPU as soon as it frees (running trials are then the GP's pending points).

    python recipes/multi_gpu_batch.py                                   # every visible GPU (else the CPU)
    python recipes/multi_gpu_batch.py --devices cpu,cpu                 # two CPU workers, q = 2
    python recipes/multi_gpu_batch.py --devices cuda:0,cuda:1 --per-device 2 --trials 64   # q = 4
    python recipes/multi_gpu_batch.py --devices cpu,cpu --trials 4 --epochs 2 --storage /tmp/x.db   # smoke run
    torchhpo show runs/multi_gpu_batch.db                               # the trials afterwards

Re-running the same command resumes the study from its SQLite file.
"""

from __future__ import annotations

import argparse
import time

import torchhpo as th
from torchhpo.problems import digits_space, train_digits_cnn

# --- configuration (every value has a flag below) ---------------------------------------------------------------
DEVICES = "auto"          # "auto": every visible GPU, else the CPU; or e.g. "cuda:0,cuda:1" / "cpu,cpu"
PER_DEVICE = 1            # trials at once on each device (small models: 2-4 fill a big GPU)
N_TRIALS = 32             # trials to start
MAX_EPOCHS = 9            # ASHA's largest budget (rungs at 1, 3, 9 epochs with eta = 3)
STORAGE = "runs/multi_gpu_batch.db"
SEED = 0
BATCH = True              # q-batch: wait for the whole batch, then ask q configs jointly


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="GP (q = workers) + ASHA over the digits CNN on several devices")
    p.add_argument("--devices", default=DEVICES, help="'auto' or comma-separated devices, e.g. cuda:0,cuda:1")
    p.add_argument("--per-device", type=int, default=PER_DEVICE)
    p.add_argument("--trials", type=int, default=N_TRIALS)
    p.add_argument("--epochs", type=int, default=MAX_EPOCHS)
    p.add_argument("--storage", default=STORAGE)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--async", dest="batch", action="store_false", default=BATCH,
                   help="refill each worker as soon as it frees instead of waiting for the batch")
    return p.parse_args()


def main() -> th.Study:
    args = parse()
    devices = args.devices if args.devices == "auto" else args.devices.split(",")
    executor = th.Processes(devices=devices, per_device=args.per_device)
    study = th.Study(digits_space(), mode="min", searcher="gp", scheduler="asha", storage=args.storage,
                     name="multi_gpu_batch", seed=args.seed, max_epochs=args.epochs)
    print(f"{executor}: q = {executor.slots} configs per GP batch" if args.batch else f"{executor}: asynchronous")
    start = time.perf_counter()
    with executor:
        study.optimize(train_digits_cnn, n_trials=args.trials, executor=executor, batch=args.batch)
    took = time.perf_counter() - start
    counts = {s.value: sum(t.status is s for t in study.trials) for s in th.Status}
    print(f"{len(study.trials)} trials in {took:.0f} s: {counts}")
    best = study.best
    print(f"best validation loss {best.value:.4f} (trial {best.number}, {max(best.reports, default=0)} epochs)")
    print("best config:", best.config)
    return study


if __name__ == "__main__":
    main()
