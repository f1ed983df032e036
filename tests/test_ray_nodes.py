"""Ray across nodes: a cluster of two nodes simulated on this machine (``ray.cluster_utils.Cluster``), in a
process of its own (the other Ray tests share one single-node Ray). Paused trials resume on whichever node is free,
from the checkpoint shipped with their task or put at a URI both nodes reach; a node removed mid-study fails its
trials alone."""

from __future__ import annotations

import json
import sys

import pytest
from support import ROOT, run_script

pytestmark = pytest.mark.timeout(400)

EPOCHS = 9


def train(config, trial):
    """Counts its epochs in its checkpoint and notes the node of each one, so the test can tell a resumed trial
    (epochs continue, possibly on the other node) from one restarted from scratch."""
    import time

    import ray

    state = trial.load() or {"epochs": [], "nodes": []}
    value = 0.0
    for epoch in trial.epochs():
        time.sleep(0.05)
        state["epochs"].append(epoch)
        state["nodes"].append(ray.get_runtime_context().get_node_id())
        trial.save(state)
        trial.set_attr("epochs", list(state["epochs"]))
        trial.set_attr("nodes", list(state["nodes"]))
        value = config["x"] * (1 - 0.5 ** epoch)
        trial.report(value)
    return value


def main(out: str, bucket: str) -> None:
    import ray
    from ray.cluster_utils import Cluster

    import torchhpo as th

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    second = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="warning",
             runtime_env={"env_vars": {"PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"}})
    space = th.Space({"x": th.Float(0.0, 1.0)})
    results = {}
    with th.Ray(resources_per_trial={"cpu": 1}) as executor:
        results["checkpoints"] = executor.checkpoints
        results["slots"] = executor.slots
        study = th.Study(space, mode="max", scheduler=th.ASHA(min_epochs=1, max_epochs=EPOCHS, eta=3), seed=0,
                         max_epochs=EPOCHS)
        study.optimize(train, n_trials=12, executor=executor, progress=False)
        results["paused"] = [t.user_attrs for t in study.trials]
        results["statuses"] = [t.status.value for t in study.trials]

        # the second node goes away while trials run there: those fail, nothing else is lost
        lost = th.Study(space, mode="max", seed=1, max_epochs=EPOCHS)

        def drop_node(study, record):
            if len(study.trials) >= 3 and second in cluster.worker_nodes:
                cluster.remove_node(second)

        lost.optimize(train, n_trials=8, executor=executor, callbacks=[drop_node], progress=False)
        results["lost"] = [(t.status.value, t.reason) for t in lost.trials]
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    with th.Ray(resources_per_trial={"cpu": 1}, checkpoints=bucket) as executor:  # large states: through storage
        study = th.Study(space, mode="max", scheduler=th.ASHA(min_epochs=1, max_epochs=EPOCHS, eta=3), seed=2,
                         max_epochs=EPOCHS)
        study.optimize(train, n_trials=8, executor=executor, progress=False)
        results["uri"] = [t.user_attrs for t in study.trials]
    ray.shutdown()
    cluster.shutdown()
    with open(out, "w") as f:
        json.dump(results, f)


def test_two_nodes_resume_paused_trials_anywhere_and_survive_losing_a_node(tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "out.json"
    pytest.importorskip("pyarrow")
    run_script(str(ROOT / "tests" / "test_ray_nodes.py"), str(out), (tmp_path / "bucket").as_uri())
    results = json.loads(out.read_text())
    assert results["checkpoints"] == "ship" and results["slots"] == 2
    assert all(s in ("completed", "pruned") for s in results["statuses"])
    # ASHA pauses every trial after its first epoch; a promoted one resumes in a task of its own, which starts in
    # a fresh folder of whichever node Ray picks: its epochs go on only if the checkpoint travelled with the task
    for paused in (results["paused"], results["uri"]):
        assert [attrs for attrs in paused if len(attrs["epochs"]) > 1], "no trial was promoted past its first pause"
        for attrs in paused:
            assert attrs["epochs"] == list(range(len(attrs["epochs"]))), "a resumed trial restarted from scratch"
    lost = results["lost"]
    assert len(lost) == 8 and all(s in ("completed", "failed") for s, _ in lost)
    assert all("worker died" in reason for s, reason in lost if s == "failed")
    assert sum(s == "completed" for s, _ in lost) >= 6


if __name__ == "__main__":
    sys.path[:0] = [str(ROOT)]
    main(sys.argv[1], sys.argv[2])
