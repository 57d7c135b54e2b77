"""What a notebook uses to write its outputs: :class:`Run`.

A notebook's parameters cell always declares ``profile``, ``results_dir`` and ``figures_dir``;
the rebuild runner sets them (to a temporary place it moves into position only on success) and
writes the resolved parameters to ``results_dir/parameters.json``, which :class:`Run` reads
into ``run.params``.

    from countingargs.notebook import Run
    from countingargs.chapters.ch01_distillation import experiment, analysis, plots

    run = Run(results_dir, figures_dir, profile=profile, notebook="01_distillation")
    run.table("metrics", experiment.run(...))   # metrics.csv, read back into run.tables
    run.analyse(analysis.verdicts)              # glue + derived tables, from run.tables only
    run.plot(plots.loss_vs_size)                # book/figures/<label>.png + .pdf, from run.tables
    run.finish(seeds=[0, 1, 2])                 # run.json (seeds, device, threads, ...)

Analyses and plots see only what was saved (the tables as read back from their CSV files, and
the parameters), so ``python -m countingargs verify`` and ``replot`` can redo them from
``results/`` alone and get the same glue and the same figure files.
"""
from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .figures import provenance_metadata, save_figure
from .report import Findings

FLOAT_FORMAT = "%.10g"


def write_table(df: pd.DataFrame, path: Path) -> None:
    """Write a tidy table as CSV: floats with 10 significant digits, no index, ``\\n`` lines."""
    df.to_csv(path, index=False, float_format=FLOAT_FORMAT, lineterminator="\n")


def read_table(path: Path) -> pd.DataFrame:
    """Read a table written by :func:`write_table` (empty fields are NaN; text such as "NA"
    stays text)."""
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def read_tables(folder: Path) -> dict[str, pd.DataFrame]:
    """Every ``*.csv`` in ``folder`` by name (without the suffix)."""
    return {p.stem: read_table(p) for p in sorted(Path(folder).glob("*.csv"))}


