"""Shared test helpers."""

import os

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


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray (2 CPUs, no GPU) for every Ray test, stopped at the end; its workers import this checkout's
    torchhpo and the tests' shared helpers."""
    ray = pytest.importorskip("ray")
    path = os.pathsep.join([str(support.ROOT), str(support.ROOT / "tests")])
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, logging_level="warning",
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()
