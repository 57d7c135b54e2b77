"""The reader's pages, generated from what the chapters saved: the claims ledger, the coverage
map of the debate, the status page, the book's citation, the figures' provenance and each
chapter's "rerun this chapter" box.

:func:`generate` runs at the start of every Sphinx build (the book's extension
``book/_ext/countingargs_book.py`` calls it when the configuration is read), so
``jupyter-book build`` and ``python -m countingargs render`` both produce these pages. It only
reads what the runner and the chapters wrote::

    results/<profile>/<notebook>/ledger.csv       one row per sub-claim (report.LEDGER_COLUMNS)
    results/<profile>/<notebook>/provenance.json  commit, seeds, wall time, device, input hash
    results/<profile>/<notebook>/run.json         which tables each figure was drawn from
    book/generated/<notebook>.ipynb               the executed chapter (its profile is in its metadata)
    notebooks/*.md, notebooks/profiles.yml        the parameters per profile
    book/coverage.yml, CITATION.cff               the map of the debate, the book's citation

and writes only under ``book/generated/``::

    pages/*.md        fragments the prose pages include (``{include}``)
    pages/book.json   what the Sphinx extension needs (figures, chapters, citation, PDF)
    files/            served at the root of the HTML book: figures/, results/, notebooks/,
                      the citation files

A chapter whose results have no ``ledger.csv`` yet is listed as "not yet in the ledger"; a
ledger that breaks the row format is refused with a message naming the file and the problem.
Imports neither torch nor Sphinx.
"""
from __future__ import annotations

import csv
import fnmatch
import json
import math
import re
import shutil
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import RebuildError

PDF_NAME = "counting-arguments-counted.pdf"
BIB_NAME = "counting-arguments-counted.bib"
GENERATED = Path("book") / "generated"
PAGES = GENERATED / "pages"
FILES = GENERATED / "files"
VERDICT_ORDER = ("supports", "contradicts", "mixed")
FIGURE_RE = re.compile(r"```\{figure\}\s+\.\./figures/(?P<label>[a-z0-9][a-z0-9-]*)\.png\s*\n"
                       r"(?P<opts>(?::[^\n]*\n)*)")
NAME_RE = re.compile(r"^:name:\s*(\S+)\s*$", re.M)
ALT_RE = re.compile(r"^:alt:\s*(.+?)\s*$", re.M)
COVERAGE_KEYS = {"id", "who", "title", "quote", "where", "argument", "kind", "chapters", "ledger",
                 "needs"}
KINDS = ("empirical", "conceptual")


class PagesError(RebuildError):
    """A chapter's saved results or a data file of the book cannot be turned into pages."""


# ---------------------------------------------------------------------------------------------
# Small text helpers
# ---------------------------------------------------------------------------------------------
_ESCAPE = set(string.punctuation) - set(",'\"/;?")


def md(text: Any) -> str:
    """``text`` as literal MyST Markdown inline content: one line, every markup character
    escaped (so a quote or a finding can hold ``*``, ``$``, ``{`` or ``|`` safely)."""
    s = " ".join(str(text).split())
    return "".join("\\" + c if c in _ESCAPE else c for c in s)


def role_text(text: Any) -> str:
    """``text`` as the explicit title of a cross-reference role (``{doc}`title <target>```),
    where Markdown escapes are not processed: one line, no backticks or angle brackets."""
    return " ".join(str(text).replace("`", "'").replace("<", "(").replace(">", ")").split())


def html_attr(text: Any) -> str:
    return (str(text).replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
            .replace(">", "&gt;"))


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "x"


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _decimals(*values: float | None) -> int:
    """Decimals that show three significant digits of the largest magnitude among ``values``."""
    mags = [abs(v) for v in values if v is not None and v != 0]
    if not mags:
        return 2
    return int(min(6, max(0, 2 - math.floor(math.log10(max(mags))))))


def fmt_number(v: float | None, decimals: int) -> str:
    if v is None:
        return "n/a"
    if abs(v) >= 1e6 or (v != 0 and abs(v) < 1e-6):
        return f"{v:.2e}"
    out = f"{v:,.{decimals}f}"
    return out.replace("-", "\u2212") if out.startswith("-") else out


def format_effect(row: dict) -> str:
    """``"0.0123 [0.00456, 0.0201] nats"``: the effect and its interval, three significant
    digits of the largest of the three, with the units."""
    e, lo, hi = (_finite(row.get(k)) for k in ("effect", "effect_lo", "effect_hi"))
    d = _decimals(e, lo, hi)
    text = fmt_number(e, d)
    if lo is not None and hi is not None:
        text += f" [{fmt_number(lo, d)}, {fmt_number(hi, d)}]"
    else:
        text += " (no interval)"
    units = str(row.get("units") or "").strip()
    return f"{text} {units}".strip()


def _write(path: Path, text: str | bytes) -> bool:
    """Write only when the content changed (Sphinx then re-reads only what changed)."""
    data = text.encode() if isinstance(text, str) else text
    if path.exists() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return True