def plain(value: Any) -> Any:
    """Convert numpy / torch scalars to JSON-friendly Python values; refuse non-finite floats."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"refusing to glue a non-finite number ({value})")
    if not isinstance(value, (int, float, str, bool)):
        value = str(value)
    return value


class _ReadTracker(dict):
    """The tables as a dict that remembers which ones a plot function read (for provenance)."""

    def __init__(self, tables: dict):
        super().__init__(tables)
        self.read: set[str] = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        if key in self:
            self.read.add(key)
        return super().get(key, default)


class Run:
    def __init__(self, results_dir: str | os.PathLike, figures_dir: str | os.PathLike,
                 profile: str = "standard", notebook: str = "", params: dict | None = None):
        self.results_dir = Path(results_dir)
        self.figures_dir = Path(figures_dir)
        self.profile = profile
        self.notebook = notebook
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        self.glued: dict[str, Any] = {}
        self.volatile: dict[str, Any] = {}
        self.tables: dict[str, pd.DataFrame] = {}
        self.figures: list[str] = []
        self.figure_sources: dict[str, dict] = {}
        if params is None:
            pfile = self.results_dir / "parameters.json"
            params = json.loads(pfile.read_text()) if pfile.exists() else None
        self._params = params
        self._commit: dict | None = None   # the results' commit, for the figures' metadata

    @property
    def params(self) -> dict:
        """The resolved parameters (as the runner wrote them to ``parameters.json``)."""
        if self._params is None:
            raise RuntimeError(f"{self.notebook or 'this notebook'}: no parameters.json in "
                               f"{self.results_dir}; run it with `python -m countingargs rebuild "
                               f"--only {self.notebook or 'NAME'}`, or pass Run(..., params=...)")
        return self._params

    # -- results ---------------------------------------------------------------------------
    def table(self, name: str, df: pd.DataFrame) -> pd.DataFrame:
        """Write a tidy table as ``<name>.csv`` and return it *as read back from the file*
        (also kept in ``run.tables[name]``), so that what follows uses exactly what was saved."""
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"table name {name!r}: use letters, digits, '_' and '-'")
        if name in self.tables:
            raise ValueError(f"table {name!r} written twice in {self.notebook or 'this notebook'}")
        path = self.results_dir / f"{name}.csv"
        write_table(df, path)
        self.tables[name] = read_table(path)
        return self.tables[name]

    def figure(self, fig, label: str, *, function: str | None = None,
               tables: list[str] | None = None) -> None:
        """Save a figure under its stable label (PNG + PDF) and close it (so the notebook shows
        it only where a ``{figure}`` directive places the file). The files carry their
        provenance in their metadata (:func:`countingargs.figures.provenance_metadata`);
        ``function`` and ``tables`` are given by :meth:`plot`."""
        if label in self.figures:
            raise ValueError(f"figure label {label!r} used twice in {self.notebook or 'this notebook'}")
        if self._commit is None:
            from .build.provenance import commit_info

            self._commit = commit_info(self.results_dir)  # the repository the results go to
        info = provenance_metadata(label, self.notebook, self.profile, function, tables,
                                   self._commit.get("commit"), self._commit.get("dirty"))
        save_figure(fig, label, self.figures_dir, info)
        self.figures.append(label)

    def plot(self, fn: Callable) -> None:
        """Draw a figure function of a chapter's ``plots.py`` (decorated with
        :func:`countingargs.figures.figure`) from the saved tables and save it under its label."""
        label = getattr(fn, "figure_label", None)
        if label is None:
            raise ValueError(f"{getattr(fn, '__name__', fn)!r} is not a figure function "
                             "(decorate it with @figure('label'))")
        seen = _ReadTracker(self.tables)
        fig = fn(seen, self.params)
        source = {"function": f"{fn.__module__}.{fn.__qualname__}", "tables": sorted(seen.read)}
        self.figure(fig, label, **source)
        self.figure_sources[label] = source

    def record(self, findings: Findings) -> Findings:
        """Save the derived tables and glue the values of an analysis."""
        if not isinstance(findings, Findings):
            raise TypeError(f"record() takes Findings, got {type(findings).__name__}")
        for name, df in findings.tables.items():
            self.table(name, df)
        for key, value in findings.glue.items():
            self.glue(key, value)
        return findings

    def analyse(self, fn: Callable) -> Findings:
        """Run an analysis function ``fn(tables, params) -> Findings`` on the saved tables and
        record what it returns."""
        return self.record(fn(self.tables, self.params))

    def glue(self, key: str, value: Any, volatile: bool = False) -> None:
        """Glue ``value`` for the book's prose (``{glue:text}`key:fmt```) and record it in
        ``glue.json``.

        ``volatile=True`` marks a value that legitimately changes from run to run (a wall time,
        a rate measured on this machine): it goes to ``volatile.json`` instead, which the
        determinism check and ``verify`` do not compare. Results that depend only on the inputs
        must never be volatile (and should come from ``analysis.py`` through :meth:`record`)."""
        from myst_nb import glue as _glue

        value = plain(value)
        if key in self.glued or key in self.volatile:
            raise ValueError(f"glue key {key!r} used twice in {self.notebook or 'this notebook'}")
        if volatile:
            self.volatile[key] = value
            self._write_json("volatile.json", self.volatile)
        else:
            self.glued[key] = value
            self._write_json("glue.json", self.glued)
        _glue(key, value, display=False)

    def finish(self, **meta: Any) -> None:
        """Write ``run.json``: what the notebook itself knows (seeds, device, sizes, ...).
        The runner merges it into the provenance file."""
        import torch

        info = {
            "notebook": self.notebook,
            "profile": self.profile,
            "tables": sorted(self.tables),
            "figures": sorted(self.figures),
            "figure_sources": self.figure_sources,
            "glue_keys": sorted(self.glued),
            "volatile_keys": sorted(self.volatile),
            "torch_threads": torch.get_num_threads(),
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "machine": platform.machine(),
        }
        info.update({k: plain(v) if not isinstance(v, (list, tuple, dict)) else v
                     for k, v in meta.items()})
        self._write_json("run.json", info)   # returns nothing: no path is shown in the page

    def _write_json(self, name: str, obj: Any) -> Path:
        path = self.results_dir / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
        tmp.replace(path)
        return path
