"""Every recipe runs end to end with tiny settings (real training on the bundled digits data)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT


def run(script: str, *args: str, tmp_path: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(ROOT / "recipes" / script), *args], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_grid_cnn_digits(tmp_path):
    out = run("grid_cnn_digits.py", "--epochs", "1", "--storage", str(tmp_path / "g.db"), "--no-progress",
              tmp_path=tmp_path)
    rows = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 9 and "best: {'num_layers':" in out


def test_random_mlp_digits(tmp_path):
    out = run("random_mlp_digits.py", "--trials", "3", "--storage", str(tmp_path / "r.db"), "--no-progress",
              tmp_path=tmp_path)
    assert "best of 3 trials" in out


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("*.py")), ids=lambda p: p.name)
def test_recipes_are_documented_and_small(path):
    text = path.read_text()
    assert text.startswith('"""') and "python recipes/" in text, "the exact commands belong in the docstring"
    assert len(text.splitlines()) < 200


def test_sklearn_searchcv(tmp_path):
    out = run("sklearn_searchcv.py", "--trials", "4", "--no-progress", tmp_path=tmp_path)
    assert "grid: cv accuracy" in out and " tpe: cv accuracy" in out


def test_conditional_mlp_digits(tmp_path):
    out = run("conditional_mlp_digits.py", "--trials", "6", "--storage", str(tmp_path / "c.db"), "--no-progress",
              tmp_path=tmp_path)
    assert "best of 6 trials" in out and "trials by depth" in out


def test_ray_cluster_cnn_digits(tmp_path):
    """Two Ray nodes simulated here, checkpoints through a file:// URI: trials pause at ASHA's first rung and the
    promoted ones resume from their checkpoints (on either node)."""
    pytest.importorskip("ray")
    pytest.importorskip("pyarrow")
    out = run("ray_cluster_cnn_digits.py", "--simulate-nodes", "2", "--trials", "6", "--epochs", "3",
              "--storage", str(tmp_path / "r.db"), "--checkpoints", (tmp_path / "bucket").as_uri(), tmp_path=tmp_path)
    assert "on 2 node(s)" in out and "6 trials in" in out
    resumed = int(out.split(" resumed from their checkpoints")[0].rsplit(" ", 1)[1])
    assert resumed >= 1 and "best validation loss" in out
