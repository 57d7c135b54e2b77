"""Source notebooks: MyST Markdown text notebooks (``notebooks/NN_slug.md``), read with jupytext.

A source notebook is plain text, so a change reviews as a text diff. The runner converts it in
memory (:func:`read_notebook`) and hands papermill an ``.ipynb``; nothing else ever writes an
``.ipynb`` into ``notebooks/``.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from . import RebuildError

RUNNER_PARAMS = ("profile", "results_dir", "figures_dir")
SUFFIX = ".md"


def list_notebooks(root: Path) -> dict[str, Path]:
    """Name -> path of every source notebook ``notebooks/NN_slug.md``, in name order."""
    nbs = sorted((Path(root) / "notebooks").glob(f"[0-9][0-9]_*{SUFFIX}"))
    return {p.stem: p for p in nbs}


def read_notebook(path: Path):
    """The notebook at ``path`` as an ``nbformat`` v4 notebook (jupytext, MyST format)."""
    import jupytext

    try:
        nb = jupytext.read(str(path), fmt="md:myst")
    except Exception as exc:  # noqa: BLE001 - jupytext raises many kinds
        raise RebuildError(f"{Path(path).name}: cannot be read as a MyST text notebook: {exc}") from None
    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3",
                                          "language": "python"})
    return nb


def parameters_cell(nb, name: str):
    cells = [c for c in nb.cells if c.cell_type == "code"
             and "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise RebuildError(f"{name}: needs exactly one code cell tagged 'parameters', found {len(cells)}")
    return cells[0]


def declared_parameters(path: Path, nb=None) -> dict[str, Any]:
    """Name -> default value of the notebook's ``parameters`` cell (``name = literal`` lines)."""
    path = Path(path)
    nb = nb if nb is not None else read_notebook(path)
    cell = parameters_cell(nb, path.name)
    out: dict[str, Any] = {}
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as exc:
        raise RebuildError(f"{path.name}: parameters cell is not valid Python: {exc}") from None
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            raise RebuildError(f"{path.name}: parameters cell may hold only 'name = literal' lines "
                               f"(line {node.lineno})")
        try:
            out[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError:
            raise RebuildError(f"{path.name}: parameter {node.targets[0].id!r} must be a literal "
                               f"(line {node.lineno})") from None
    missing = [p for p in RUNNER_PARAMS if p not in out]
    if missing:
        raise RebuildError(f"{path.name}: parameters cell must declare {missing}")
    return out


def code_sources(nb) -> list[str]:
    """The source of every code cell (for the import scan)."""
    return [c.source for c in nb.cells if c.cell_type == "code"]