# ---------------------------------------------------------------------------------------------
# Reading what the chapters saved
# ---------------------------------------------------------------------------------------------
@dataclass
class Figure:
    label: str
    name: str                     # the {figure} directive's :name: (the numref target)
    alt: str
    chapter: str
    profile: str | None = None
    function: str | None = None
    tables: list[str] | None = None   # CSV paths relative to the book's root, None: not recorded
    commit: str | None = None
    dirty: bool | None = None


@dataclass
class Chapter:
    name: str                     # "01_distillation"
    title: str
    docname: str                  # "book/generated/01_distillation"
    generated: bool               # book/generated/<name>.ipynb exists
    profile: str | None = None
    results: Path | None = None
    provenance: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)
    glue: dict = field(default_factory=dict)
    ledger: list[dict] | None = None
    figures: list[Figure] = field(default_factory=list)
    freshness: str = "unknown"    # "current", "stale" or "unknown: why"
    in_toc: bool = False          # _toc.yml lists its page (so pages may link to it)

    @property
    def number(self) -> str:
        return self.name.split("_", 1)[0]


def read_ledger(path: Path, chapter: str) -> list[dict]:
    """The rows of one chapter's ``ledger.csv``, checked against the row format."""
    from ..report import LEDGER_COLUMNS, NEITHER, SIDES, VERDICTS, other_side

    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = tuple(reader.fieldnames or ())
        rows = list(reader)
    missing = [c for c in LEDGER_COLUMNS if c not in cols]
    if missing:
        raise PagesError(f"{path}: missing ledger columns {missing} (see report.LEDGER_COLUMNS)")
    out = []
    for i, row in enumerate(rows, 2):
        where = f"{path}, line {i} (id {row.get('id')!r})"
        for key in ("id", "claim", "who", "finding", "verdict", "claim_side"):
            if not str(row.get(key) or "").strip():
                raise PagesError(f"{where}: {key} is empty")
        if row["verdict"] not in VERDICTS:
            raise PagesError(f"{where}: verdict {row['verdict']!r} is not one of {VERDICTS}")
        if row["claim_side"] not in SIDES:
            raise PagesError(f"{where}: claim_side {row['claim_side']!r} is not one of {SIDES}")
        favours = (row["claim_side"] if row["verdict"] == "supports" else
                   other_side(row["claim_side"]) if row["verdict"] == "contradicts" else NEITHER)
        if row.get("favours") != favours:
            raise PagesError(f"{where}: favours is {row.get('favours')!r}, but a "
                             f"{row['verdict']!r} verdict on a claim {row['claim_side']!r} favours "
                             f"{favours!r}")
        if row.get("chapter") and row["chapter"] != chapter:
            raise PagesError(f"{where}: chapter is {row['chapter']!r}, but the file belongs to {chapter!r}")
        row = {k: row.get(k, "") for k in LEDGER_COLUMNS}
        row["chapter"] = chapter
        for k in ("effect", "effect_lo", "effect_hi"):
            raw = row[k]
            if str(raw).strip() and _finite(raw) is None and str(raw).lower() != "nan":
                raise PagesError(f"{where}: {k} = {raw!r} is not a number")
        out.append(row)
    ids = [r["id"] for r in out]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise PagesError(f"{path}: ledger ids used twice: {dup}")
    return out


def placed_figures(nb: dict) -> list[tuple[str, str, str]]:
    """(label, :name:, :alt:) of every ``{figure} ../figures/<label>.png`` in a notebook's
    markdown cells, in order."""
    out = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        src = "".join(cell.get("source", ""))
        for m in FIGURE_RE.finditer(src):
            opts = m.group("opts")
            name = NAME_RE.search(opts)
            alt = ALT_RE.search(opts)
            out.append((m.group("label"), name.group(1) if name else "",
                        alt.group(1) if alt else ""))
    return out


def _title(nb: dict, fallback: str) -> str:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            for line in "".join(cell.get("source", "")).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except json.JSONDecodeError as exc:
        raise PagesError(f"{path} is not valid JSON: {exc}") from None


def _freshness(root: Path, name: str, profile: str, prov: dict) -> str:
    """"current" when the runner's input hash of the notebook today equals the one recorded
    with its results, "stale" when it differs (sources, parameters, library or pins changed)."""
    from . import runner
    from .profiles import plan

    recorded = prov.get("input_hash")
    if not recorded:
        return "unknown: no input hash recorded"
    try:
        [job] = plan(root, profile, [name])
        now = runner.input_hash(root, job, profile, int(prov.get("torch_threads") or 1))
    except RebuildError as exc:
        return f"unknown: {str(exc).splitlines()[0]}"
    return "current" if now == recorded else "stale"


def toc_docs(root: Path) -> set[str]:
    """Every document ``_toc.yml`` names (without suffix)."""
    path = root / "_toc.yml"
    if not path.exists():
        return set()
    found: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("file", "root") and isinstance(v, str):
                    found.add(re.sub(r"\.(md|ipynb)$", "", v))
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(yaml.safe_load(path.read_text()) or {})
    return found


def chapter_states(root: Path) -> list[Chapter]:
    """What each chapter of ``notebooks/`` has produced, in notebook order."""
    from .sources import list_notebooks

    toc = toc_docs(root)
    out = []
    for name, src in list_notebooks(root).items():
        gen = root / GENERATED / f"{name}.ipynb"
        nb = _read_json(gen) if gen.exists() else {}
        title = _title(nb, "") if nb else ""
        if not title:
            title = next((ln[2:].strip() for ln in src.read_text().splitlines() if ln.startswith("# ")),
                         name)
        ch = Chapter(name, title, f"book/generated/{name}", gen.exists())
        ch.in_toc = ch.generated and ch.docname in toc
        meta = nb.get("metadata", {}).get("countingargs", {}) if nb else {}
        ch.profile = meta.get("profile")
        if ch.profile:
            ch.results = root / "results" / ch.profile / name
            ch.provenance = _read_json(ch.results / "provenance.json")
            ch.run = _read_json(ch.results / "run.json")
            ch.glue = _read_json(ch.results / "glue.json")
            if (ch.results / "ledger.csv").exists():
                ch.ledger = read_ledger(ch.results / "ledger.csv", name)
            if ch.provenance:
                ch.freshness = _freshness(root, name, ch.profile, ch.provenance)
            else:
                ch.freshness = "unknown: no provenance.json"
        else:
            ch.freshness = "not run"
        sources = ch.run.get("figure_sources") or {}
        for label, fig_name, alt in placed_figures(nb):
            s = sources.get(label)
            tables = None if s is None else [f"results/{ch.profile}/{name}/{t}.csv" for t in s["tables"]]
            ch.figures.append(Figure(label, fig_name, alt, name, ch.profile,
                                     s.get("function") if s else None, tables,
                                     ch.provenance.get("commit"), ch.provenance.get("dirty")))
        out.append(ch)
    ids: dict[str, str] = {}
    for ch in out:
        for row in ch.ledger or []:
            if row["id"] in ids:
                raise PagesError(f"ledger id {row['id']!r} is used by both {ids[row['id']]} and {ch.name}")
            ids[row["id"]] = ch.name
    return out


# ---------------------------------------------------------------------------------------------
# The coverage map
# ---------------------------------------------------------------------------------------------
def load_coverage(root: Path) -> dict:
    """``book/coverage.yml``: the participants and every checkable argument of the discussion."""
    path = root / "book" / "coverage.yml"
    if not path.exists():
        return {"people": {}, "arguments": []}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise PagesError(f"{path} is not valid YAML: {exc}") from None
    people = data.get("people") or {}
    args = data.get("arguments") or []
    seen = set()
    for i, a in enumerate(args):
        where = f"{path}: argument {i + 1} ({a.get('id', '?')!r})"
        extra = set(a) - COVERAGE_KEYS
        if extra:
            raise PagesError(f"{where}: unknown keys {sorted(extra)}; valid: {sorted(COVERAGE_KEYS)}")
        for key in ("id", "who", "title", "quote", "where", "argument", "kind"):
            if not str(a.get(key) or "").strip():
                raise PagesError(f"{where}: {key} is missing")
        if a["id"] in seen:
            raise PagesError(f"{where}: id used twice")
        seen.add(a["id"])
        if a["who"] not in people:
            raise PagesError(f"{where}: who {a['who']!r} is not listed under people: {sorted(people)}")
        if a["kind"] not in KINDS:
            raise PagesError(f"{where}: kind must be one of {KINDS}")
        a.setdefault("chapters", [])
        a.setdefault("ledger", [])
        if not a["chapters"] and not str(a.get("needs") or "").strip():
            raise PagesError(f"{where}: without chapters it needs 'needs' (what a test would need)")
        for c in a["chapters"]:
            if not re.fullmatch(r"\d\d", str(c)):
                raise PagesError(f"{where}: chapters are two-digit numbers (\"03\"), got {c!r}")
    return {"people": people, "arguments": args}


def match_ledger(patterns: list[str], rows: list[dict]) -> list[dict]:
    """Ledger rows whose id matches one of ``patterns`` (exact ids or ``fnmatch`` globs)."""
    return [r for r in rows if any(fnmatch.fnmatchcase(r["id"], p) for p in patterns)]


# ---------------------------------------------------------------------------------------------
# The book's citation (CITATION.cff)
# ---------------------------------------------------------------------------------------------
def _names(authors: list[dict]) -> list[str]:
    out = []
    for a in authors or []:
        if a.get("name"):
            out.append(str(a["name"]))
        else:
            out.append(" ".join(str(a[k]) for k in ("given-names", "name-particle", "family-names",
                                                     "name-suffix") if a.get(k)))
    return out


def _bib_escape(text: str) -> str:
    return str(text).replace("\\", "\\textbackslash{}").replace("&", "\\&").replace("%", "\\%") \
        .replace("#", "\\#").replace("_", "\\_")


