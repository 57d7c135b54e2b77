"""The book as one PDF, built offline: the single-page HTML build printed by Debian's chromium.

:func:`build_pdf` runs ``jupyter-book build --builder singlehtml`` (the same strict settings as
the HTML book), serves the result on 127.0.0.1, opens it in chromium through playwright with
every request off this host refused, waits for the figures and MathJax, checks the page (every
figure loaded, no unresolved glue), prints it to A4 with a clickable outline, and checks the
PDF itself (:func:`inspect_pdf`: page count, the figures, no glue placeholder) before moving it
into place. A failure at any step raises :class:`~countingargs.build.RebuildError` and leaves
no PDF behind.

:func:`pdf_text` extracts the text of a PDF written by chromium (Skia): enough to check it,
with no PDF library.
"""
from __future__ import annotations

import contextlib
import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from urllib.parse import urlparse

from . import RebuildError

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
PRINT_PAGE = "book-print.html"
GLUE_LEFTOVER = re.compile(r"\{glue(?::\w+)?\}|glue:text|glue:figure")
FOOTER = ('<div style="font-size:7px;width:100%;text-align:center;color:#555">'
          '<span class="pageNumber"></span> / <span class="totalPages"></span></div>')


def _jupyter_book() -> str:
    exe = Path(sys.executable).with_name("jupyter-book")
    return str(exe) if exe.exists() else "jupyter-book"


@contextlib.contextmanager
def serve(folder: Path):
    """Serve ``folder`` on 127.0.0.1 (a free port) for as long as the block runs."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                          functools.partial(Quiet, directory=str(folder)))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_port}"
    finally:
        srv.shutdown()
        srv.server_close()


def singlehtml(root: Path, timeout: int = 900) -> Path:
    """Build the single-page HTML book; returns the page to print (placed at the output's root,
    where its relative links point)."""
    out = root / "_build" / "singlehtml"
    cmd = [_jupyter_book(), "build", str(root), "--builder", "singlehtml", "-W", "-n",
           "--keep-going", "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0 or "WARNING" in log:
        raise RebuildError("the single-page HTML build (for the PDF) failed:\n" + log[-4000:])
    index = (out / "index.html").read_text(encoding="utf-8")
    m = re.search(r'url=([^"\s]+)', index)
    page = out / (m.group(1) if m else "index.html")
    shutil.copyfile(page, out / PRINT_PAGE)
    return out / PRINT_PAGE


_CHECK_PAGE = """() => {
  const imgs = [...document.querySelectorAll('main img')];
  return {
    figures: document.querySelectorAll('main figure').length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')),
    text: document.querySelector('main').innerText,
  };
}"""

_UNLINK_LOCAL_FILES = """() => {
  // links to files served next to the book are dead in a PDF: keep their text, drop the link
  for (const a of document.querySelectorAll('a[href]')) {
    const h = a.getAttribute('href');
    if (!h.startsWith('#') && new URL(a.href).hostname === '127.0.0.1') a.removeAttribute('href');
  }
}"""


def print_page(page_path: Path, out: Path, timeout_ms: int = 120_000) -> dict:
    """Print one served HTML page to ``out`` with chromium; returns what was checked."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RebuildError(f"{CHROMIUM} is not installed (run `make chromium`), cannot print the PDF")
    problems, outside = [], []
    with serve(page_path.parent) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(timeout_ms)

            def route(r):
                if urlparse(r.request.url).hostname in ("127.0.0.1", None) or \
                        r.request.url.startswith("data:"):
                    return r.continue_()
                outside.append(r.request.url)
                return r.abort()

            page.route("**/*", route)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.goto(f"{base}/{page_path.name}", wait_until="load")
            page.wait_for_function("() => [...document.images].every(i => i.complete)")
            page.evaluate("""async () => {
                if (window.MathJax && MathJax.startup && MathJax.startup.promise)
                    await MathJax.startup.promise; }""")
            seen = page.evaluate(_CHECK_PAGE)
            page.evaluate(_UNLINK_LOCAL_FILES)
            page.emulate_media(media="print")
            page.pdf(path=str(out), format="A4", print_background=True, outline=True, tagged=True,
                     display_header_footer=True, header_template="<span></span>",
                     footer_template=FOOTER,
                     margin={"top": "14mm", "bottom": "16mm", "left": "14mm", "right": "14mm"})
        finally:
            browser.close()
    problems += [f"image did not load: {s}" for s in seen["broken"]]
    problems += [f"request off this host refused: {u}" for u in outside]
    m = GLUE_LEFTOVER.search(seen["text"])
    if m:
        problems.append(f"unresolved glue in the page: ...{seen['text'][max(0, m.start() - 60):m.end() + 20]}...")
    return {"figures": seen["figures"], "problems": problems}


