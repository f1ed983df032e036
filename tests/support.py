"""What several test files share (importable as ``support``: pyproject.toml puts tests/ on the path)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script(path: Path):
    """Import a recipe or benchmark script as a fresh module (its ``main`` reads the module's settings)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run_script(*args: str) -> str:
    """Run ``python *args`` from the checkout (warnings off) and return its output; fail on a non-zero exit."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-W", "ignore", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout
