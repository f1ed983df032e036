"""The public surface: __all__ is sorted and honest, nothing happens at import, optional deps stay lazy."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import torchhpo as th


def test_all_is_sorted_and_every_name_exists():
    assert th.__all__ == sorted(th.__all__)
    for name in th.__all__:
        assert getattr(th, name) is not None, name
    public = {n for n in dir(th) if not n.startswith("_") and n[0].isupper()}
    assert public <= set(th.__all__), public - set(th.__all__)


def test_import_is_quiet_and_lazy():
    code = ("import logging, sys, torchhpo; "
            "heavy = [m for m in ('ray', 'optuna', 'matplotlib', 'pandas', 'lightning') if m in sys.modules]; "
            "assert not heavy, heavy; assert not logging.getLogger().handlers; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok" and out.stderr == ""


def test_the_tree_is_lint_clean():
    """ruff (the dev extra) over the package, tests, benchmarks and recipes, as pyproject.toml configures it."""
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "."], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_package_type_checks():
    """mypy (the dev extra) over torchhpo/, as pyproject.toml configures it."""
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install -e '.[dev]')")
    out = subprocess.run([sys.executable, "-m", "mypy"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stdout + out.stderr