def build_pdf(root: str | Path, out: str | Path, expected_figures: int | None = None) -> dict:
    """Build the single-page HTML book, print it to ``out`` and check the result."""
    t0 = time.perf_counter()
    root, out = Path(root).resolve(), Path(out)
    page = singlehtml(root)
    tmp = out.with_name(out.name + ".tmp")
    try:
        seen = print_page(page, tmp)
        info = inspect_pdf(tmp)
        problems = list(seen["problems"]) + info["problems"]
        if expected_figures is not None and seen["figures"] < expected_figures:
            problems.append(f"the printed page holds {seen['figures']} figures, the book {expected_figures}")
        if expected_figures is not None and info["images"] < expected_figures:
            problems.append(f"the PDF holds {info['images']} images, the book {expected_figures} figures")
        if problems:
            raise RebuildError("the PDF of the book failed its checks:\n  " + "\n  ".join(problems[:20]))
        tmp.replace(out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return {"pages": info["pages"], "figures": seen["figures"], "images": info["images"],
            "seconds": time.perf_counter() - t0, "path": str(out)}


# ---------------------------------------------------------------------------------------------
# Reading the PDF back (chromium / Skia output: Type0 fonts with ToUnicode maps)
# ---------------------------------------------------------------------------------------------
_OBJ = re.compile(rb"(\d+) 0 obj\s*(.*?)endobj", re.S)


def _objects(data: bytes) -> dict[int, bytes]:
    return {int(m.group(1)): m.group(2) for m in _OBJ.finditer(data)}


def _stream(body: bytes) -> bytes | None:
    m = re.search(rb"stream\r?\n(.*)\r?\nendstream", body, re.S)
    if not m:
        return None
    raw = m.group(1)
    if b"/FlateDecode" in body[:m.start()]:
        try:
            return zlib.decompress(raw)
        except zlib.error:
            return None
    return raw


def _cmap(text: bytes) -> dict[int, str]:
    out: dict[int, str] = {}

    def uni(h: bytes) -> str:
        return bytes.fromhex(h.decode()).decode("utf-16-be", "replace")

    for block in re.findall(rb"beginbfchar(.*?)endbfchar", text, re.S):
        for src, dst in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            out[int(src, 16)] = uni(dst)
    for block in re.findall(rb"beginbfrange(.*?)endbfrange", text, re.S):
        for lo, hi, dst in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            start = int(dst, 16)
            for i, code in enumerate(range(int(lo, 16), int(hi, 16) + 1)):
                out[code] = chr(start + i) if start + i < 0x110000 else "?"
    return out


def pdf_text(path: str | Path) -> list[str]:
    """The text of each page of a chromium-printed PDF (glyph runs joined by spaces)."""
    data = Path(path).read_bytes()
    objs = _objects(data)
    maps: dict[int, dict[int, str]] = {}
    pages = []
    for num in sorted(objs):
        body = objs[num]
        if not re.search(rb"/Type\s*/Page\b", body):
            continue
        fonts = {}
        fd = re.search(rb"/Font\s*<<(.*?)>>", body, re.S)
        for name, ref in re.findall(rb"/(\w+)\s+(\d+) 0 R", fd.group(1) if fd else b""):
            fid = int(ref)
            if fid not in maps:
                tu = re.search(rb"/ToUnicode (\d+) 0 R", objs.get(fid, b""))
                maps[fid] = _cmap(_stream(objs.get(int(tu.group(1)), b"")) or b"") if tu else {}
            fonts[name] = maps[fid]
        contents = re.search(rb"/Contents\s+(\d+) 0 R", body)
        stream = _stream(objs.get(int(contents.group(1)), b"")) if contents else None
        words, cmap = [], {}
        for m in re.finditer(rb"/(\w+)\s+[\d.]+\s+Tf|<([0-9A-Fa-f]*)>\s*Tj|\[(.*?)\]\s*TJ", stream or b"", re.S):
            if m.group(1):
                cmap = fonts.get(m.group(1), {})
                continue
            hexes = [m.group(2)] if m.group(2) is not None else re.findall(rb"<([0-9A-Fa-f]*)>", m.group(3))
            for h in hexes:
                codes = [int(h[i:i + 4], 16) for i in range(0, len(h) - 3, 4)]
                words.append("".join(cmap.get(c, "") for c in codes))
        pages.append(" ".join(words))
    return pages


def inspect_pdf(path: str | Path) -> dict:
    """Page count, image count and text checks of a printed book."""
    data = Path(path).read_bytes()
    if not data.startswith(b"%PDF-"):
        return {"pages": 0, "images": 0, "text": "", "problems": [f"{path} is not a PDF"]}
    text = pdf_text(path)
    joined = " ".join(text)
    problems = []
    if not text:
        problems.append("the PDF has no pages")
    m = GLUE_LEFTOVER.search(joined)
    if m:
        problems.append(f"unresolved glue in the PDF text: ...{joined[max(0, m.start() - 60):m.end() + 20]}...")
    objs = _objects(data)
    masks = {int(m) for body in objs.values() for m in re.findall(rb"/SMask\s+(\d+) 0 R", body)}
    images = sum(1 for num, body in objs.items()
                 if re.search(rb"/Subtype\s*/Image\b", body) and num not in masks)
    # cross-references: every internal link must land on a named destination of the PDF
    links = set(re.findall(rb"/Dest\s*/([^\s/<>\[\]()]+)", data))
    ref = re.search(rb"/Dests\s+(\d+) 0 R", data)
    named = set(re.findall(rb"/([^\s/<>\[\]()]+)\s*\[", objs.get(int(ref.group(1)), b""))) if ref else set()
    dangling = sorted(n.decode("latin-1") for n in links - named)
    if dangling:
        problems.append(f"{len(dangling)} internal links lead nowhere: {dangling[:5]}")
    return {"pages": len(text), "images": images, "text": joined, "problems": problems,
            "links": len(links), "destinations": sorted(n.decode("latin-1") for n in named)}
