"""Shared test helpers."""

import pytest
import support
import torch


@pytest.fixture
def load_script():
    return support.load_script


_TKWARGS = [pytest.param({"dtype": torch.float64, "device": torch.device("cpu")}, id="cpu-float64")]
if torch.cuda.is_available():
    _TKWARGS.append(pytest.param({"dtype": torch.float64, "device": torch.device("cuda")}, id="cuda-float64"))


@pytest.fixture(params=_TKWARGS)
def tkwargs(request):
    """``{"dtype": ..., "device": ...}`` of a modelling test: float64 on the CPU, and on CUDA when there is one."""
    return request.param
