"""Benchmark scripts: their --quick modes run and write their tables (the figures themselves come from full runs),
the peers they compare against work, and every link and cited file in README.md and docs/ exists."""

import re
from pathlib import Path

import pytest
from support import ROOT, run_script

from torchhpo.bench import PROBLEMS, compare

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.fixture
def peers(load_script):
    return load_script(ROOT / "benchmarks" / "peers.py")


def test_overhead_quick(tmp_path):
    out = tmp_path / "overhead.md"
    run_script(str(ROOT / "benchmarks" / "overhead.py"), "--quick", "--budget", "5", "--out", str(out))
    text = out.read_text()
    assert "| per trial | memory |" in text and "| per report | SQLite |" in text


def test_bbo_quick():
    assert "| gp-logei |" in run_script("benchmarks/bbo.py", "--quick")


def test_suggest_latency_quick():
    out = run_script("benchmarks/suggest_latency.py", "--quick")
    assert "| torchhpo GP (LogEI) | 20 | 2 |" in out and "a q = 2 batch ÷ one suggestion" in out


def test_gpu_quick():
    out = run_script("benchmarks/gpu.py", "--quick")
    assert ("no CUDA GPU" in out) != ("| cuda |" in out)


def test_peers_run_under_compare(peers):
    pytest.importorskip("optuna")
    res = compare({"optuna-tpe": peers.OptunaPeer("tpe"), "loop": peers.BoTorchLoop(n_initial=3)},
                  problems=["mixed"], budget=4, seeds=[0])
    assert all(len(r.values) == len(r.seconds) == 4 and min(r.values) >= PROBLEMS["mixed"].optimum
               for r in res.runs.values())
    assert res.runs[("loop", "mixed", 0)].seconds[3] > 0.0  # the one model-based suggestion is timed
    with pytest.raises(ValueError, match="sampler"):
        peers.OptunaPeer("cmaes")


def test_make_curves_tabulates_real_training(load_script):
    make_curves = load_script(ROOT / "benchmarks" / "make_curves.py")
    space = make_curves.TASKS["digits_mlp"].space()
    curves = make_curves.tabulate(space.sobol(2, seed=0), 2, task="digits_mlp")
    assert curves.val_loss.shape == curves.seconds.shape == (2, 2) and curves.meta["task"] == "digits_mlp"
    with pytest.raises(ValueError, match="unknown"):
        make_curves.tabulate([], 1, task="resnet")


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _missing(page: Path) -> list[str]:
    """Markdown links to local files or their headings, and file paths cited in backticks
    (``benchmarks/results/x.md``), that do not resolve."""
    text = page.read_text()
    out = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file, _, anchor = target.partition("#")
        path = page.parent / file if file else page
        if not path.exists():
            out.append(target)
        elif anchor and path.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", path.read_text(), flags=re.MULTILINE)
            if anchor not in {_slug(h) for h in headings}:
                out.append(target)
    cited = r"`((?:benchmarks|recipes|docs|tests|torchhpo)/[\w./-]+\.(?:md|py|png|json))"
    return out + [t for t in re.findall(cited, text) if not (ROOT / t).exists()]


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_links_and_cited_files_exist(page):
    assert _missing(page) == [], f"{page.name} points to missing files or headings"


def test_readme_links_every_kept_benchmark_result():
    readme = (ROOT / "README.md").read_text()
    results = sorted(p.name for p in (ROOT / "benchmarks" / "results").glob("*.md")
                     if "quick" not in p.name)  # smoke runs' files, which git ignores
    assert results and [r for r in results if f"benchmarks/results/{r}" not in readme] == []