def citation(root: Path, commit: str | None = None) -> dict[str, Any]:
    """The book's citation, from ``CITATION.cff`` (its ``preferred-citation`` when present):
    title, authors, year, version, plain text and a BibTeX entry."""
    path = root / "CITATION.cff"
    if not path.exists():
        raise PagesError(f"{path} is missing: the book's citation comes from it")
    cff = yaml.safe_load(path.read_text()) or {}
    pref = cff.get("preferred-citation") or cff
    title = pref.get("title") or cff.get("title")
    authors = _names(pref.get("authors") or cff.get("authors"))
    version = str(pref.get("version") or cff.get("version") or "")
    year = pref.get("year") or str(cff.get("date-released", ""))[:4]
    url = pref.get("url") or cff.get("url") or cff.get("repository-code")
    key = "countingargs" + str(year)
    who = " and ".join("{" + _bib_escape(a) + "}" if " " in a and "," not in a and a.startswith("The ")
                       else _bib_escape(a) for a in authors)
    note = f"Version {version}" + (f", commit {commit[:12]}" if commit else "")
    fields = [("author", who), ("title", "{" + _bib_escape(title) + "}"),
              ("howpublished", "Executable research report (Jupyter Book)"),
              ("year", str(year)), ("version", version), ("note", note)]
    if url:
        fields.append(("url", url))
    bib = f"@misc{{{key},\n" + ",\n".join(f"  {k} = {{{v}}}" for k, v in fields) + "\n}\n"
    plain = f"{', '.join(authors)} ({year}). {title}. Version {version}"
    plain += f", commit {commit[:12]}." if commit else "."
    if url:
        plain += f" {url}"
    return {"title": title, "authors": authors, "year": str(year), "version": version, "url": url,
            "key": key, "bibtex": bib, "plain": plain, "commit": commit,
            "message": cff.get("message", "")}


def figure_citation(book: dict, fig: dict, number: str, caption: str) -> tuple[str, str]:
    """(plain text, BibTeX) citing one figure: its number and file, the book's citation, the
    commit and profile of the results it was drawn from. The figure's title is its ``:alt:``
    text (a one-line description), else the first sentence of its caption."""
    commit = fig.get("commit")
    ctext = f"commit {commit[:12]}" if commit else "no git commit"
    if fig.get("dirty"):
        ctext += " with uncommitted changes"
    short = " ".join(str(fig.get("alt") or caption.split(". ")[0]).split()).rstrip(".")
    if len(short) > 160:
        short = short[:157].rsplit(" ", 1)[0] + "..."
    plain = (f"{', '.join(book['authors'])} ({book['year']}). {book['title']}, version "
             f"{book['version']}, Figure {number}: {short}. File figures/{fig['label']}.pdf, "
             f"{fig.get('profile') or 'unknown'} profile, {ctext}.")
    key = f"{book['key']}-{fig['label']}"
    who = " and ".join("{" + _bib_escape(a) + "}" for a in book["authors"])
    fields = [("author", who), ("title", "{Figure " + number + ": " + _bib_escape(short) + "}"),
              ("howpublished", "In: " + _bib_escape(book["title"]) + ", version " + book["version"]),
              ("year", book["year"]),
              ("note", f"File figures/{fig['label']}.pdf; {fig.get('profile') or 'unknown'} profile; "
                       + ctext)]
    if book.get("url"):
        fields.append(("url", book["url"]))
    bib = f"@misc{{{key},\n" + ",\n".join(f"  {k} = {{{v}}}" for k, v in fields) + "\n}"
    return plain, bib


# ---------------------------------------------------------------------------------------------
# Fragments
# ---------------------------------------------------------------------------------------------
def _doc(ch: Chapter, text: str | None = None) -> str:
    if not ch.in_toc:
        return md(text or ch.title)
    return f"{{doc}}`{role_text(text or ch.title)} </{ch.docname}>`"


def _verdict_badge(verdict: str) -> str:
    return f'<span class="ca-verdict ca-verdict-{verdict}">{verdict}</span>'


def _figure_ref(ch_by_name: dict[str, Chapter], row: dict) -> tuple[str, str | None]:
    """The ledger row's figure as a numbered cross-reference, or text saying why it is not."""
    label = str(row.get("figure") or "").strip()
    if not label:
        return "none", None
    ch = ch_by_name[row["chapter"]]
    fig = next((f for f in ch.figures if f.label == label), None)
    if fig is not None and fig.name and not ch.in_toc:
        return f"`{label}` (chapter not in the book yet)", None
    if fig is None or not fig.name:
        return (f"`{label}` (not placed in the chapter)",
                f"ledger row {row['id']}: figure {label!r} is not placed with a :name: in {ch.name}")
    return f"{{numref}}`{fig.name}`", None


def _quote(row: dict) -> str:
    q = str(row.get("quote") or "").strip().strip('"\u201c\u201d')
    src = str(row.get("source") or "").strip()
    text = f"\u201c{md(q)}\u201d" if q else ""
    if src:
        text += f" ({md(src)})"
    return text


