"""The reader's pages built by jupyter-book from a small fake book with synthetic ledger rows
(tests/fakebook.py), in a real browser: the ledger, its grouping, the coverage map, figure
provenance, the figure index, the status page and the PDF. The real chapters do not write
ledger rows yet; this is where every row-level check runs until they do."""
from __future__ import annotations

import re
import subprocess

import pytest

import bookcheck
from conftest import CHROMIUM, jupyter_book
from countingargs.build.pages import PDF_NAME
from fakebook import ledger_rows, make_fake_book

pytestmark = pytest.mark.slow
NEW_COMMIT = "fedcba9876543210"


def _build(root):
    proc = subprocess.run([jupyter_book(), "build", str(root), "-W", "-n", "--keep-going"],
                          capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    assert "WARNING" not in log, [ln for ln in log.splitlines() if "WARNING" in ln][:10]


@pytest.fixture(scope="module")
def fake_html(tmp_path_factory):
    """The fake book built twice: once in full (with its PDF), then again after its first
    chapter's results changed (a new commit) while its page did not (an incremental build, as
    after `rebuild` of one chapter). Returns the root, the HTML folder and the first chapter's
    page after each build."""
    import json
    from pathlib import Path

    root = make_fake_book(tmp_path_factory.mktemp("fake") / "book")
    _build(root)
    html = root / "_build" / "html"
    if Path(CHROMIUM).exists():
        assert (html / PDF_NAME).exists(), "chromium is installed but no PDF was printed"
    page = html / "book" / "generated" / "01_alpha.html"
    before = page.read_text()
    prov = root / "results" / "quick" / "01_alpha" / "provenance.json"
    prov.write_text(json.dumps({**json.loads(prov.read_text()), "commit": NEW_COMMIT}))
    _build(root)
    return root, html, (before, page.read_text())


@pytest.fixture(scope="module")
def fake_served(fake_html):
    from countingargs.build.pdf import serve

    root, html, _ = fake_html
    with serve(html) as base:
        yield base, html, root


def test_ledger_rows_in_the_browser(fake_served, browser):
    base, _, _ = fake_served
    v = bookcheck.Visit(browser, f"{base}/book/ledger.html")
    rows = bookcheck.ledger_rows(v.page)
    assert [r["_id"] for r in rows] == [f"ledger-{r['id']}" for r in ledger_rows()]
    assert bookcheck.check_ledger_rows(rows) == []
    first = rows[0]
    assert "0.0123 [0.0046, 0.0201] nats" in first["Effect [95% interval]"]
    assert "Distilled students reach lower held-out loss | *not bold*." in first["Claim"]
    assert "Turner" in first["Who said it"] and "{effectively}" in first["Who said it"]
    assert "Figure 1" in first["Figure"]
    body = v.page.inner_text("main")
    assert "Not yet in the ledger" in body and "Beta chapter" in body and "Gamma chapter" in body
    # grouping by person, verdict and side regroups the same rows
    assert bookcheck.group_labels(v.page, "who") == ["Pope", "Turner"]
    assert bookcheck.group_labels(v.page, "verdict") == ["supports", "contradicts", "mixed"]
    assert set(bookcheck.group_labels(v.page, "favours")) == {
        "against the counting argument", "for the counting argument", "neither side"}
    assert len(bookcheck.ledger_rows(v.page)) == 3
    # the figure link goes to the figure
    v.page.click("table.ca-ledger-table a:has-text('Figure 1')")
    v.page.wait_for_load_state()
    assert v.page.url.endswith("book/generated/01_alpha.html#fig-alpha-fig")
    assert v.problems() == []
    v.close()


def test_every_page_is_clean_and_every_provenance_link_resolves(fake_served, browser):
    base, html, _ = fake_served
    pages = sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html")
                   if p.relative_to(html).parts[0] not in ("_static", "mathjax", "_sources", "_images"))
    assert "book/coverage.html" in pages and "book/status.html" in pages
    problems, figures = [], 0
    for rel in pages:
        v = bookcheck.Visit(browser, f"{base}/{rel}")
        problems += [f"{rel}: {p}" for p in v.problems()]
        n, probs = bookcheck.provenance_links(v.page, base)
        figures += n
        problems += [f"{rel}: {p}" for p in probs]
        if bookcheck.GLUE_LEFT.search(v.page.inner_text("body")):
            problems.append(f"{rel}: unresolved glue")
        v.close()
    assert figures == 1
    assert problems == []


