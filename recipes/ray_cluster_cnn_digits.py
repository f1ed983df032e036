"""ASHA over the digits CNN on a Ray cluster: trials run as Ray tasks on any node, paused trials resume on whichever
node is free from their checkpoints, and the study (searcher, scheduler, SQLite file) stays on this machine.

On one machine, ``--simulate-nodes 2`` starts a cluster of two Ray nodes here (``ray.cluster_utils.Cluster``),
to see a paused trial resume on the other node before renting any. On a real cluster, start Ray on each machine
first (``ray start --head`` on this one, ``ray start --address=HEAD_IP:6379`` on the others, torchhpo installed on
all) and pass ``--address auto``. Checkpoints reach the driver through Ray's object store (``ship``, the default
on several nodes) or, for large states, through storage every node reaches (``--checkpoints s3://bucket/ckpt``).

    python recipes/ray_cluster_cnn_digits.py                                  # a local Ray, one node
    python recipes/ray_cluster_cnn_digits.py --simulate-nodes 2               # two Ray nodes on this machine
    python recipes/ray_cluster_cnn_digits.py --address auto --cpus-per-trial 2 --trials 200   # a real cluster
    python recipes/ray_cluster_cnn_digits.py --address auto --checkpoints s3://bucket/ckpt    # large states
    python recipes/ray_cluster_cnn_digits.py --simulate-nodes 2 --trials 4 --epochs 3 --storage /tmp/r.db  # smoke

Re-running the same command resumes the study from its SQLite file (``pip install 'torchhpo[ray]'``).
"""

from __future__ import annotations

import argparse
import collections
import os
import time

import torchhpo as th
from torchhpo.problems import digits_space, train_digits_cnn

# --- configuration (every value has a flag below) ---------------------------------------------------------------
ADDRESS = None            # None: a local Ray (or the one already started here); "auto": this machine's cluster
SIMULATE_NODES = 0        # > 0: start that many one-CPU Ray nodes on this machine instead (needs address None)
CPUS_PER_TRIAL = 1        # Ray resources of one trial; add --gpus-per-trial on GPU nodes
GPUS_PER_TRIAL = 0.0
CHECKPOINTS = "auto"      # "ship" (object store), "shared" (a folder every node mounts), or a pyarrow.fs URI
N_TRIALS = 24
MAX_EPOCHS = 9            # ASHA's rungs at 1, 3, 9 epochs
STORAGE = "runs/ray_cluster.db"
SEED = 0


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="ASHA + TPE over the digits CNN on a Ray cluster")
    p.add_argument("--address", default=ADDRESS, help="None (local Ray), 'auto' or 'ray://host:10001'")
    p.add_argument("--simulate-nodes", type=int, default=SIMULATE_NODES)
    p.add_argument("--cpus-per-trial", type=float, default=CPUS_PER_TRIAL)
    p.add_argument("--gpus-per-trial", type=float, default=GPUS_PER_TRIAL)
    p.add_argument("--checkpoints", default=CHECKPOINTS, help="auto, ship, shared, or a URI such as s3://bucket/x")
    p.add_argument("--trials", type=int, default=N_TRIALS)
    p.add_argument("--epochs", type=int, default=MAX_EPOCHS)
    p.add_argument("--storage", default=STORAGE)
    p.add_argument("--seed", type=int, default=SEED)
    args = p.parse_args()
    if args.simulate_nodes and args.address is not None:
        p.error("--simulate-nodes starts its own cluster: drop --address")
    return args


def train(config: dict, trial: th.Trial) -> float:
    """The digits CNN, noting the Ray node of each task of the trial (the first, and each resume)."""
    import ray

    trial.set_attr(f"node from epoch {trial.last_step}", ray.get_runtime_context().get_node_id()[:8])
    return train_digits_cnn(config, trial)


def nodes(trial: th.TrialRecord) -> list[str]:
    """The nodes of a trial's tasks, in order."""
    return [node for key, node in sorted(trial.user_attrs.items(), key=lambda kv: int(kv[0].split()[-1]))
            if key.startswith("node from epoch")]


def main() -> th.Study:
    args = parse()
    import ray

    cluster = None
    if args.simulate_nodes:
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        for _ in range(args.simulate_nodes - 1):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the workers import this checkout
        ray.init(address=cluster.address, logging_level="warning",
                 runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([here, os.path.dirname(__file__)])}})
    study = th.Study(digits_space(), mode="min", searcher="tpe", scheduler="asha", storage=args.storage,
                     name="ray_cluster", seed=args.seed, max_epochs=args.epochs)
    executor = th.Ray(address=args.address, resources_per_trial={"cpu": args.cpus_per_trial,
                                                                 "gpu": args.gpus_per_trial},
                      checkpoints=args.checkpoints)
    print(f"{executor} on {len(ray.nodes())} node(s)")
    start = time.perf_counter()
    try:
        with executor:
            study.optimize(train, n_trials=args.trials, executor=executor)
    finally:
        if cluster is not None:
            ray.shutdown()
            cluster.shutdown()
    counts = collections.Counter(t.status.value for t in study.trials)
    resumed = sum(len(nodes(t)) > 1 for t in study.trials)
    moved = sum(len(set(nodes(t))) > 1 for t in study.trials)
    print(f"{len(study.trials)} trials in {time.perf_counter() - start:.0f} s: {dict(counts)}; "
          f"{resumed} resumed from their checkpoints, {moved} of them on another node")
    best = study.best
    print(f"best validation loss {best.value:.4f} (trial {best.number}, {max(best.reports, default=0)} epochs): "
          f"{best.config}")
    return study


if __name__ == "__main__":
    main()
