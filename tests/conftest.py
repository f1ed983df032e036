"""Shared test helpers."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load_script(path: Path):
    """Import a recipe or benchmark script as a fresh module (its ``main`` reads the module's settings)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def load_script():
    return _load_script


_TKWARGS = [pytest.param({"dtype": torch.float64, "device": torch.device("cpu")}, id="cpu-float64")]
if torch.cuda.is_available():
    _TKWARGS.append(pytest.param({"dtype": torch.float64, "device": torch.device("cuda")}, id="cuda-float64"))


@pytest.fixture(params=_TKWARGS)
def tkwargs(request):
    """``{"dtype": ..., "device": ...}`` of a modelling test: float64 on the CPU, and on CUDA when there is one."""
    return request.param
