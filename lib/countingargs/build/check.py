"""``verify`` and ``replot``: redo a chapter's analysis and figures from ``results/`` alone.

``verify`` loads every saved table of a notebook (``results/<profile>/<name>/*.csv``) and the
parameters it ran with, calls the chapter's ``analysis.analyse(tables, params)``, and reports
any glued value or derived table that differs from what was saved, any glue key the analysis
does not produce, and any CSV whose hash differs from the one in ``provenance.json``. A
damaged or hand-edited result is caught.

``replot`` calls every ``@figure`` function of the chapter's ``plots.py`` on the saved tables
and writes the figures (by default into ``book/figures/``; for an unpublished override run,
``--profile quick+<hash>``, into its own ``results/quick+<hash>/<name>/figures/``); nothing is
trained.
"""
from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import RebuildError
from .provenance import sha256
from .sources import list_notebooks


@dataclass
class Saved:
    name: str
    folder: Path
    tables: dict
    params: dict
    glue: dict
    provenance: dict


@dataclass
class Report:
    name: str
    problems: list[str] = field(default_factory=list)
    checked_glue: int = 0
    checked_tables: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def load_saved(root: Path, profile: str, name: str) -> Saved:
    """The saved tables, parameters, glue and provenance of one notebook's results."""
    from ..notebook import read_tables

    folder = Path(root) / "results" / profile / name
    if not (folder / "provenance.json").exists():
        raise RebuildError(f"no results for {name} in the {profile} profile ({folder} has no "
                           "provenance.json): run `python -m countingargs rebuild` first")
    prov = json.loads((folder / "provenance.json").read_text())
    glue_path = folder / "glue.json"
    glue = json.loads(glue_path.read_text()) if glue_path.exists() else {}
    return Saved(name, folder, read_tables(folder), dict(prov.get("parameters") or {}), glue, prov)


def _notebooks_with_results(root: Path, profile: str, only: list[str] | None) -> list[str]:
    names = list(list_notebooks(root))
    if only:
        bad = [n for n in only if n not in names]
        if bad:
            raise RebuildError(f"unknown notebook(s) {bad}; valid notebooks: {', '.join(names)}")
        return list(dict.fromkeys(only))
    return [n for n in names if (Path(root) / "results" / profile / n / "provenance.json").exists()]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-15)
        except (TypeError, ValueError):
            return False
    return a == b and type(a) is type(b)


def verify_one(root: Path, profile: str, name: str) -> Report:
    from .. import chapters
    from ..notebook import plain, write_table

    rep = Report(name)
    saved = load_saved(root, profile, name)
    for fname, digest in (saved.provenance.get("tables") or {}).items():
        p = saved.folder / fname
        if not p.exists():
            rep.problems.append(f"{fname}: recorded in provenance.json but missing")
        elif sha256(p) != digest:
            rep.problems.append(f"{fname}: its hash differs from the one recorded when it was written")
    analysis = chapters.module(name, "analysis")
    if not hasattr(analysis, "analyse"):
        rep.problems.append(f"{analysis.__name__} has no analyse(tables, params)")
        return rep
    try:
        found = analysis.analyse(saved.tables, saved.params)
    except Exception as exc:  # noqa: BLE001 - a damaged table can break the analysis anywhere
        rep.problems.append(f"analysis.analyse failed on the saved tables: {type(exc).__name__}: {exc}")
        return rep
    for key, value in found.glue.items():
        value = plain(value)
        if key not in saved.glue:
            rep.problems.append(f"glue {key!r}: computed ({value!r}) but not in glue.json")
        elif not _same(value, saved.glue[key]):
            rep.problems.append(f"glue {key!r}: glue.json has {saved.glue[key]!r}, "
                                f"the saved tables give {value!r}")
        rep.checked_glue += 1
    for key in sorted(set(saved.glue) - set(found.glue)):
        rep.problems.append(f"glue {key!r}: in glue.json but analysis.analyse does not compute it")
    for tname, df in found.tables.items():
        path = saved.folder / f"{tname}.csv"
        buf = io.StringIO()
        write_table(df, buf)
        if not path.exists():
            rep.problems.append(f"{tname}.csv: computed by the analysis but not saved")
        elif path.read_text() != buf.getvalue():
            rep.problems.append(f"{tname}.csv: differs from what the saved tables give")
        rep.checked_tables += 1
    return rep


def verify(root: Path, profile: str, only: list[str] | None = None) -> list[Report]:
    """Verify every notebook with results in ``profile`` (or those in ``only``)."""
    names = _notebooks_with_results(root, profile, only)
    if not names:
        raise RebuildError(f"no results in results/{profile}/ to verify")
    return [verify_one(root, profile, n) for n in names]


def replot(root: Path, profile: str, only: list[str] | None = None,
           out: Path | None = None) -> dict[str, list[Path]]:
    """Redraw every figure of the selected notebooks from their saved tables; returns the
    files written per notebook."""
    from .. import chapters
    from ..figures import figure_functions, provenance_metadata, save_figure, use_style
    from ..notebook import _ReadTracker

    names = _notebooks_with_results(root, profile, only)
    if not names:
        raise RebuildError(f"no results in results/{profile}/ to replot")
    use_style()
    written: dict[str, list[Path]] = {}
    for name in names:
        saved = load_saved(root, profile, name)
        # an unpublished override run (results/<profile>+<hash>/) keeps its figures in its own
        # folder: redrawing them must not put them into the book
        published = saved.provenance.get("published", True)
        dest = Path(out) if out else (Path(root) / "book" / "figures" if published
                                      else saved.folder / "figures")
        plots = chapters.module(name, "plots")
        files: list[Path] = []
        for label, fn in figure_functions(plots).items():
            seen = _ReadTracker(saved.tables)
            fig = fn(seen, saved.params)
            prov = saved.provenance  # the same metadata as the run that saved the tables
            info = provenance_metadata(label, name, profile, f"{fn.__module__}.{fn.__qualname__}",
                                       sorted(seen.read), prov.get("commit"), prov.get("dirty"))
            files.extend(save_figure(fig, label, dest, info).values())
        written[name] = files
    return written
