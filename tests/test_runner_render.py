"""What the rendered pages show: every render that reports success has zero warnings (it builds
fresh, so a second render cannot hide a broken reference); no path of the build machine in any
page; one parameters cell per chapter."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from conftest import REPO
from runner_books import cli

CONFIG = """title: tiny
execute:
  execute_notebooks: "off"
only_build_toc_files: true
exclude_patterns: ["_build", "notebooks", "results", "failures", ".rebuild-tmp"]
"""
TOC = "format: jb-book\nroot: intro\nchapters:\n  - file: page\n"


def _tiny_book(root: Path) -> Path:
    (root / "notebooks").mkdir(parents=True)
    (root / "book" / "generated").mkdir(parents=True)
    (root / "_config.yml").write_text(CONFIG)
    (root / "_toc.yml").write_text(TOC)
    (root / "intro.md").write_text("# Intro\n\n(intro-label)=\n## A section\n\nText.\n")
    (root / "page.md").write_text("# Page\n\nSee {ref}`intro-label`.\n")
    return root


def test_render_twice_after_a_broken_reference_fails_twice(tmp_path):
    root = _tiny_book(tmp_path)
    (root / "page.md").write_text("# Page\n\nSee {ref}`no-such-label`.\n")
    for attempt in (1, 2):      # Sphinx's cache would let the second build pass without a warning
        proc = cli(root, "render")
        assert proc.returncode != 0, (attempt, proc.stdout[-3000:])
        assert "render: FAILED" in proc.stdout and "no-such-label" in proc.stdout, proc.stdout[-3000:]
    (root / "page.md").write_text("# Page\n\nSee {ref}`intro-label`.\n")
    ok = cli(root, "render")
    assert ok.returncode == 0 and "render: ok" in ok.stdout, ok.stdout[-3000:]
    assert "WARNING" not in ok.stdout
    assert (root / "_build" / "html" / "page.html").exists()


def _chapter_pages(html: Path) -> list[Path]:
    return sorted((html / "book" / "generated").glob("*.html"))


@pytest.mark.slow
def test_no_path_of_the_build_machine_in_any_page(built_html, quick_book):
    rc, log, html = built_html
    assert rc == 0, log[-3000:]
    machine = {str(quick_book), str(quick_book.resolve()), str(REPO), sys.prefix, ".rebuild-tmp",
               str(Path.home()) + "/"}
    found = []
    pages = [p for p in html.rglob("*.html") if "_static" not in p.parts and "mathjax" not in p.parts]
    assert len(pages) >= 8
    for page in pages:
        text = page.read_text(encoding="utf-8")
        found += [f"{page.relative_to(html)}: {m}" for m in machine if m in text]
        found += [f"{page.relative_to(html)}: {m}" for m in re.findall(r"PosixPath\('/[^']*'\)", text)]
    assert not found, found[:10]


@pytest.mark.slow
def test_each_chapter_shows_one_parameters_cell_with_the_values_used(built_html, quick_book):
    rc, log, html = built_html
    assert rc == 0, log[-3000:]
    pages = _chapter_pages(html)
    assert len(pages) == len(list((REPO / "notebooks").glob("[0-9][0-9]_*.md")))
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert text.count("tag_parameters") == 1, page.name
        assert "tag_injected-parameters" not in text, page.name
        assert f"results/quick/{page.stem}" in text, page.name
