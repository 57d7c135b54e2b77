"""One package per chapter: ``chapters/chNN_slug/`` for the notebook ``notebooks/NN_slug.md``.

Each holds ``experiment.py`` (runs, returns tidy DataFrames), ``analysis.py`` (verdicts and
glued numbers from saved tables only; ``analyse(tables, params) -> Findings`` gives all of
them) and ``plots.py`` (figures from saved tables only, each marked ``@figure("label")``).
No chapter imports another chapter: what two chapters share lives in ``nets``,
``estimators``, ``data`` or ``stats``.
"""
from __future__ import annotations

import importlib


def package_name(notebook: str) -> str:
    """``"01_distillation"`` -> ``"countingargs.chapters.ch01_distillation"``."""
    return f"{__name__}.ch{notebook}"


def module(notebook: str, part: str):
    """Import ``analysis`` or ``plots`` (or ``experiment``) of a notebook's chapter package."""
    if part not in ("experiment", "analysis", "plots"):
        raise ValueError(f"part must be experiment, analysis or plots, got {part!r}")
    return importlib.import_module(f"{package_name(notebook)}.{part}")