def ledger_fragment(chapters: list[Chapter], coverage: dict) -> tuple[str, list[str]]:
    """The ledger page's generated part: quick-profile warning, summary counts, chapters not
    yet in the ledger, and the table (one row per sub-claim)."""
    problems: list[str] = []
    by_name = {c.name: c for c in chapters}
    rows = [r for c in chapters for r in (c.ledger or [])]
    args = coverage["arguments"]
    lines = [_profile_note(chapters)]
    lines += ["## Summary", ""]
    if rows:
        lines.append(_summary_table(rows))
    else:
        lines.append("No chapter has written its ledger rows yet.")
    lines.append("")
    missing = [c for c in chapters if c.ledger is None]
    if missing:
        lines += ["```{admonition} Not yet in the ledger", ":class: ca-not-in-ledger", ""]
        for c in missing:
            why = ("has not been run" if not c.generated else
                   "its results have no ledger.csv yet")
            lines.append(f"* {_doc(c)} ({md(c.name)}): {why}{_overall(c)}.")
        lines += ["```", ""]
    if not rows:
        return "\n".join(lines), problems
    lines += ["## Every sub-claim", "",
              "```{list-table}", ":header-rows: 1", ":class: ca-ledger-table",
              ":widths: 27 16 11 15 23 8", "",
              "* - Claim", "  - Who said it", "  - Verdict", "  - Effect [95% interval]",
              "  - Finding", "  - Figure"]
    for order, r in enumerate(rows):
        ch = by_name[r["chapter"]]
        fig, prob = _figure_ref(by_name, r)
        if prob:
            problems.append(prob)
        tested = [a for a in args if match_ledger(a.get("ledger") or [], [r])]
        key = (f'<span class="ca-ledger-key" data-order="{order}" data-who="{html_attr(r["who"])}" '
               f'data-verdict="{html_attr(r["verdict"])}" data-favours="{html_attr(r["favours"])}" '
               f'data-chapter="{html_attr(ch.number + " " + ch.title)}"></span>')
        lines += [f"* - (ledger-{r['id']})=", f"    {key}{md(r['claim'])}", ""]
        if str(r.get("version") or "").strip():
            lines += [f"    <small>Version: {md(r['version'])}</small>", ""]
        tests = ("; tests " + ", ".join(f"{{ref}}`{role_text(a['title'])} <coverage-{a['id']}>` "
                                        f"({md(a['who'])})" for a in tested)
                 if tested else "; not in the coverage map")
        lines.append(f"    <small>Row `{r['id']}`, chapter {_doc(ch, ch.number)}{tests}</small>")
        lines.append(f"  - **{md(r['who'])}**: {_quote(r)}")
        lines.append(f"  - {_verdict_badge(r['verdict'])}")
        lines.append("")
        lines.append(f"    <small>favours: {md(r['favours'])}</small>")
        lines.append(f"  - {md(r['effect_name'])}: **{md(format_effect(r))}**"
                     if str(r.get("effect_name") or "").strip() else f"  - **{md(format_effect(r))}**")
        lines.append(f"  - {md(r['finding'])}")
        lines.append(f"  - {fig}")
    lines += ["```", ""]
    return "\n".join(lines), problems


def _profile_note(chapters: list[Chapter]) -> str:
    profiles = {}
    for c in chapters:
        if c.profile:
            profiles.setdefault(c.profile, []).append(c.number)
    if not profiles:
        return ""
    parts = ", ".join(f"**{p}** (chapters {', '.join(n)})" for p, n in profiles.items())
    text = f"These results come from the {parts} profile" + ("s" if len(profiles) > 1 else "") + "."
    if "quick" in profiles:
        return ("```{warning}\n" + text + " The quick profile exists to test the pipeline: its "
                "samples are too small for its verdicts to mean anything. Read and cite the standard "
                "(or full) profile.\n```\n")
    return text + "\n"


def _summary_table(rows: list[dict]) -> str:
    people = sorted({r["who"] for r in rows})
    out = ["```{list-table}", ":header-rows: 1", ":class: ca-summary-table", "",
           "* - Who", *(f"  - {v}" for v in VERDICT_ORDER), "  - all"]
    for p in people + ["all"]:
        mine = [r for r in rows if p == "all" or r["who"] == p]
        counts = [sum(r["verdict"] == v for r in mine) for v in VERDICT_ORDER]
        out.append(f"* - {'**all**' if p == 'all' else md(p)}")
        out += [f"  - {c}" for c in counts] + [f"  - {len(mine)}"]
    out.append("```")
    from ..report import NEITHER, SIDES

    side = {s: sum(r["favours"] == s for r in rows) for s in (*SIDES, NEITHER)}
    out += ["", "Which side the results favour: " + "; ".join(
        f"{md(s)}: {n}" for s, n in side.items()) + " (a *supports* verdict favours the side the "
        "claim argues for, *contradicts* the other side, *mixed* neither)."]
    return "\n".join(out)


def _n(k: int, one: str, many: str | None = None) -> str:
    return f"{k} {one if k == 1 else (many or one + 's')}"


def _overall(c: Chapter) -> str:
    v = c.glue.get("verdict")
    return f" (its overall verdict so far: {_verdict_badge(v)})" if v in VERDICT_ORDER else ""


