"""The whole book, as a reader gets it: every notebook in the quick profile (twice, for
determinism), the strict render, internal links, and a real browser on every page."""
from __future__ import annotations

import csv
import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import jupytext
import nbformat
import pytest

from conftest import REPO, copy_book
from countingargs.build import profiles as bprofiles
from countingargs.build import runner as rebuild

pytestmark = pytest.mark.slow
GLUE_RE = re.compile(r"\{glue:text\}`(?:(?P<doc>[^`:]+\.ipynb)::)?(?P<key>[A-Za-z0-9_]+):(?P<fmt>[^`]+)`")


def notebooks():
    return sorted(p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.md"))


def test_every_notebook_has_an_entry_in_every_profile():
    profiles = bprofiles.load_profiles(REPO)
    for prof in bprofiles.PROFILES:
        assert set(profiles[prof]["notebooks"]) == set(notebooks()), prof
        rebuild.plan(REPO, prof)  # every override is a declared parameter of the right type


def test_source_notebooks_are_committed_without_outputs():
    for name in notebooks():
        nb = jupytext.read(REPO / "notebooks" / f"{name}.md", fmt="md:myst")
        for c in nb.cells:
            if c.cell_type == "code":
                assert not c.outputs and c.execution_count is None, name
        assert sum(c.cell_type == "markdown" and c.source.lstrip().startswith("# ") for c in nb.cells) == 1, \
            f"{name}: exactly one top-level title"


def test_quick_profile_runs_every_notebook(quick_book):
    for name in notebooks():
        res = quick_book / "results" / "quick" / name
        prov = json.loads((res / "provenance.json").read_text())
        assert prov["profile"] == "quick" and prov["tables"], name
        assert (quick_book / "book" / "generated" / f"{name}.ipynb").exists()
        glue = json.loads((res / "glue.json").read_text())
        if (res / "ledger.csv").exists():   # one verdict per ledger row, no combined label
            with open(res / "ledger.csv", newline="") as fh:
                verdicts = {row["verdict"] for row in csv.DictReader(fh)}
            assert verdicts and verdicts <= {"supports", "contradicts", "mixed"}, f"{name}: {verdicts}"
        else:
            assert glue.get("verdict") in {"supports", "contradicts", "mixed"}, f"{name}: verdict {glue.get('verdict')}"
        # a reader sees results as text and figures, never the repr of a library object
        executed = (quick_book / "book" / "generated" / f"{name}.ipynb").read_text()
        assert "Findings(glue=" not in executed, f"{name}: a cell shows a Findings object (end it with ';')"


def test_quick_profile_is_deterministic(quick_book, tmp_path_factory):
    root = copy_book(tmp_path_factory.mktemp("quick-b"))
    outcomes = rebuild.rebuild(root, "quick", log=lambda m: print(m, file=sys.stderr))
    assert all(o.status == "ran" for o in outcomes), [o.message for o in outcomes]
    for name in notebooks():
        a, b = quick_book / "results" / "quick" / name, root / "results" / "quick" / name
        files = sorted(p.name for p in a.iterdir() if p.suffix == ".csv" or p.name == "glue.json")
        assert files == sorted(p.name for p in b.iterdir() if p.suffix == ".csv" or p.name == "glue.json")
        for f in files:
            assert (a / f).read_bytes() == (b / f).read_bytes(), f"{name}/{f} differs between two runs"


def test_book_builds_with_zero_warnings(built_html):
    rc, log, html = built_html
    assert rc == 0, log[-5000:]
    assert "WARNING" not in log, [ln for ln in log.splitlines() if "WARNING" in ln][:10]
    assert (html / "index.html").exists()


def _norm(text: str) -> str:
    """Undo Sphinx's smart quotes and dashes and collapse whitespace, for comparing text."""
    for a, b in (("\u2019", "'"), ("\u2018", "'"), ("\u201c", '"'), ("\u201d", '"'),
                 ("\u2013", "--"), ("\u2014", "---"), ("\u2026", "...")):
        text = text.replace(a, b)
    return " ".join(text.split())


def _pages(html: Path) -> list[Path]:
    """The book's own pages (not the theme's templates under _static/ or vendored MathJax)."""
    skip = ("_static", "mathjax", "_sources", "_images")
    return sorted(p for p in html.rglob("*.html") if p.relative_to(html).parts[0] not in skip)


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        for attr in ("href", "src"):
            if a.get(attr) and tag in ("a", "img", "link", "script"):
                self.links.append(a[attr])


def _parse(path: Path) -> _Links:
    p = _Links()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def test_every_internal_link_resolves(built_html):
    rc, log, html = built_html
    assert rc == 0, log[-3000:]
    broken, checked = [], 0
    for page in _pages(html):
        for link in _parse(page).links:
            u = urlparse(link)
            if u.scheme or link.startswith(("mailto:", "//", "javascript:")):
                continue
            target_path, frag = urldefrag(link)
            target_path = target_path.split("?", 1)[0]
            target = (page.parent / target_path).resolve() if target_path else page
            checked += 1
            if not target.exists():
                broken.append(f"{page.relative_to(html)} -> {link}")
            elif frag and target.suffix == ".html" and frag not in _parse(target).ids:
                broken.append(f"{page.relative_to(html)} -> {link} (no anchor)")
    assert checked > 50
    assert not broken, broken[:20]


def _expected_glue(html_root: Path, book_root: Path):
    """(page, text) pairs: every {glue:text} in the book's sources, formatted from glue.json."""
    out = []
    sources = [(p, p.read_text()) for p in (book_root / "book").glob("*.md")]
    for nbp in (book_root / "book" / "generated").glob("*.ipynb"):
        nb = nbformat.read(nbp, as_version=4)
        sources.append((nbp, "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")))
    for path, text in sources:
        page = html_root / path.relative_to(book_root).with_suffix(".html")
        for m in GLUE_RE.finditer(text):
            nb_name = Path(m["doc"]).stem if m["doc"] else path.stem
            res = book_root / "results" / "quick" / nb_name
            glue = json.loads((res / "glue.json").read_text())
            if (res / "volatile.json").exists():
                glue.update(json.loads((res / "volatile.json").read_text()))
            assert m["key"] in glue, f"{path.name}: glue key {m['key']} missing from {nb_name}/glue.json"
            out.append((page, format(glue[m["key"]], m["fmt"])))
    return out


