"""Where a notebook's outputs go, how they are checked against their record, and how they are
moved into place: all together or not at all.

A run's outputs are its results folder (tables, ``glue.json``, ``run.json``, ...,
``provenance.json``), its figures and its executed notebook. ``provenance.json`` records the
SHA-256 of every one of them under ``outputs`` (paths relative to the book root) and seals itself
(``self_sha256``, the hash of the rest of the file), so :func:`why_stale` can tell a damaged,
edited, missing or extra file from a current one, and say which.

:func:`commit` moves the staged outputs into place in two steps (move every existing target
aside into a backup folder, then move every staged file in) and, on any error, undoes what it did
in reverse order: the book then holds exactly what it held before.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .provenance import sha256

PROVENANCE = "provenance.json"


@dataclass(frozen=True)
class Targets:
    """Where one run's outputs go. A run of a profile (or a published override run) writes into
    the book (``book/figures``, ``book/generated``); an unpublished override run keeps its
    figures and executed notebook inside its own results folder."""
    results: Path
    figures: Path
    notebook: Path
    published: bool


def targets_for(root: Path, name: str, variant: str, published: bool) -> Targets:
    res = Path(root) / "results" / variant / name
    if published:
        return Targets(res, Path(root) / "book" / "figures",
                       Path(root) / "book" / "generated" / f"{name}.ipynb", True)
    return Targets(res, res / "figures", res / f"{name}.ipynb", False)


# ---------------------------------------------------------------------------------------------
# The record
# ---------------------------------------------------------------------------------------------
def _canonical(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"


def _seal(prov: dict) -> str:
    import hashlib

    rest = {k: v for k, v in prov.items() if k != "self_sha256"}
    return hashlib.sha256(_canonical(rest).encode()).hexdigest()


def write_provenance(folder: Path, prov: dict) -> None:
    prov = json.loads(_canonical(prov))
    prov["self_sha256"] = _seal(prov)
    (Path(folder) / PROVENANCE).write_text(_canonical(prov))


def read_provenance(folder: Path) -> tuple[dict | None, str | None]:
    """``(record, None)`` or ``(None, why it cannot be trusted)``."""
    path = Path(folder) / PROVENANCE
    if not path.exists():
        return None, "no record of an earlier run" if not Path(folder).exists() else f"{PROVENANCE} is missing"
    try:
        prov = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, f"{PROVENANCE} is damaged (not valid JSON)"
    if not isinstance(prov, dict) or prov.get("self_sha256") != _seal(prov):
        return None, f"{PROVENANCE} was edited after it was written (its seal does not match)"
    return prov, None


def output_hashes(root: Path, files: dict[Path, Path]) -> dict[str, str]:
    """``{final path relative to root: sha256}`` for ``{final path: staged file}``."""
    return {final.relative_to(root).as_posix(): sha256(staged) for final, staged in sorted(files.items())}


def _describe_input_change(old: dict, parts: dict, library: dict) -> str:
    old_parts = old.get("input_parts") or {}
    if not old_parts:
        return "its inputs changed"
    what = []
    if old_parts.get("source") != parts.get("source"):
        what.append("the notebook's source changed")
    if old_parts.get("parameters") != parts.get("parameters"):
        what.append("its parameters changed")
    if old_parts.get("library") != parts.get("library"):
        before = old.get("library_files") or {}
        changed = sorted(k for k in set(before) | set(library) if before.get(k) != library.get(k))
        shown = ", ".join(changed[:4]) + (" ..." if len(changed) > 4 else "")
        what.append(f"library files it imports changed ({shown})" if changed
                    else "library files it imports changed")
    if old_parts.get("pins") != parts.get("pins"):
        what.append("requirements.txt changed")
    if old_parts.get("runner") != parts.get("runner"):
        what.append("the runner's settings changed (--threads)")
    return "; ".join(what) or "its inputs changed"


def why_stale(root: Path, targets: Targets, input_hash: str, parts: dict, library: dict) -> str | None:
    """None if the outputs at ``targets`` are a complete, undamaged run of these inputs;
    otherwise why the notebook must run."""
    prov, problem = read_provenance(targets.results)
    if problem:
        return problem
    if prov.get("input_hash") != input_hash:
        return _describe_input_change(prov, parts, library)
    if targets.published and not prov.get("published", True):
        return "its earlier run was kept out of the book; running it again to publish it (--publish)"
    recorded = prov.get("outputs")
    if not isinstance(recorded, dict) or not recorded:
        return f"{PROVENANCE} lists no outputs (written by an older runner)"
    root = Path(root)
    if targets.notebook.is_file() and _is_other_run(targets.notebook, input_hash):
        return (f"{targets.notebook.relative_to(root).as_posix()} holds another run (for example an "
                "override run published with --publish)")
    for rel, digest in sorted(recorded.items()):
        p = root / rel
        if not p.is_file():
            return f"{rel} is missing"
        if sha256(p) != digest:
            return f"{rel} differs from the hash recorded when it was written (edited or damaged)"
    for p in sorted(targets.results.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and p.name != PROVENANCE and rel not in recorded:
            return f"{rel} is not part of the recorded run"
    return None


def _is_other_run(nb_path: Path, input_hash: str) -> bool:
    try:
        meta = json.loads(nb_path.read_text()).get("metadata", {}).get("countingargs", {})
    except (OSError, ValueError, AttributeError):
        return False
    return bool(meta) and meta.get("input_hash") != input_hash


# ---------------------------------------------------------------------------------------------
# Commit with rollback
# ---------------------------------------------------------------------------------------------
class CommitError(Exception):
    """The outputs could not be moved into place; ``rolled_back`` says whether the book was
    restored to what it held before."""

    def __init__(self, message: str, rolled_back: bool):
        super().__init__(message)
        self.rolled_back = rolled_back


def _move(src: Path, dst: Path) -> None:
    """One rename (a single place for tests to inject a write error)."""
    os.rename(src, dst)


def commit(root: Path, moves: list[tuple[Path, Path]], remove: list[Path], backup: Path) -> None:
    """Move each staged ``src`` to ``dst`` (replacing what is there) and remove ``remove``, all or
    nothing. ``backup`` is an empty folder on the same filesystem, deleted on success."""
    root = Path(root)
    undo: list[tuple[Path, Path]] = []      # (from, to) renames that reverse what was done
    try:
        backup.mkdir(parents=True, exist_ok=False)
        aside = [dst for _, dst in moves] + list(remove)
        for i, dst in enumerate(aside):
            if dst.exists() or dst.is_symlink():
                keep = backup / f"{i:04d}-{dst.name}"
                _move(dst, keep)
                undo.append((keep, dst))
        for src, dst in moves:
            dst.parent.mkdir(parents=True, exist_ok=True)
            _move(src, dst)
            undo.append((dst, src))
    except OSError as exc:
        failed = []
        for a, b in reversed(undo):
            try:
                _move(a, b)
            except OSError as exc2:
                failed.append(f"{a} -> {b}: {exc2}")
        what = f"{type(exc).__name__}: {exc}"
        if failed:
            raise CommitError(f"{what}; and putting the earlier outputs back failed too "
                              f"({'; '.join(failed)})", False) from exc
        shutil.rmtree(backup, ignore_errors=True)
        raise CommitError(what, True) from exc
    shutil.rmtree(backup, ignore_errors=True)