def findings_fragment(chapters: list[Chapter]) -> str:
    """The introduction's "what the book finds": counts and each row's finding, from the ledger."""
    from ..report import NEITHER, PROPONENT, SCEPTIC

    rows = [r for c in chapters for r in (c.ledger or [])]
    done = [c for c in chapters if c.ledger is not None]
    missing = [c for c in chapters if c.ledger is None]
    lines = [_profile_note(chapters)]
    if rows:
        counts = {v: sum(r["verdict"] == v for r in rows) for v in VERDICT_ORDER}
        k_s = sum(r["favours"] == SCEPTIC for r in rows)
        lines.append(
            f"The {{doc}}`claims ledger </book/ledger>` holds {_n(len(rows), 'sub-claim')} from "
            f"{len(done)} of {_n(len(chapters), 'chapter')}: {counts['supports']} supported, "
            f"{counts['contradicts']} contradicted and {counts['mixed']} mixed. "
            f"{_n(k_s, 'verdict')} {'favours' if k_s == 1 else 'favour'} the side "
            f"{md(SCEPTIC)}, {sum(r['favours'] == PROPONENT for r in rows)} the side "
            f"{md(PROPONENT)}, and {sum(r['favours'] == NEITHER for r in rows)} neither.")
        lines.append("")
        for c in done:
            lines.append(f"* {_doc(c)}")
            for r in c.ledger:
                lines.append(f"  * {md(r['claim'])} ({md(r['who'])}): {_verdict_badge(r['verdict'])}. "
                             f"{md(r['finding'])} {{ref}}`Row <ledger-{r['id']}>`")
    else:
        lines.append(f"No chapter has written its ledger rows yet ({_n(len(chapters), 'chapter')} in "
                     "the book); the {doc}`claims ledger </book/ledger>` lists them as they arrive.")
    if missing:
        lines += ["", "Not yet in the ledger:", ""]
        lines += [f"* {_doc(c)}{_overall(c)}" for c in missing]
    return "\n".join(lines) + "\n"


def coverage_fragment(coverage: dict, chapters: list[Chapter]) -> tuple[str, list[str]]:
    """The coverage map: every argument of the discussion, by person, with what tests it."""
    problems: list[str] = []
    by_num = {c.number: c for c in chapters}
    rows = [r for c in chapters for r in (c.ledger or [])]
    args = coverage["arguments"]
    tested = [a for a in args if any(n in by_num for n in a["chapters"])]
    conceptual = [a for a in args if a["kind"] == "conceptual" and a not in tested]
    lines = [f"{len(args)} arguments: {len(tested)} tested by a chapter of this book "
             f"({sum(bool(match_ledger(a['ledger'], rows)) for a in args)} of them with rows in the "
             f"ledger so far), {len(args) - len(tested) - len(conceptual)} checkable ones **not tested "
             f"yet**, and {len(conceptual)} about framing, which no measurement decides.", ""]
    for person, full in coverage["people"].items():
        mine = [a for a in args if a["who"] == person]
        if not mine:
            continue
        lines += [f"## {md(full)}", "", "```{list-table}", ":header-rows: 1",
                  ":class: ca-coverage-table", ":widths: 38 24 38", "",
                  "* - Argument", "  - In their words", "  - Tested by"]
        for a in mine:
            lines.append(f"* - (coverage-{a['id']})=")
            kind = "" if a["kind"] == "empirical" else " <small>(conceptual)</small>"
            lines.append(f"    **{md(a['title'])}.** {md(a['argument'])}{kind}")
            lines.append("")
            lines.append(f"    <small>`{a['id']}`</small>")
            lines.append(f"  - \u201c{md(a['quote'])}\u201d ({md(a['where'])})")
            lines.append("  - " + _tested_by(a, by_num, rows, problems))
        lines += ["```", ""]
    unmapped = [r for r in rows if not any(match_ledger(a["ledger"], [r]) for a in args)]
    if unmapped:
        lines += ["## Ledger rows not yet mapped to an argument", ""]
        lines += [f"* {{ref}}`{role_text(r['id'])} <ledger-{r['id']}>`: {md(r['claim'])}"
                  for r in unmapped]
        lines.append("")
    return "\n".join(lines), problems


def _tested_by(a: dict, by_num: dict[str, Chapter], rows: list[dict], problems: list[str]) -> str:
    have = [by_num[n] for n in a["chapters"] if n in by_num]
    if not have and a["kind"] == "conceptual":
        return f'<span class="ca-badge ca-conceptual">conceptual</span> {md(a.get("needs") or "")}'
    if not have:
        return (f'<span class="ca-badge ca-untested">not tested yet</span> A test would need: '
                f'{md(a.get("needs") or "a chapter")}')
    parts = []
    for ch in have:
        mine = [r for r in match_ledger(a["ledger"], rows) if r["chapter"] == ch.name]
        text = f"Chapter {_doc(ch, ch.number + ': ' + ch.title)}"
        if mine:
            text += ": " + ", ".join(f"{{ref}}`{role_text(r['id'])} <ledger-{r['id']}>` "
                                     f"{_verdict_badge(r['verdict'])}" for r in mine)
        elif ch.ledger is None:
            text += " (not yet in the ledger)"
        elif a["ledger"]:
            text += " (its ledger has no row matching " + ", ".join(f"`{p}`" for p in a["ledger"]) + ")"
            problems.append(f"coverage {a['id']}: no ledger row of {ch.name} matches {a['ledger']}")
        else:
            text += " (its ledger rows are not yet mapped to this argument)"
        parts.append(text)
    if a.get("needs") and len(have) < len(a["chapters"]):
        parts.append(f"still to test: {md(a['needs'])}")
    return "; ".join(parts)


