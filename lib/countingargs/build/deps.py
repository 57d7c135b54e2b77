"""Which library files a notebook depends on: the transitive closure of its imports.

The input hash of a notebook covers only these files (plus its own source, parameters and the
pins), so editing ``chapters/ch05_reversal/`` reruns chapter 05 alone, while editing ``nets/``
reruns every chapter that imports it. The scan is static (``ast``): every ``import`` statement
anywhere in a module counts, including imports inside functions. Importing ``a.b.c`` also runs
``a/__init__.py`` and ``a/b/__init__.py``, so those count too.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "countingargs"


def lib_dir() -> Path:
    """The folder of the ``countingargs`` package."""
    return Path(__file__).resolve().parents[1]


def _module_file(name: str, base: Path) -> Path | None:
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    rel = Path(*parts[1:]) if len(parts) > 1 else Path()
    for cand in (base / rel / "__init__.py", base / f"{rel}.py" if len(parts) > 1 else None):
        if cand is not None and cand.is_file():
            return cand
    return None


def _imports_of(tree: ast.AST, current: str | None, is_package: bool) -> set[str]:
    """Module names a parsed source imports (absolute and resolved relative ones); for
    ``from X import a`` both ``X`` and ``X.a`` are returned (``X.a`` may be a module)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if current is None:
                    continue
                pkg = current.split(".") if is_package else current.split(".")[:-1]
                up = node.level - 1
                if up > len(pkg) - 1:
                    continue
                pkg = pkg[: len(pkg) - up]
                mod = ".".join(pkg + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names if a.name != "*")
    return {m for m in out if m == PACKAGE or m.startswith(PACKAGE + ".")}


def _parse(src: str) -> ast.AST:
    # notebook cells may hold IPython magics; drop such lines before parsing
    lines = [ln for ln in src.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return ast.parse("")


def closure(sources: list[str], base: Path | None = None) -> list[Path]:
    """Library files (sorted) that code ``sources`` import, directly or through other library
    modules, including the ``__init__.py`` of every package on the way."""
    base = base or lib_dir()
    todo: list[str] = []
    for src in sources:
        todo.extend(_imports_of(_parse(src), None, False))
    seen: set[str] = set()
    files: dict[Path, None] = {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages
        path = _module_file(name, base)
        if path is None:
            continue
        files[path] = None
        tree = ast.parse(path.read_text(), filename=str(path))
        todo.extend(_imports_of(tree, name, path.name == "__init__.py"))
    return sorted(files)
