"""The public surface: __all__ is sorted and honest, nothing happens at import, optional deps stay lazy."""

import ast
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


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (``torchhpo.executors`` is its package's ``__init__``)."""
    root = Path(th.__file__).resolve().parent
    out = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def test_no_import_cycles():
    """Every import in the package (module level, inside functions, under TYPE_CHECKING) as a graph: no cycle."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return [*path, start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
        return None

    cycles = [c for m in sorted(graph) if (c := cycle_from(m)) is not None]
    assert not cycles, f"import cycles: {cycles[:3]}"


def test_no_module_is_over_600_lines():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > 600}
    assert not long, f"split these modules: {long}"


def test_the_study_stays_a_thin_handle():
    """``Study`` checks and documents; its driver (torchhpo/driver.py) and the loop (torchhpo/loop.py) do the work."""
    import inspect

    assert len(inspect.getsourcelines(th.Study)[0]) < 250
