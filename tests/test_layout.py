"""The layout the contributors' guide promises: chapters rerun alone, notebooks read as documents,
verdicts live in tested library code, `list` is instant."""
import ast
import subprocess
import sys

import pytest

from conftest import REPO

LIB = REPO / "lib" / "countingargs"
NOTEBOOKS = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.md"))
MAX_CELL_LINES = 30


def test_list_imports_no_torch():
    code = ("import sys; from countingargs.build.cli import main; main(['list', '--root', %r]); "
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')" % str(REPO))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("NO-TORCH"), out.stdout


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_code_cells_are_short(name):
    """Every code cell, the parameters cell included, counted as the text file shows it: every
    line between its fences (cell options such as `:tags:` too)."""
    lines = (REPO / "notebooks" / f"{name}.md").read_text().splitlines()
    long, start = [], None
    for i, line in enumerate(lines, 1):
        if start is None and line.startswith("```{code-cell"):
            start = i
        elif start is not None and line.startswith("```"):
            if i - start - 1 > MAX_CELL_LINES:
                long.append((start, i - start - 1))
            start = None
    assert not long, f"{name}: code cells longer than {MAX_CELL_LINES} lines (line, lines): {long}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_each_chapter_has_experiment_analysis_plots_and_tests(name):
    pkg = LIB / "chapters" / f"ch{name}"
    for part in ("experiment.py", "analysis.py", "plots.py"):
        assert (pkg / part).exists(), f"{name}: missing chapters/ch{name}/{part}"
    tree = ast.parse((pkg / "analysis.py").read_text())
    assert any(isinstance(n, ast.FunctionDef) and n.name == "analyse" for n in tree.body), \
        f"{name}: analysis.py must define analyse(tables, params)"
    assert (REPO / "tests" / f"test_ch{name}.py").exists(), f"{name}: missing tests/test_ch{name}.py"


def test_no_chapter_imports_another_chapter():
    for pkg in sorted((LIB / "chapters").glob("ch*")):
        for f in pkg.glob("*.py"):
            for node in ast.walk(ast.parse(f.read_text())):
                mods = []
                if isinstance(node, ast.ImportFrom):
                    mods = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
                elif isinstance(node, ast.Import):
                    mods = [a.name for a in node.names]
                for m in mods:
                    if ".chapters.ch" in f".{m}" and pkg.name not in m:
                        raise AssertionError(f"{f.relative_to(LIB)} imports another chapter: {m}")