def chapters_fragment(chapters: list[Chapter], coverage: dict) -> str:
    """The introduction's list of chapters: what each tests (from the coverage map) and how
    far its ledger has got."""
    people = coverage["people"]
    lines = ["| Chapter | Arguments it tests | Ledger |", "| --- | --- | --- |"]
    for c in chapters:
        tested = [a for a in coverage["arguments"] if c.number in a["chapters"]]
        args = "; ".join(f"{{ref}}`{role_text(a['title'])} <coverage-{a['id']}>` "
                         f"({md(people.get(a['who'], a['who']).split()[-1])})" for a in tested)
        if c.ledger is None:
            state = "not yet in the ledger"
        else:
            state = ", ".join(f"{sum(r['verdict'] == v for r in c.ledger)} {v}" for v in VERDICT_ORDER)
        lines.append(f"| {_doc(c)} | {args or 'not in the coverage map'} | {state} |")
    return "\n".join(lines) + "\n"


def status_fragment(chapters: list[Chapter]) -> str:
    """Per chapter: profile, commit, seeds, wall time, device, freshness, verdicts."""
    lines = ["```{list-table}", ":header-rows: 1", ":class: ca-status-table", "",
             "* - Chapter", "  - Profile", "  - Commit", "  - Run", "  - Seeds",
             "  - Device", "  - Results vs sources", "  - Verdicts"]
    for c in chapters:
        p = c.provenance
        commit = p.get("commit")
        ctext = f"`{commit[:12]}`" if commit else ("no git commit" if p else "n/a")
        if p.get("dirty"):
            ctext += " (uncommitted changes)"
        seeds = p.get("seeds") if p.get("seeds") is not None else c.run.get("seeds")
        if isinstance(seeds, dict):
            seeds = "; ".join(f"{k}: {_seed_text(v)}" for k, v in seeds.items())
        else:
            seeds = _seed_text(seeds)
        wall = p.get("wall_seconds")
        run = (f"{md(str(p.get('started_utc', ''))[:16].replace('T', ' '))} UTC, "
               f"{_duration(wall)}" if p else "not run")
        dev = p.get("device") or "n/a"
        if p.get("cuda_device"):
            dev += f" ({p['cuda_device']})"
        if p.get("torch_threads"):
            dev += f", {p['torch_threads']} thread(s)"
        fresh = c.freshness
        if fresh == "stale":
            fresh = (f"**stale**: its sources, parameters, library or pins changed since the run "
                     f"(`python -m countingargs rebuild --profile {c.profile} --only {c.name}`)")
        elif fresh.startswith("unknown"):
            fresh = md(fresh)
        if c.ledger is not None:
            v = ", ".join(f"{sum(r['verdict'] == k for r in c.ledger)} {k}" for k in VERDICT_ORDER)
            verdicts = f"{len(c.ledger)} ledger rows: {v}"
        elif c.glue.get("verdict") in VERDICT_ORDER:
            verdicts = f"overall {c.glue['verdict']} (not yet in the ledger)"
        else:
            verdicts = "not yet in the ledger"
        lines += [f"* - {_doc(c, c.number + ' ' + c.title)}", f"  - {md(c.profile or 'not run')}",
                  f"  - {ctext}", f"  - {run}", f"  - {md(seeds)}", f"  - {md(dev)}",
                  f"  - {fresh}", f"  - {verdicts}"]
    lines += ["```", ""]
    return "\n".join(lines)


def _seed_text(seeds: Any) -> str:
    if seeds is None:
        return "n/a"
    if isinstance(seeds, list):
        if len(seeds) > 6:
            return f"{len(seeds)} ({seeds[0]}, {seeds[1]}, ..., {seeds[-1]})"
        return f"{len(seeds)} ({', '.join(map(str, seeds))})"
    return str(seeds)


def _duration(s: Any) -> str:
    v = _finite(s)
    if v is None:
        return "n/a"
    m, sec = divmod(int(round(v)), 60)
    return f"{m} min {sec:02d} s" if m else f"{v:.1f} s"


def cite_fragment(book: dict) -> str:
    lines = [f"{md(book['message'])}" if book.get("message") else "", "",
             "```{code-block} bibtex", book["bibtex"].rstrip(), "```", "",
             "In plain text:", "", "```{code-block} text", book["plain"], "```", "",
             f"The same entry as a file: {{bookfile}}`{BIB_NAME} <{BIB_NAME}>`; the source: "
             "{bookfile}`CITATION.cff <CITATION.cff>`.", ""]
    return "\n".join(lines)


def pdf_fragment(pdf: dict) -> str:
    if pdf.get("enabled"):
        return (f"The whole book as one PDF: {{bookfile}}`{PDF_NAME} <{PDF_NAME}>` (printed from "
                "the single-page HTML build by Debian's chromium; figures numbered as here).\n")
    return f"No PDF of the book was built here ({md(pdf.get('reason', 'disabled'))}).\n"


