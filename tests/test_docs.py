"""Docs that run: every ```python block of README.md and docs/*.md, a page's blocks in order in one namespace, as a
script run with no arguments from an empty folder; ```python no-run blocks are compiled only, other fences are
not Python. A new page is picked up by itself. And every recipe answers ``--help``."""

import re
import sys
import textwrap
import traceback
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from support import ROOT, run_script

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RECIPES = sorted((ROOT / "recipes").glob("*.py"))
FENCE = re.compile(r"^(\s*)```(.*)$")
PAGE_SECONDS = 90  # a page's blocks together: each should take a few seconds, this catches a runaway page


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence
    code: str
    run: bool  # False for ```python no-run

    def compiled(self):
        """The block's code object, its line numbers those of the page (tracebacks point into the .md file)."""
        return compile("\n" * self.line + self.code, str(self.page), "exec")


def python_blocks(page: Path) -> list[Block]:
    """The page's ```python blocks, in order; an unclosed fence is an error."""
    blocks, opened, lines = [], None, page.read_text().splitlines()
    for i, text in enumerate(lines, start=1):
        fence = FENCE.match(text)
        if fence is None:
            continue
        if opened is None:
            opened = (i, fence.group(2).split())
        elif not fence.group(2).strip():
            start, info = opened
            if info[:1] == ["python"]:
                blocks.append(Block(page, start, textwrap.dedent("\n".join(lines[start:i - 1])), "no-run" not in info))
            opened = None
    assert opened is None, f"{page.name}: the fence at line {opened[0]} is never closed"
    return blocks


@pytest.fixture
def as_a_script(tmp_path, monkeypatch):
    """An empty working folder, no command-line arguments, one torch thread, no plot windows."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["docs"])
    monkeypatch.setenv("MPLBACKEND", "Agg")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.timeout(PAGE_SECONDS)
@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_runs(page, as_a_script, monkeypatch):
    script = types.ModuleType("__main__")  # a script's own module: what it defines pickles, guarded blocks run
    monkeypatch.setitem(sys.modules, "__main__", script)
    namespace = vars(script)
    for block in python_blocks(page):
        failed = None
        try:
            code = block.compiled()
            if block.run:
                exec(code, namespace)
        except Exception as e:
            failed = f"{page.name}, block at line {block.line}: {type(e).__name__}: {e}\n{traceback.format_exc()}"
        if failed is not None:
            pytest.fail(failed, pytrace=False)


def test_blocks_are_found_and_no_run_ones_compiled(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n```python\nx = 1\n```\n```bash\nexit 1\n```\n  ```python no-run\n  y = (\n  ```\n")
    first, second = python_blocks(page)
    assert (first.line, first.code, first.run, second.line, second.run) == (2, "x = 1", True, 8, False)
    with pytest.raises(SyntaxError) as raised:
        second.compiled()
    assert (raised.value.filename, raised.value.lineno) == (str(page), 9)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_help(recipe):
    assert run_script(str(recipe.relative_to(ROOT)), "--help").startswith("usage: ")
