"""The book's own Sphinx extension: generated pages, figure provenance, rerun boxes, the PDF.

* When the configuration is read, :func:`countingargs.build.pages.generate` writes the
  generated page fragments (ledger, coverage map, findings, status, citation) and copies the
  files the book serves into ``book/generated/files/``; after the build they are copied next
  to ``index.html``, so ``figures/<label>.pdf``, ``results/<profile>/<notebook>/*.csv`` and
  ``notebooks/<notebook>.ipynb`` sit at stable addresses in the HTML book.
* ``{bookfile}`Text <path>``` links a served file from any page, relative to that page, and
  warns (an error in the strict build) when the file does not exist.
* Under every figure of a chapter: a provenance line (PNG, PDF, the CSV files it was drawn
  from, the notebook and the plot function, profile and commit) and a "cite this figure"
  snippet with its number; the ``{figure-index}`` directive lists every figure.
* Each chapter page gets a box with the executed notebook to download and the command and
  parameters (per profile) that rerun it.
* After a successful HTML build, the whole book is printed to one PDF
  (:mod:`countingargs.build.pdf`), unless ``countingargs_pdf`` (or the environment variable
  ``COUNTINGARGS_PDF``) is ``"off"``; ``"auto"``, the default, prints when Debian's chromium is
  installed.
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging
from sphinx.util.nodes import make_refnode

from countingargs.build import pages

logger = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
BANNER = "How this page was produced"


class figure_index(nodes.General, nodes.Element):
    """Placeholder for the figure index, filled in once every figure has its number."""


def _skip(self, node):
    raise nodes.SkipNode


class FigureIndex(Directive):
    has_content = False

    def run(self):
        env = self.state.document.settings.env
        if not hasattr(env, "ca_index_docs"):
            env.ca_index_docs = set()
        env.ca_index_docs.add(env.docname)
        return [figure_index()]


# ---------------------------------------------------------------------------------------------
# Generation and configuration
# ---------------------------------------------------------------------------------------------
def _generate(app, config):
    root = Path(app.srcdir)
    mode = os.environ.get("COUNTINGARGS_PDF") or config.countingargs_pdf
    mode = {True: "on", False: "off"}.get(mode, mode)   # YAML reads a bare on/off as a boolean
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"countingargs_pdf must be auto, on or off, got {mode!r}")
    app.ca_book = pages.generate(root, pdf=None if mode == "auto" else mode == "on")
    if str(STATIC) not in config.html_static_path:
        config.html_static_path.append(str(STATIC))
    for problem in app.ca_book["problems"]:   # a ledger row or coverage entry that points nowhere
        logger.warning(f"countingargs pages: {problem}")


def _collect_captions(app, doctree):
    """Remember each figure's id and caption, per document, for the figure index."""
    env = app.env
    if not hasattr(env, "ca_figures"):
        env.ca_figures = {}
    found = {}
    for fig in doctree.findall(nodes.figure):
        label = _label_of(fig)
        if label and fig["ids"]:
            cap = fig.next_node(nodes.caption)
            found[label] = {"id": fig["ids"][0], "caption": cap.astext() if cap else ""}
    env.ca_figures[env.docname] = found


def _purge(app, env, docname):
    getattr(env, "ca_figures", {}).pop(docname, None)
    getattr(env, "ca_index_docs", set()).discard(docname)


def _merge(app, env, docnames, other):
    if not hasattr(env, "ca_figures"):
        env.ca_figures = {}
    if not hasattr(env, "ca_index_docs"):
        env.ca_index_docs = set()
    for d in docnames:
        if d in getattr(other, "ca_figures", {}):
            env.ca_figures[d] = other.ca_figures[d]
        if d in getattr(other, "ca_index_docs", set()):
            env.ca_index_docs.add(d)


def _outdated(app, env, added, changed, removed):
    """Pages whose generated parts (figure provenance, rerun boxes, the figure index) come from
    ``book.json`` are rebuilt whenever it, or this extension, changes: Sphinx would otherwise
    keep showing the provenance of earlier results on an unchanged chapter."""
    key = hashlib.sha256(json.dumps(app.ca_book, sort_keys=True, default=str).encode()
                         + Path(__file__).read_bytes()).hexdigest()
    if getattr(env, "ca_book_key", None) == key:
        return []
    env.ca_book_key = key
    docs = set(getattr(env, "ca_figures", {})) | set(getattr(env, "ca_index_docs", set()))
    docs |= {c["docname"] for c in app.ca_book["chapters"].values()}
    return sorted(d for d in docs if d in env.found_docs)


