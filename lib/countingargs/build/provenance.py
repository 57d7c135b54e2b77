"""Provenance: the commit, the package versions and file hashes recorded with every result."""
from __future__ import annotations

import hashlib
import platform
import subprocess
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "numpy", "pandas", "scipy", "scikit-learn", "matplotlib", "seaborn",
            "papermill", "jupytext", "jupyter-book", "myst-nb", "nbclient", "ipykernel")


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _git(root: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def commit_info(root: Path) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the book root's git checkout."""
    commit = _git(root, "rev-parse", "--verify", "-q", "HEAD")
    dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no")) if commit else None
    return {"commit": commit or None, "dirty": dirty}


def package_versions() -> dict[str, Any]:
    from importlib import metadata

    out: dict[str, Any] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
