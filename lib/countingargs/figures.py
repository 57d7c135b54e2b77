"""Figure style and the one helper that writes every figure of the book.

Every figure is saved under a stable, citable name as ``<label>.png`` and ``<label>.pdf``.
PDFs carry no creation date, so the same figure gives the same bytes on every run.

Each file also carries its provenance in its own metadata (:func:`provenance_metadata`): the
PNG in text chunks (``Title``, ``Source``, ``Description`` and ``Provenance``, a JSON object),
the PDF in its document information (``Title``, ``Author``, ``Subject``, ``Keywords``, the same
JSON). Nothing in it changes from run to run, so a figure is byte-reproducible for a given
commit and inputs. Read it back with :func:`read_metadata`.
"""
from __future__ import annotations

import json
import re
import zlib
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABEL_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.hashsalt": "countingargs",
    "pdf.fonttype": 42,
}


def use_style() -> None:
    """Apply the book's matplotlib style (seaborn's colour-blind palette, light grid)."""
    import seaborn as sns

    sns.set_palette("colorblind")
    plt.rcParams.update(STYLE)


def figure(label: str):
    """Mark a plot function of a chapter's ``plots.py`` as the maker of figure ``label``.

    The function takes ``(tables, params)`` (the saved tables by name, the parameters) and
    returns a matplotlib figure; ``run.plot(fn)`` saves it under ``label`` and
    ``python -m countingargs replot`` redraws it from ``results/`` alone."""
    if not LABEL_RE.match(label):
        raise ValueError(f"figure label {label!r} must match {LABEL_RE.pattern}")

    def mark(fn):
        fn.figure_label = label
        return fn

    return mark


def figure_functions(module) -> dict:
    """Label -> plot function for every function of ``module`` marked with :func:`figure`."""
    out = {}
    for value in vars(module).values():
        label = getattr(value, "figure_label", None)
        if callable(value) and label:
            if label in out and out[label] is not value:
                raise ValueError(f"{module.__name__}: two functions draw figure {label!r}")
            out[label] = value
    return dict(sorted(out.items()))


BOOK_TITLE = "Counting Arguments, Counted"
PROVENANCE_KEYS = ("figure", "notebook", "function", "tables", "profile", "commit", "dirty")


def provenance_metadata(label: str, notebook: str = "", profile: str = "",
                        function: str | None = None, tables: list[str] | None = None,
                        commit: str | None = None, dirty: bool | None = None) -> dict[str, Any]:
    """The provenance a figure file carries: its label, the notebook and the plot function
    that drew it, the saved tables it read (``results/<profile>/<notebook>/<table>.csv``), the
    profile and the commit of the results. ``function``/``tables`` are None when the figure
    was saved without a plot function (``run.figure``)."""
    csvs = None if tables is None else [f"results/{profile}/{notebook}/{t}.csv" for t in sorted(tables)]
    return {"figure": label, "notebook": notebook or None, "function": function, "tables": csvs,
            "profile": profile or None, "commit": commit, "dirty": dirty}


def describe_provenance(info: dict[str, Any]) -> str:
    """One sentence naming a figure's sources (the PDF ``Subject``, the PNG ``Description``)."""
    parts = [f"{BOOK_TITLE}, figure {info['figure']}"]
    if info.get("function"):
        parts.append(f"drawn by {info['function']}")
    if info.get("notebook"):
        parts.append(f"in notebook {info['notebook']}")
    if info.get("tables"):
        parts.append("from " + ", ".join(info["tables"]))
    if info.get("profile"):
        parts.append(f"{info['profile']} profile")
    commit = info.get("commit")
    parts.append(f"commit {commit[:12]}{' with uncommitted changes' if info.get('dirty') else ''}"
                 if commit else "no git commit")
    return "; ".join(parts)


def save_figure(fig, label: str, figures_dir: str | Path,
                provenance: dict[str, Any] | None = None) -> dict[str, Path]:
    """Save ``fig`` as ``<label>.png`` and ``<label>.pdf`` in ``figures_dir`` and close it.

    ``label`` must be lower-case letters, digits and dashes (it becomes the citable file name).
    ``provenance`` (from :func:`provenance_metadata`; by default only the label) goes into the
    files' metadata. Returns the paths written. Metadata that changes from run to run (dates,
    software versions) is stripped so the files are reproducible.
    """
    if not LABEL_RE.match(label):
        raise ValueError(f"figure label {label!r} must match {LABEL_RE.pattern} "
                         "(lower-case letters, digits and dashes)")
    info = provenance or provenance_metadata(label)
    if info.get("figure") != label:
        raise ValueError(f"provenance is for figure {info.get('figure')!r}, not {label!r}")
    blob = json.dumps({k: info.get(k) for k in PROVENANCE_KEYS}, sort_keys=True)
    sentence = describe_provenance(info)
    out = Path(figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"png": out / f"{label}.png", "pdf": out / f"{label}.pdf"}
    fig.savefig(paths["png"], bbox_inches="tight",
                metadata={"Software": None, "Title": label, "Author": f"{BOOK_TITLE} contributors",
                          "Source": info.get("function") or info.get("notebook") or BOOK_TITLE,
                          "Description": sentence, "Provenance": blob})
    fig.savefig(paths["pdf"], bbox_inches="tight",
                metadata={"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None,
                          "Title": label, "Author": f"{BOOK_TITLE} contributors",
                          "Subject": sentence, "Keywords": blob})
    plt.close(fig)
    return paths


def read_metadata(path: str | Path) -> dict[str, str]:
    """The text metadata of a PNG (its ``tEXt``/``iTXt`` chunks) or a PDF (its document
    information dictionary, literal strings only) written by :func:`save_figure`."""
    data = Path(path).read_bytes()
    out: dict[str, str] = {}
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        pos = 8
        while pos + 8 <= len(data):
            n = int.from_bytes(data[pos:pos + 4], "big")
            kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
            pos += 12 + n
            if kind == b"tEXt":
                key, _, val = body.partition(b"\0")
                out[key.decode("latin-1")] = val.decode("latin-1")
            elif kind == b"iTXt":
                key, _, rest = body.partition(b"\0")
                compressed, rest = rest[0], rest[2:]
                _lang, _, rest = rest.partition(b"\0")
                _tkey, _, val = rest.partition(b"\0")
                out[key.decode("latin-1")] = (zlib.decompress(val) if compressed else val).decode("utf-8")
        return out
    if data[:5] == b"%PDF-":
        for key in ("Title", "Author", "Subject", "Keywords"):
            m = re.search(rb"/" + key.encode() + rb" \(((?:[^()\\]|\\.)*)\)", data)
            if m:
                out[key] = re.sub(rb"\\(.)", rb"\1", m.group(1)).decode("latin-1")
        return out
    raise ValueError(f"{path}: neither a PNG nor a PDF")
