import subprocess
import sys

from torchhpo.cli import main


def test_run_then_show_then_resume(tmp_path, capsys):
    db = tmp_path / "d.db"
    assert main(["run", "--trials", "2", "--max-epochs", "2", "--storage", str(db), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "best trial #" in out and "validation loss" in out and "lr" in out
    assert main(["show", str(db)]) == 0
    out = capsys.readouterr().out
    assert "2 trials: 2 completed" in out and "| # | status | value | epochs |" in out
    assert main(["run", "--trials", "1", "--max-epochs", "2", "--storage", str(db), "--no-progress"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert main(["plot", str(db), "--out", str(tmp_path / "plots")]) == 0
    for name in ("history", "curves", "parallel"):
        png = tmp_path / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["show", str(tmp_path / "missing.db")]) == 2
    assert "torchhpo: error:" in capsys.readouterr().err


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "torchhpo", "--help"], capture_output=True, text=True, check=True)
    assert "run" in out.stdout and "show" in out.stdout
