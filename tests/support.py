"""What several test files share (importable as ``support``: pyproject.toml puts tests/ on the path)."""

import importlib.util
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