def _label_of(fig) -> str | None:
    img = next(iter(fig.findall(nodes.image)), None)
    if img is None:
        return None
    uri = str(img.get("uri", ""))
    parts = uri.split("/")
    if len(parts) >= 2 and parts[-2] == "figures" and uri.endswith(".png"):
        return parts[-1][:-4]
    return None


# ---------------------------------------------------------------------------------------------
# Links to served files
# ---------------------------------------------------------------------------------------------
def bookfile_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """``{bookfile}`path``` or ``{bookfile}`Title <path>```: a link to a file served by the book."""
    text = nodes.unescape(text)
    if text.endswith(">") and " <" in text:
        title, _, path = text[:-1].rpartition(" <")
    else:
        title = path = text
    node = nodes.reference(rawtext, title, refuri=path, classes=["ca-bookfile"])
    node["ca_bookfile"] = path.strip()
    return [node], []


def _page_prefix(app, docname: str) -> str:
    """The relative path from a page to the root of the HTML output."""
    if app.builder.name == "singlehtml":
        return ""
    uri = app.builder.get_target_uri(docname)
    return "../" * uri.count("/")


def _file_ref(app, docname: str, path: str, text: str | None = None, node=None):
    prefix = _page_prefix(app, docname)
    served = set(app.ca_book["files"])
    if app.ca_book["pdf"]["enabled"]:
        served.add(pages.PDF_NAME)
    if path not in served:
        logger.warning(f"link to {path!r}, which the book does not serve", location=node or docname)
    ref = nodes.reference("", text or posixpath.basename(path), refuri=prefix + path,
                          classes=["ca-bookfile"])
    return ref


# ---------------------------------------------------------------------------------------------
# The post-transform: provenance lines, rerun boxes, the figure index
# ---------------------------------------------------------------------------------------------
def _inlined(node) -> bool:
    """A node that holds one source document inside another (singlehtml inlines every document
    into the root one, marking each with its ``docname``)."""
    return isinstance(node, nodes.Element) and not isinstance(node, nodes.document) \
        and bool(node.get("docname"))


def _doc_roots(document, docname):
    """(node, docname) of each source document in this doctree."""
    inlined = list(document.findall(_inlined))
    return [(n, n["docname"]) for n in inlined] if inlined else [(document, docname)]


def _docname_of(node, default):
    while node is not None:
        if _inlined(node):
            return node["docname"]
        node = node.parent
    return default


def _fignumber(env, docname, fig_id) -> str:
    num = (env.toc_fignumbers.get(docname, {}).get("figure", {}) or {}).get(fig_id)
    if num is None:  # singlehtml after assembling: one merged table
        for table in env.toc_fignumbers.values():
            num = table.get(f"{docname}/figure", {}).get(fig_id) or num
    return ".".join(map(str, num)) if num else "?"


def _para(*parts, classes=()):
    p = nodes.paragraph(classes=list(classes))
    for part in parts:
        p += nodes.Text(part) if isinstance(part, str) else part
    return p


def _literal(text):
    return nodes.literal(text, text)


def _sep(items, sep=", "):
    out = []
    for i, it in enumerate(items):
        if i:
            out.append(sep)
        out.append(it)
    return out


