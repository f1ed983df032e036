import json
import os
import subprocess
import sys

import pytest

import torchhpo as th
from torchhpo.cli import main

TRAIN = '''
import os


def train(config, trial):
    trial.set_attr("pid", os.getpid())
    for epoch in trial.epochs():
        score = 1.0 - (config["x"] - 0.3) ** 2 - 0.1 / (epoch + 1)
        trial.report(score)
    return score
'''


def test_run_then_show_then_resume(tmp_path, capsys):
    db = tmp_path / "d.db"
    assert main(["run", "--trials", "2", "--max-epochs", "2", "--storage", str(db), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "best trial #" in out and "validation loss" in out and "(lower is better)" in out and "lr" in out
    assert main(["show", str(db)]) == 0
    out = capsys.readouterr().out
    assert "(minimize: lower is better), 2 trials: 2 completed" in out and "| # | status | value | epochs |" in out
    assert main(["run", "--trials", "1", "--max-epochs", "2", "--storage", str(db), "--no-progress"]) == 0
    assert "resuming" in capsys.readouterr().out


@pytest.fixture
def script(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # run puts the script's folder first; undo it afterwards
    (tmp_path / "train.py").write_text(TRAIN)
    space = th.Space({"x": th.Float(0.0, 1.0), "act": th.Choice(["relu", "tanh"])})
    (tmp_path / "space.json").write_text(json.dumps(space.to_dict()))
    yield tmp_path
    sys.modules.pop("train", None)


def test_run_a_script_on_two_cpu_workers_then_list_show_plot(script, capsys):
    pytest.importorskip("matplotlib")
    common = ["--space", "space.json", "--storage", "runs/s.db", "--max-epochs", "3", "--no-progress"]
    assert main(["run", "train.py:train", *common, "--study", "up", "--mode", "max", "--trials", "4",
                 "--searcher", "tpe", "--scheduler", "asha", "--devices", "cpu,cpu"]) == 0
    out = capsys.readouterr().out
    assert "best trial #" in out and "(higher is better)" in out and "see them with: torchhpo show runs/s.db --study up" in out
    study = th.Study.load("runs/s.db", name="up", readonly=True)
    pids = {t.user_attrs["pid"] for t in study.trials}
    assert len(study.trials) == 4 and len(pids) == 2 and os.getpid() not in pids  # two worker processes ran them
    assert study.mode == "max"
    assert main(["run", "train.py:train", *common, "--trials", "2"]) == 0  # a second study, named after fn, min
    capsys.readouterr()
    assert main(["list", "runs/s.db"]) == 0
    out = capsys.readouterr().out
    assert "| up | maximize | 4 |" in out and "| train | minimize | 2 | 2 |" in out and "| x, act |" in out
    assert main(["show", "runs/s.db"]) == 2 and "holds studies ['train', 'up']" in capsys.readouterr().err
    assert main(["show", "runs/s.db", "--study", "up"]) == 0
    out = capsys.readouterr().out
    assert "study 'up' (maximize: higher is better), 4 trials" in out and "| act | pid |" in out
    assert main(["plot", "runs/s.db", "--study", "up", "--out", "plots"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed and all(open(p, "rb").read(4) == b"\x89PNG" for p in printed)


def test_run_errors_name_the_fix(script, capsys):
    cases = [(["run", "train.py:train"], "--space is needed"),
             (["run", "train.py:nope", "--space", "space.json"], "has no function 'nope'; it defines ['train']"),
             (["run", "missing.py:train", "--space", "space.json"], "missing.py: no such script"),
             (["run", "train.py", "--space", "space.json"], "must be FILE.py:FUNCTION"),
             (["run", "--space", "space.json"], "--space and --mode go with a target"),
             (["show", "missing.db"], "no such study file"),
             (["list", "missing.db"], "no such study file")]
    for argv, message in cases:
        assert main(argv) == 2
        assert message in capsys.readouterr().err


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "torchhpo", "--help"], capture_output=True, text=True, check=True)
    assert all(cmd in out.stdout for cmd in ("run", "show", "list", "plot", "bench"))
