"""Shared header of the benchmark scripts: versions, machine, time (recorded with every result)."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def header(title: str, argv: list[str]) -> str:
    import botorch
    import gpytorch
    import torch

    try:
        import optuna

        optuna_version = optuna.__version__
    except ImportError:
        optuna_version = "not installed"
    return (f"# {title}\n\n"
            f"- command: `python {' '.join(argv)}`\n"
            f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
            f"machine: {platform.machine()}, "
            f"{os.cpu_count()} CPUs (shared), {platform.platform()}; torch threads: {torch.get_num_threads()}\n"
            f"- versions: python {sys.version.split()[0]}, torch {torch.__version__}, botorch {botorch.__version__}, "
            f"gpytorch {gpytorch.__version__}, optuna {optuna_version}\n")


def save(name: str, text: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(text)
    print(text)
    return path