def _provenance(app, docname, fig_node, fig):
    book = app.ca_book
    number = _fignumber(app.env, _docname_of(fig_node, docname), fig_node["ids"][0]) \
        if fig_node["ids"] else "?"
    cap = fig_node.next_node(nodes.caption)
    caption = cap.astext() if cap else fig.get("alt", "")
    box = nodes.container(classes=["ca-provenance"])
    folder = f"results/{fig['profile']}/{fig['chapter']}/"
    notebook = _file_ref(app, docname, fig["notebook_file"], posixpath.basename(fig["notebook_file"]),
                         fig_node)
    parts = [nodes.strong(text=f"Figure {number}"), " \u00b7 files: ",
             _file_ref(app, docname, fig["png"], "PNG", fig_node), ", ",
             _file_ref(app, docname, fig["pdf"], "PDF", fig_node), " \u00b7 data: "]
    if fig.get("tables"):
        parts += _sep([_file_ref(app, docname, t, None, fig_node) for t in fig["tables"]])
        parts += [" in ", _literal(folder)]
    elif fig.get("profile"):
        parts += [_literal(folder), " (the tables it read were not recorded)"]
    else:
        parts += ["not found"]
    if fig.get("function"):
        parts += [" \u00b7 drawn by ", _literal(fig["function"]), " in ", notebook]
    else:
        parts += [" \u00b7 drawn by a cell of ", notebook]
    parts += [f" \u00b7 {fig.get('profile') or 'unknown'} profile, "]
    commit = fig.get("commit")
    parts += (["commit ", _literal(commit[:12])] if commit else ["no git commit"])
    if fig.get("dirty"):
        parts += [" (uncommitted changes)"]
    box += _para(*parts, classes=["ca-provenance-line"])
    plain, bib = pages.figure_citation(book["book"], fig, number, caption)
    box += nodes.raw("", '<details class="ca-cite"><summary>Cite this figure</summary>', format="html")
    box += nodes.literal_block(plain, plain, classes=["ca-cite-text"], language="text")
    box += nodes.literal_block(bib, bib, classes=["ca-cite-bibtex"], language="bibtex")
    box += nodes.raw("", "</details>", format="html")
    return box


def _table(header, rows, classes=()):
    table = nodes.table(classes=list(classes))
    group = nodes.tgroup(cols=len(header))
    table += group
    for _ in header:
        group += nodes.colspec(colwidth=1)

    def row(cells, head=False):
        r = nodes.row()
        for c in cells:
            e = nodes.entry()
            e += c if isinstance(c, nodes.Element) and not isinstance(c, nodes.Inline) else _para(c)
            r += e
        return r

    thead = nodes.thead()
    thead += row(header)
    group += thead
    body = nodes.tbody()
    for r in rows:
        body += row(r)
    group += body
    return table


def _rerun_box(app, docname, info):
    rerun = info["rerun"]
    box = nodes.container(classes=["ca-rerun"])
    links = [_file_ref(app, docname, info["notebook_file"], "the executed notebook (.ipynb)"),
             " \u00b7 ", _file_ref(app, docname, info["source_file"], "its source (MyST .md)")]
    if info.get("results"):
        links += [" \u00b7 ", _file_ref(app, docname, info["results"] + "/provenance.json",
                                        "provenance.json")]
    box += _para(nodes.strong(text="Download: "), *links, classes=["ca-downloads"])
    box += nodes.raw("", '<details class="ca-rerun-details"><summary>Rerun this chapter</summary>',
                     format="html")
    box += _para("From a checkout of the book with its environment set up (", nodes.literal(
        text="make env"), "), this reruns the chapter in the ", nodes.strong(text=rerun["profile"]),
        " profile, shows its parameters, and checks its saved numbers and figures:")
    cmds = "\n".join(rerun["commands"])
    box += nodes.literal_block(cmds, cmds, language="bash")
    box += _para("Its parameters in each profile (the notebook's parameters cell holds the standard "
                 "values, ", nodes.literal(text="notebooks/profiles.yml"), " the others, in bold where "
                 "they differ; change one with ", nodes.literal(text="-p NAME VALUE"), "):")
    header = ["parameter", *rerun["profiles"]]
    std = rerun["profiles"].index("standard") + 1 if "standard" in rerun["profiles"] else None
    rows = [[_literal(r[0]), *((nodes.Text(v) if std is None or r[i] == r[std] else nodes.strong(text=v))
                               for i, v in enumerate(r[1:], 1))] for r in rerun["params"]]
    box += _table(header, rows, classes=["ca-params"])
    box += nodes.raw("", "</details>", format="html")
    return box


def _insert_rerun(app, root_node, docname, info):
    box = _rerun_box(app, docname, info)
    for adm in root_node.findall(nodes.admonition):
        title = adm.next_node(nodes.title)
        if title is not None and title.astext().startswith(BANNER):
            adm.parent.insert(adm.parent.index(adm) + 1, box)
            return
    section = root_node.next_node(nodes.section)
    if section is not None:
        section.insert(1, box)