# ---------------------------------------------------------------------------------------------
# Rerun boxes: the command and the parameters per profile
# ---------------------------------------------------------------------------------------------
def rerun_info(root: Path, name: str, profile: str | None) -> dict:
    from .profiles import PROFILES, load_profiles
    from .sources import RUNNER_PARAMS, declared_parameters, list_notebooks

    src = list_notebooks(root)[name]
    declared = declared_parameters(src)
    profiles = load_profiles(root)
    shown = [p for p in PROFILES if p in profiles]
    params = []
    for key, default in declared.items():
        if key in RUNNER_PARAMS:
            continue
        row = [key]
        for p in shown:
            over = (profiles[p].get("notebooks", {}) or {}).get(name) or {}
            row.append(json.dumps(over[key]) if key in over else json.dumps(default))
        params.append(row)
    prof = profile or "standard"
    return {"profiles": shown, "params": params, "profile": prof,
            "commands": [f"python -m countingargs rebuild --profile {prof} --only {name} --force",
                         f"python -m countingargs params {name}",
                         f"python -m countingargs verify --profile {prof} --only {name}",
                         f"python -m countingargs replot --profile {prof} --only {name}"]}


# ---------------------------------------------------------------------------------------------
# Everything
# ---------------------------------------------------------------------------------------------
def pdf_available() -> tuple[bool, str]:
    """Whether this machine can print the PDF (Debian's chromium and playwright)."""
    from .pdf import CHROMIUM

    if not Path(CHROMIUM).exists():
        return False, f"{CHROMIUM} is not installed (make chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return False, "the playwright package is missing"
    return True, ""


def _copy_files(root: Path, chapters: list[Chapter], book: dict) -> list[str]:
    """Copy what the book serves into ``book/generated/files/``; returns the relative paths."""
    dest = root / FILES
    want: dict[str, Path] = {}
    figdir = root / "book" / "figures"
    if figdir.exists():
        for p in sorted(figdir.iterdir()):
            if p.suffix in (".png", ".pdf"):
                want[f"figures/{p.name}"] = p
    for c in chapters:
        if c.results and c.results.exists():
            for p in sorted(c.results.iterdir()):
                if p.suffix in (".csv", ".json"):
                    want[f"results/{c.profile}/{c.name}/{p.name}"] = p
        gen = root / GENERATED / f"{c.name}.ipynb"
        if gen.exists():
            want[f"notebooks/{c.name}.ipynb"] = gen
        want[f"notebooks/{c.name}.md"] = root / "notebooks" / f"{c.name}.md"
    want["CITATION.cff"] = root / "CITATION.cff"
    for rel, src in want.items():
        _write(dest / rel, src.read_bytes())
    _write(dest / BIB_NAME, book["bibtex"])
    keep = set(want) | {BIB_NAME}
    if dest.exists():
        for p in sorted(dest.rglob("*"), reverse=True):
            rel = p.relative_to(dest).as_posix()
            if p.is_file() and rel not in keep:
                p.unlink()
            elif p.is_dir() and not any(p.iterdir()):
                p.rmdir()
    return sorted(keep)


def generate(root: str | Path, pdf: bool | None = None) -> dict[str, Any]:
    """Write every generated page fragment, the served files and ``pages/book.json``; returns
    the data written to ``book.json`` (plus ``problems``: things a reader would see as missing,
    such as a ledger row naming a figure the chapter does not place)."""
    from .provenance import commit_info

    root = Path(root).resolve()
    chapters = chapter_states(root)
    coverage = load_coverage(root)
    commit = commit_info(root)
    book = citation(root, commit.get("commit"))
    if pdf is None:
        ok, reason = pdf_available()
    else:
        ok, reason = bool(pdf), ("" if pdf else "the PDF is switched off (countingargs_pdf)")
    pdf_info = {"enabled": ok, "file": PDF_NAME, "reason": reason}
    ledger_md, p1 = ledger_fragment(chapters, coverage)
    coverage_md, p2 = coverage_fragment(coverage, chapters)
    pages = {"ledger.md": ledger_md, "coverage.md": coverage_md,
             "findings.md": findings_fragment(chapters), "status.md": status_fragment(chapters),
             "chapters.md": chapters_fragment(chapters, coverage),
             "cite.md": cite_fragment(book), "pdf.md": pdf_fragment(pdf_info)}
    out = root / PAGES
    for fname, text in pages.items():
        _write(out / fname, text)
    files = _copy_files(root, chapters, book)
    figures = {}
    for c in chapters:
        for f in c.figures:
            figures[f.label] = {**f.__dict__, "docname": c.docname,
                                "png": f"figures/{f.label}.png", "pdf": f"figures/{f.label}.pdf",
                                "notebook_file": f"notebooks/{c.name}.ipynb"}
    data = {
        "book": book,
        "pdf": pdf_info,
        "files": files,
        "figures": figures,
        "chapters": {c.name: {"docname": c.docname, "title": c.title, "profile": c.profile,
                              "commit": c.provenance.get("commit"), "dirty": c.provenance.get("dirty"),
                              "freshness": c.freshness,
                              "notebook_file": f"notebooks/{c.name}.ipynb",
                              "source_file": f"notebooks/{c.name}.md",
                              "results": (f"results/{c.profile}/{c.name}" if c.profile else None),
                              "rerun": rerun_info(root, c.name, c.profile)}
                     for c in chapters},
        "problems": p1 + p2,
    }
    _write(out / "book.json", json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")
    return data


def remove_generated_pages(root: Path) -> None:
    """Delete the generated fragments and served files (``make clean`` does more)."""
    for d in (root / PAGES, root / FILES):
        shutil.rmtree(d, ignore_errors=True)
