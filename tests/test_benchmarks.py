"""Benchmarks' --quick modes run and write their tables (the figures themselves come from full runs)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_overhead_quick(tmp_path):
    out = tmp_path / "overhead.md"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "overhead.py"), "--quick", "--out", str(out)],
                   check=True, capture_output=True, env=env, timeout=240)
    text = out.read_text()
    assert "| per trial | memory |" in text and "| per report | SQLite |" in text