def test_browser_every_page(served_html, browser, quick_book):
    base, html = served_html
    pages = [p.relative_to(html).as_posix() for p in _pages(html)]
    assert "book/ledger.html" in pages and len(pages) >= 8
    expected = {}
    for page, text in _expected_glue(html, quick_book):
        expected.setdefault(page.relative_to(html).as_posix(), []).append(text)
    assert expected, "no glued numbers found in the book"
    problems, math_pages = [], 0
    for rel in pages:
        page = browser.new_page()
        errors, outside, failed = [], [], []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.on("request", lambda r: outside.append(r.url)
                if urlparse(r.url).hostname not in ("127.0.0.1", None) and not r.url.startswith("data:") else None)
        page.goto(f"{base}/{rel}", wait_until="load")
        page.wait_for_timeout(300)
        broken_imgs = page.eval_on_selector_all(
            "img", "els => els.filter(e => !(e.complete && e.naturalWidth > 0)).map(e => e.src)")
        if page.locator("mjx-container").count() or page.locator(".math").count():
            page.wait_for_selector("mjx-container", timeout=15000)
            math_pages += 1
        body = _norm(page.inner_text("main") if page.locator("main").count() else page.inner_text("body"))
        for text in expected.get(rel, []):
            if _norm(text) not in body:
                problems.append(f"{rel}: glued value {text!r} not on the page")
        for what, items in (("console error", errors), ("request outside 127.0.0.1", outside),
                            ("failed request", failed), ("broken image", broken_imgs)):
            problems += [f"{rel}: {what}: {i}" for i in items]
        page.close()
    assert math_pages >= 1, "no page rendered math"
    assert not problems, problems[:20]


def test_reader_pages_in_the_browser(served_html, browser, quick_book):
    """The ledger (each row with a finding and an effect size; every chapter either in it or
    listed as not yet in it), the status page, and every figure's provenance links."""
    import bookcheck

    base, html = served_html
    v = bookcheck.Visit(browser, f"{base}/book/ledger.html")
    rows = bookcheck.ledger_rows(v.page)
    assert bookcheck.check_ledger_rows(rows) == []
    body = v.page.inner_text("main")
    for name in notebooks():
        ledger = quick_book / "results" / "quick" / name / "ledger.csv"
        if ledger.exists():
            ids = [line.split(",", 1)[0] for line in ledger.read_text().splitlines()[1:]]
            assert all(f"ledger-{i}" in [r["_id"] for r in rows] for i in ids), name
        else:
            assert f"({name})" in body.replace("\\_", "_"), f"{name}: neither in the ledger nor listed as not yet in it"
    assert v.problems() == []
    v.close()
    v = bookcheck.Visit(browser, f"{base}/book/status.html")
    status = v.page.inner_text("table.ca-status-table")
    assert status.count("current") == len(notebooks()) and "stale" not in status, status
    v.close()
    problems, figures = [], 0
    for name in notebooks():
        v = bookcheck.Visit(browser, f"{base}/book/generated/{name}.html")
        n, probs = bookcheck.provenance_links(v.page, base)
        figures += n
        problems += [f"{name}: {p}" for p in probs]
        v.close()
    placed = json.loads((quick_book / "book" / "generated" / "pages" / "book.json").read_text())["figures"]
    assert figures == len(placed) > 0
    assert problems == [], problems[:10]


def test_the_pdf_of_the_book(served_html, browser, quick_book, tmp_path):
    """Linked from the HTML, every figure in it (its number and its alt text), no glue left."""
    import bookcheck

    base, html = served_html
    v = bookcheck.Visit(browser, f"{base}/book/figure-index.html")
    numbers = [t.removeprefix("Figure ") for t in v.page.eval_on_selector_all(
        "table.ca-figure-index tbody tr td:first-child", "els => els.map(e => e.innerText.trim())")]
    v.close()
    figs = json.loads((quick_book / "book" / "generated" / "pages" / "book.json").read_text())["figures"]
    assert len(numbers) == len(figs) > 0
    path = bookcheck.fetch_pdf(browser, base, tmp_path)
    assert bookcheck.check_pdf(path, numbers, [f["alt"] for f in figs.values() if f["alt"]],
                               min_pages=20, figure_ids=[f["name"] for f in figs.values()]) == []


def test_figure_files_carry_their_provenance(quick_book):
    from countingargs.figures import read_metadata

    figdir = quick_book / "book" / "figures"
    files = sorted(figdir.glob("*.png")) + sorted(figdir.glob("*.pdf"))
    assert files
    for f in files:
        meta = read_metadata(f)
        blob = json.loads(meta["Provenance" if f.suffix == ".png" else "Keywords"])
        assert blob["figure"] == f.stem and blob["profile"] == "quick" and blob["notebook"], f.name
