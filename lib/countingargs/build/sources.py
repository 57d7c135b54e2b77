"""Source notebooks: MyST Markdown text notebooks (``notebooks/NN_slug.md``), read with jupytext.

A source notebook is plain text, so a change reviews as a text diff. The runner converts it in
memory (:func:`read_notebook`) and hands papermill an ``.ipynb``; nothing else ever writes an
``.ipynb`` into ``notebooks/``.
"""
from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import RebuildError
from .values import Condition, check_value, parse_declaration

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


@dataclass(frozen=True)
class Parameter:
    """One line of a parameters cell: its default and the range its trailing comment declares."""
    name: str
    default: Any
    conditions: tuple[Condition, ...] = ()
    line: int = 0

    @property
    def declared(self) -> str:
        return ", ".join(c.text for c in self.conditions)


def _comments_by_line(source: str) -> dict[int, str]:
    out = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                out[tok.start[0]] = tok.string
    except (tokenize.TokenError, IndentationError):
        pass
    return out


def parameter_specs(path: Path, nb=None) -> dict[str, Parameter]:
    """Name -> :class:`Parameter` for every ``name = literal`` line of the notebook's
    ``parameters`` cell, with the range declared in its trailing comment (see
    :func:`.values.parse_declaration`). The defaults must satisfy their declarations."""
    path = Path(path)
    nb = nb if nb is not None else read_notebook(path)
    cell = parameters_cell(nb, path.name)
    out: dict[str, Parameter] = {}
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as exc:
        raise RebuildError(f"{path.name}: parameters cell is not valid Python: {exc}") from None
    comments = _comments_by_line(cell.source)
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            raise RebuildError(f"{path.name}: parameters cell may hold only 'name = literal' lines "
                               f"(line {node.lineno})")
        name = node.targets[0].id
        if name in out:
            raise RebuildError(f"{path.name}: parameter {name!r} is assigned twice in the parameters "
                               f"cell (lines {out[name].line} and {node.lineno})")
        try:
            default = ast.literal_eval(node.value)
        except ValueError:
            raise RebuildError(f"{path.name}: parameter {name!r} must be a literal "
                               f"(line {node.lineno})") from None
        try:
            conditions = parse_declaration(comments.get(node.end_lineno, ""))
        except ValueError as exc:
            raise RebuildError(f"{path.name}: parameter {name!r} (line {node.lineno}): {exc}") from None
        problems = check_value(name, default, default, conditions)
        if problems:
            raise RebuildError(f"{path.name}: the default of {problems[0]}")
        out[name] = Parameter(name, default, conditions, node.lineno)
    missing = [p for p in RUNNER_PARAMS if p not in out]
    if missing:
        raise RebuildError(f"{path.name}: parameters cell must declare {missing}")
    return out


def declared_parameters(path: Path, nb=None) -> dict[str, Any]:
    """Name -> default value of the notebook's ``parameters`` cell (``name = literal`` lines)."""
    return {k: p.default for k, p in parameter_specs(path, nb).items()}


def without_comments(source: str) -> str:
    """The parameters cell ``source`` as bare ``name = value`` lines: what papermill reads (its
    own parser takes the ``=`` of a declared range such as ``# >= 2`` for a second assignment)."""
    tree = ast.parse(source)
    return "\n".join(ast.get_source_segment(source, node) for node in tree.body) + "\n"


def render_parameters(source: str, values: dict[str, Any]) -> str:
    """The parameters cell ``source`` with the value of each name in ``values`` written in place
    of its default (comments, order and layout kept), so the executed notebook shows one
    parameters cell holding the values actually used."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for ln in lines:
        offsets.append(offsets[-1] + len(ln.encode()))
    raw = source.encode()
    edits = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id in values:
            v = node.value
            start = offsets[v.lineno - 1] + v.col_offset
            end = offsets[v.end_lineno - 1] + v.end_col_offset
            edits.append((start, end, repr(values[node.targets[0].id]).encode()))
    for start, end, text in sorted(edits, reverse=True):
        raw = raw[:start] + text + raw[end:]
    return raw.decode()


def code_sources(nb) -> list[str]:
    """The source of every code cell (for the import scan)."""
    return [c.source for c in nb.cells if c.cell_type == "code"]
