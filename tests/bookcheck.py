"""What a reader must find in the rendered book, checked in a real browser: shared by the tests of
the fake book (tests/test_book_pages.py) and of the quick book (tests/test_book.py)."""
from __future__ import annotations

import re
from urllib.parse import urlparse

from countingargs.build import pdf as bpdf
from countingargs.build.pages import PDF_NAME

NUMBER = re.compile(r"\d")
GLUE_LEFT = re.compile(r"\{glue(?::\w+)?\}|glue:text|glue:figure")


class Visit:
    """A page opened in chromium, with its console errors and requests off 127.0.0.1."""

    def __init__(self, browser, url: str):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.failed: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("requestfailed", lambda r: self.failed.append(r.url))
        self.page.on("request", lambda r: self.outside.append(r.url)
                     if urlparse(r.url).hostname not in ("127.0.0.1", None)
                     and not r.url.startswith("data:") else None)
        self.page.goto(url, wait_until="load")
        self.page.wait_for_timeout(200)

    def problems(self) -> list[str]:
        return ([f"console error: {e}" for e in self.errors] + [f"off-host request: {u}" for u in self.outside]
                + [f"failed request: {u}" for u in self.failed])

    def close(self):
        self.page.close()


def ledger_rows(page) -> list[dict]:
    """The rows of the ledger table as a reader sees them (cell texts by column header)."""
    return page.evaluate("""() => {
        const t = document.querySelector('table.ca-ledger-table');
        if (!t) return [];
        const head = [...t.tHead.rows[0].cells].map(c => c.innerText.trim());
        return [...t.tBodies[0].rows].filter(r => r.querySelector('.ca-ledger-key')).map(r => {
            const o = {};
            [...r.cells].forEach((c, i) => o[head[i]] = c.innerText.trim());
            o._id = r.querySelector('[id^="ledger-"]') ? r.querySelector('[id^="ledger-"]').id : '';
            return o;
        });
    }""")


def check_ledger_rows(rows: list[dict]) -> list[str]:
    """Each row: a claim, who said it, a verdict, a plain-sentence finding and an effect size."""
    problems = []
    for r in rows:
        rid = r.get("_id", "?")
        if len(r.get("Claim", "")) < 10:
            problems.append(f"{rid}: no claim")
        if not r.get("Who said it"):
            problems.append(f"{rid}: no author")
        if not re.search(r"\b(supports|contradicts|mixed)\b", r.get("Verdict", "")):
            problems.append(f"{rid}: no verdict")
        finding = r.get("Finding", "")
        if len(finding.split()) < 4 or not finding.rstrip().endswith((".", "!", "?")):
            problems.append(f"{rid}: the finding is not a plain sentence: {finding!r}")
        effect = r.get("Effect [95% interval]", "")
        unmeasured = re.search(r"\bnot measured$", effect.strip()) and re.search(r"\bmixed\b", r.get("Verdict", ""))
        if not NUMBER.search(effect) and not unmeasured:
            problems.append(f"{rid}: no effect size")
    return problems


def group_labels(page, key: str) -> list[str]:
    """Click a grouping button of the ledger and return the group headers in order."""
    page.click(f".ca-ledger-controls button[data-key='{key}']")
    return page.eval_on_selector_all("tr.ca-group-row", "els => els.map(e => e.dataset.group)")


def provenance_links(page, base: str) -> tuple[int, list[str]]:
    """(figures checked, problems): every figure of the page has a provenance line whose links
    (PNG, PDF, CSV files, notebook) resolve to files the book serves."""
    figs = page.evaluate("""() => [...document.querySelectorAll('main figure')].map(f => ({
        id: f.id,
        prov: !!f.querySelector('.ca-provenance'),
        links: [...f.querySelectorAll('.ca-provenance a[href]')].map(a => a.href),
        cite: f.querySelector('.ca-cite') ? f.querySelector('.ca-cite').textContent : '',
    }))""")
    problems = []
    for f in figs:
        if not f["prov"]:
            problems.append(f"{f['id']}: no provenance line")
            continue
        kinds = {urlparse(u).path.rsplit(".", 1)[-1] for u in f["links"]}
        for k in ("png", "pdf", "csv", "ipynb"):
            if k not in kinds and not (k == "csv" and "the tables it read were not recorded" in page.inner_text(f"#{f['id']}")):
                problems.append(f"{f['id']}: no {k} link in its provenance line")
        if "@misc{" not in f["cite"] or "Figure " not in f["cite"]:
            problems.append(f"{f['id']}: no citation snippet with the figure number")
        for u in f["links"]:
            if not u.startswith(base):
                problems.append(f"{f['id']}: link off the book: {u}")
                continue
            r = page.request.get(u)
            if r.status != 200 or not r.body():
                problems.append(f"{f['id']}: {u} -> HTTP {r.status}")
    return len(figs), problems


def fetch_pdf(browser, base: str, folder) -> "Path":
    """The book's PDF as linked from the introduction, saved in ``folder``."""
    v = Visit(browser, f"{base}/book/intro.html")
    hrefs = v.page.eval_on_selector_all("a[href$='.pdf']", "els => els.map(e => e.href)")
    book = [h for h in hrefs if h.endswith("/" + PDF_NAME)]
    assert book, f"no link to the book's PDF on {v.page.url}"
    r = v.page.request.get(book[0])
    data = r.body() if r.status == 200 else b""
    v.close()
    assert data.startswith(b"%PDF-"), f"{book[0]} -> HTTP {r.status}, not a PDF"
    path = folder / PDF_NAME
    path.write_bytes(data)
    return path


def check_pdf(path, figure_numbers: list[str], alts: list[str], min_pages: int,
              figure_ids: list[str] = ()) -> list[str]:
    """The printed book: enough pages, every figure (its number, its alt text, and a link target
    the figure index points to), every internal link resolved, no glue."""
    info = bpdf.inspect_pdf(path)
    problems = list(info["problems"])
    missing = [f for f in figure_ids if f not in info["destinations"]]
    if missing:
        problems.append(f"figures that no link of the PDF reaches: {missing}")
    if info["pages"] < min_pages:
        problems.append(f"the PDF has {info['pages']} pages, expected at least {min_pages}")
    squeezed = re.sub(r"\s+", "", info["text"])
    for n in figure_numbers:
        if f"Figure{n}" not in squeezed:
            problems.append(f"Figure {n} is not in the PDF text")
    data = open(path, "rb").read()
    for alt in alts:
        if f"/Alt ({alt[:40]}".encode() not in data and alt[:40].encode() not in data:
            problems.append(f"figure with alt text {alt[:40]!r} is not in the PDF")
    if GLUE_LEFT.search(info["text"]):
        problems.append("unresolved glue in the PDF")
    if info["images"] < len(figure_numbers):
        problems.append(f"{info['images']} images in the PDF for {len(figure_numbers)} figures")
    return problems
