"""The vision recipe (``pip install torchhpo[vision]``): its torch-only parts always, its smoke run with torchvision."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest
import torch
from support import ROOT, load_script

RECIPE = ROOT / "recipes" / "vision_digits.py"
HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


def _run(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-W", "ignore", str(RECIPE), *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=240)


def test_digits_become_uint8_rgb_images_without_torchvision():
    vision = load_script(RECIPE)  # importable without torchvision: it loads lazily
    X = torch.tensor([[[[0.0, 1.0], [0.5, 0.25]]]])  # 1 x 1 x 2 x 2
    images = vision.to_images(X, size=4)
    assert images.shape == (1, 3, 4, 4) and images.dtype == torch.uint8
    assert (images[:, 0] == images[:, 1]).all() and (images[:, 1] == images[:, 2]).all()  # grey in 3 channels
    assert images.min() >= 0 and images.max() <= 255 and images[0, 0, 0, 0] == 0
    data = vision.digits_images(n_train=100, size=16)
    assert data.X_train.shape == (100, 3, 16, 16) and data.X_val.shape == (500, 3, 16, 16)
    assert len(data.X_test) == 1797 - 600 and data.X_train.dtype == torch.uint8
    assert vision.as_input(data.X_train).max() <= 1.0 and vision.as_input(data.X_train).dtype == torch.float32


def test_help_runs_without_torchvision(tmp_path):
    out = _run("--help", cwd=tmp_path)
    assert out.returncode == 0 and "--smoke" in out.stdout and "--searcher" in out.stdout


@pytest.mark.skipif(HAS_TORCHVISION, reason="torchvision is installed: the smoke run below covers the recipe")
def test_without_torchvision_the_recipe_says_how_to_install_it(tmp_path):
    out = _run("--smoke", cwd=tmp_path)
    assert out.returncode == 1 and "pip install 'torchhpo[vision]'" in out.stderr


@pytest.mark.skipif(not HAS_TORCHVISION, reason="torchvision is not installed (pip install 'torchhpo[vision]'); "
                                                "the recipe's smoke run needs it")
def test_vision_recipe_smoke_run(tmp_path):
    out = _run("--smoke", "--no-progress", "--device", "cpu", "--storage", str(tmp_path / "v.db"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    trials = re.match(r"(\d+) trials \((\d+) pruned\)", out.stdout)
    assert trials and trials[1] == "4" and int(trials[2]) >= 1  # ASHA decided its rung at 1 epoch
    assert "best validation loss" in out.stdout and "test accuracy" in out.stdout
