"""What a notebook uses to write its outputs.

A notebook's parameters cell always declares ``profile``, ``results_dir`` and ``figures_dir``;
the rebuild runner sets them (to a temporary place it moves into position only on success).
Run interactively, the defaults write under ``results/scratch/`` and ``book/figures/``.

    run = Run(results_dir, figures_dir, profile=profile, notebook="01_distillation")
    run.table("summary", df)          # results_dir/summary.csv, stable float format
    run.figure(fig, "distill-loss")   # figures_dir/distill-loss.png + .pdf, figure closed
    run.glue("verdict", "supports")   # myst-nb glue + results_dir/glue.json
    run.finish(seeds=[0, 1, 2])       # results_dir/run.json (seeds, device, threads, ...)
"""
from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from .figures import save_figure

FLOAT_FORMAT = "%.10g"


def _plain(value: Any) -> Any:
    """Convert numpy / torch scalars to JSON-friendly Python values."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"refusing to glue a non-finite number ({value})")
    return value


class Run:
    def __init__(self, results_dir: str | os.PathLike, figures_dir: str | os.PathLike,
                 profile: str = "standard", notebook: str = ""):
        self.results_dir = Path(results_dir)
        self.figures_dir = Path(figures_dir)
        self.profile = profile
        self.notebook = notebook
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        self.glued: dict[str, Any] = {}
        self.volatile: dict[str, Any] = {}
        self.tables: list[str] = []
        self.figures: list[str] = []
        self.figure_paths: dict[str, dict[str, Path]] = {}

    # -- results ---------------------------------------------------------------------------
    def table(self, name: str, df) -> Path:
        """Write a tidy table as ``<name>.csv`` (floats with 10 significant digits, no index)."""
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"table name {name!r}: use letters, digits, '_' and '-'")
        path = self.results_dir / f"{name}.csv"
        df.to_csv(path, index=False, float_format=FLOAT_FORMAT, lineterminator="\n")
        self.tables.append(path.name)
        return path

    def figure(self, fig, label: str) -> None:
        """Save a figure under its stable label (PNG + PDF) and close it (so the notebook shows
        it only where a ``{figure}`` directive places the file). Paths go to ``figure_paths``."""
        if label in self.figures:
            raise ValueError(f"figure label {label!r} used twice in {self.notebook or 'this notebook'}")
        self.figure_paths[label] = save_figure(fig, label, self.figures_dir)
        self.figures.append(label)

    def glue(self, key: str, value: Any, volatile: bool = False) -> None:
        """Glue ``value`` for the book's prose (``{glue:text}`key:fmt```) and record it in
        ``glue.json`` so tests can check the rendered page against the results.

        ``volatile=True`` marks a value that legitimately changes from run to run (a wall time,
        a rate measured on this machine): it goes to ``volatile.json`` instead, which the
        determinism check does not compare. Results that depend only on the inputs must never
        be volatile."""
        from myst_nb import glue as _glue

        value = _plain(value)
        if not isinstance(value, (int, float, str, bool)):
            value = str(value)
        if key in self.glued or key in self.volatile:
            raise ValueError(f"glue key {key!r} used twice in {self.notebook or 'this notebook'}")
        if volatile:
            self.volatile[key] = value
            self._write_json("volatile.json", self.volatile)
        else:
            self.glued[key] = value
            self._write_json("glue.json", self.glued)
        _glue(key, value, display=False)

    def finish(self, **meta: Any) -> Path:
        """Write ``run.json``: what the notebook itself knows (seeds, device, sizes, ...).
        The runner merges it into the provenance file."""
        import torch

        info = {
            "notebook": self.notebook,
            "profile": self.profile,
            "tables": sorted(self.tables),
            "figures": sorted(self.figures),
            "glue_keys": sorted(self.glued),
            "volatile_keys": sorted(self.volatile),
            "torch_threads": torch.get_num_threads(),
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "machine": platform.machine(),
        }
        info.update({k: _plain(v) for k, v in meta.items()})
        return self._write_json("run.json", info)

    def _write_json(self, name: str, obj: Any) -> Path:
        path = self.results_dir / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
        tmp.replace(path)
        return path