def test_chapter_page_offers_the_notebook_and_the_rerun_box(fake_served, browser):
    base, _, _ = fake_served
    v = bookcheck.Visit(browser, f"{base}/book/generated/01_alpha.html")
    href = v.page.get_attribute("a:has-text('the executed notebook')", "href")
    r = v.page.request.get(v.page.url.rsplit("/", 1)[0] + "/" + href)
    assert r.status == 200 and b'"nbformat"' in r.body()
    v.page.click("summary:has-text('Rerun this chapter')")
    box = v.page.inner_text(".ca-rerun")
    assert "python -m countingargs rebuild --profile quick --only 01_alpha --force" in box
    cells = v.page.eval_on_selector_all("table.ca-params tbody tr",
                                        "rs => rs.map(r => [...r.cells].map(c => c.innerText.trim()))")
    assert cells == [["seeds", "2", "5", "20"], ["width", "8", "8", "8"]]
    cite = v.page.inner_text("figure .ca-provenance")
    assert "drawn by" in cite and "countingargs.chapters.ch01_alpha.plots.loss" in cite
    assert "metrics.csv" in cite and "quick profile" in cite and f"commit {NEW_COMMIT[:12]}" in cite
    v.close()


def test_coverage_figure_index_and_status_pages(fake_served, browser):
    base, _, _ = fake_served
    v = bookcheck.Visit(browser, f"{base}/book/coverage.html")
    text = v.page.inner_text("main")
    assert "Quintin Pope" in text and "not tested yet" in text and "a ninth chapter" in text
    assert "Something checkable about $x$ and *emphasis*" in text
    v.page.click("a:has-text('01-alpha-heldout')")
    v.page.wait_for_load_state()
    assert v.page.url.endswith("book/ledger.html#ledger-01-alpha-heldout")
    v.close()
    v = bookcheck.Visit(browser, f"{base}/book/figure-index.html")
    rows = v.page.eval_on_selector_all("table.ca-figure-index tbody tr", "els => els.map(e => e.innerText)")
    assert len(rows) == 1 and "Figure 1" in rows[0] and "alpha-fig" in rows[0] and "metrics.csv" in rows[0]
    v.close()
    v = bookcheck.Visit(browser, f"{base}/book/status.html")
    text = v.page.inner_text("table.ca-status-table")
    assert text.count("current") == 2 and "not run" in text and "uncommitted changes" in text
    v.close()


def test_cite_page_shows_bibtex_from_citation_cff(fake_served, browser):
    base, _, root = fake_served
    import yaml

    cff = yaml.safe_load((root / "CITATION.cff").read_text())
    v = bookcheck.Visit(browser, f"{base}/book/cite.html")
    text = v.page.inner_text("main")
    assert "@misc{countingargs2026," in text and cff["preferred-citation"]["title"] in text
    assert f"version = {{{cff['version']}}}" in text
    for name in ("counting-arguments-counted.bib", "CITATION.cff"):
        href = v.page.get_attribute(f"a:has-text('{name}')", "href")
        assert v.page.request.get(v.page.url.rsplit("/", 1)[0] + "/" + href).status == 200
    v.close()


def test_the_pdf(fake_served, browser, tmp_path):
    base, html, _ = fake_served
    path = bookcheck.fetch_pdf(browser, base, tmp_path)
    assert bookcheck.check_pdf(path, ["1"], ["A line going up."], min_pages=5,
                               figure_ids=["fig-alpha-fig"]) == []


def test_an_unchanged_chapter_shows_the_provenance_of_new_results(fake_html):
    """Sphinx rewrites only pages whose sources changed; new results behind an unchanged chapter
    must still reach its provenance line on the next (incremental) build."""
    before, after = (re.sub(r"<[^>]+>", "", t) for t in fake_html[2])
    assert "commit abc123def456" in before and f"commit {NEW_COMMIT[:12]}" in after
    assert "abc123def456" not in after