def _figure_index(app, docname, node):
    figs_by_doc = getattr(app.env, "ca_figures", {})
    rows = []
    for label, fig in app.ca_book["figures"].items():
        doc = fig["docname"]
        seen = figs_by_doc.get(doc, {}).get(label)
        if not seen:
            continue
        num = _fignumber(app.env, doc, seen["id"])
        ref = make_refnode(app.builder, docname, doc, seen["id"], nodes.inline(text=f"Figure {num}"))
        chapter = app.ca_book["chapters"][fig["chapter"]]
        cref = make_refnode(app.builder, docname, doc, "", nodes.inline(text=chapter["title"]))
        cap = seen["caption"]
        if len(cap) > 220:
            cap = cap[:217].rstrip() + "..."
        files = [_file_ref(app, docname, fig["png"], "PNG", node), " \u00b7 ",
                 _file_ref(app, docname, fig["pdf"], "PDF", node)]
        for t in fig.get("tables") or []:
            files += [" \u00b7 ", _file_ref(app, docname, t, posixpath.basename(t), node)]
        rows.append([_para(ref), _para(nodes.Text(cap), nodes.Text(" "),
                                       nodes.literal(text=label)), _para(cref), _para(*files)])
    if not rows:
        node.replace_self(_para("No chapter has placed a figure yet."))
        return
    node.replace_self(_table(["Figure", "Caption and file name", "Chapter", "Files"], rows,
                             classes=["ca-figure-index"]))


class BookTransform(SphinxPostTransform):
    default_priority = 900   # after cross-references are resolved

    def run(self, **kwargs):
        app = self.app
        if not hasattr(app, "ca_book") or app.builder.format != "html":
            return
        docname = self.env.docname
        figs = app.ca_book["figures"]
        for fig_node in list(self.document.findall(nodes.figure)):
            label = _label_of(fig_node)
            if label in figs and figs[label]["docname"] == _docname_of(fig_node, docname):
                fig_node += _provenance(app, docname, fig_node, figs[label])
        chapters = {c["docname"]: c for c in app.ca_book["chapters"].values()}
        for root_node, doc in _doc_roots(self.document, docname):
            if doc in chapters:
                _insert_rerun(app, root_node, docname, chapters[doc])
        for node in list(self.document.findall(figure_index)):
            _figure_index(app, docname, node)
        for ref in self.document.findall(nodes.reference):
            path = ref.get("ca_bookfile")
            if path:
                new = _file_ref(app, docname, path, ref.astext(), ref)
                ref["refuri"] = new["refuri"]
                del ref["ca_bookfile"]


def _copy_served(app, exception):
    """Copy the served files (``book/generated/files/``) next to the HTML pages. Not through
    ``html_extra_path``: Sphinx would drop ``results/`` and ``notebooks/``, which the book's
    ``exclude_patterns`` name."""
    if exception is not None or app.builder.format != "html":
        return
    src = Path(app.srcdir) / pages.FILES
    for rel in app.ca_book["files"]:
        dest = Path(app.outdir) / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, dest)


def _print_pdf(app, exception):
    if exception is not None or app.builder.name != "html" or not app.ca_book["pdf"]["enabled"]:
        return
    from countingargs.build.pdf import build_pdf

    info = build_pdf(Path(app.srcdir), Path(app.outdir) / pages.PDF_NAME,
                     expected_figures=len(app.ca_book["figures"]))
    logger.info(f"countingargs: wrote {pages.PDF_NAME} ({info['pages']} pages, "
                f"{info['figures']} figures) in {info['seconds']:.1f} s")


def setup(app):
    app.add_config_value("countingargs_pdf", "auto", "env", types=[str, bool])
    app.connect("config-inited", _generate)
    app.connect("doctree-read", _collect_captions)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("env-get-outdated", _outdated)
    app.connect("build-finished", _copy_served, priority=400)
    app.connect("build-finished", _print_pdf, priority=600)
    app.add_role("bookfile", bookfile_role)
    app.add_directive("figure-index", FigureIndex)
    app.add_node(figure_index, html=(_skip, None), latex=(_skip, None), text=(_skip, None))
    app.add_post_transform(BookTransform)
    app.add_css_file("countingargs.css")
    app.add_js_file("countingargs.js")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
