"""``notebooks/profiles.yml`` and the validation of a rebuild request (before anything runs)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import RebuildError
from .sources import RUNNER_PARAMS, declared_parameters, list_notebooks, read_notebook

PROFILES = ("quick", "standard", "full")
DEFAULT_TIMEOUT = 3600


@dataclass
class Job:
    name: str
    source: Path
    params: dict[str, Any]          # the overrides the profile (and -p) set
    resolved: dict[str, Any]        # every declared parameter after overrides (minus runner ones)
    nb: Any = field(default=None, repr=False)   # the source notebook, read once
    input_hash: str = ""


def load_profiles(root: Path) -> dict[str, dict]:
    path = Path(root) / "notebooks" / "profiles.yml"
    if not path.exists():
        raise RebuildError(f"missing profiles file {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RebuildError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise RebuildError(f"{path} must map profile names to settings")
    for name, prof in data.items():
        if name not in PROFILES:
            raise RebuildError(f"{path}: unknown profile {name!r}; valid: {', '.join(PROFILES)}")
        if not isinstance(prof, dict) or not isinstance(prof.get("notebooks", {}), dict):
            raise RebuildError(f"{path}: profile {name!r} needs a 'notebooks' mapping")
        extra = set(prof) - {"timeout", "notebooks"}
        if extra:
            raise RebuildError(f"{path}: profile {name!r} has unknown keys {sorted(extra)}; "
                               "valid: timeout, notebooks")
    return data


def timeout_of(profiles: dict, profile: str) -> int:
    return int(profiles[profile].get("timeout", DEFAULT_TIMEOUT))


def _type_ok(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            return False
        kinds = {type(v) for v in default}
        if len(kinds) == 1 and default:
            return all(_type_ok(default[0], v) for v in value)
        return True
    if default is None:
        return True
    return isinstance(value, type(default))


def _type_name(v: Any) -> str:
    if isinstance(v, list) and v:
        return f"list of {type(v[0]).__name__}"
    return type(v).__name__


def plan(root: Path, profile: str, only: list[str] | None = None,
         overrides: dict[str, Any] | None = None) -> list[Job]:
    """Validate everything and return the jobs, or raise RebuildError. Runs nothing."""
    if profile not in PROFILES:
        raise RebuildError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    profiles = load_profiles(root)
    if profile not in profiles:
        raise RebuildError(f"profile {profile!r} is not defined in notebooks/profiles.yml; "
                           f"defined: {', '.join(profiles)}")
    notebooks = list_notebooks(root)
    table = profiles[profile].get("notebooks", {}) or {}
    for name in table:
        if name not in notebooks:
            raise RebuildError(f"profiles.yml ({profile}) names notebook {name!r}, which does not exist; "
                               f"notebooks: {', '.join(notebooks) or '(none)'}")
    names = list(notebooks) if not only else list(dict.fromkeys(only))
    for name in names:
        if name not in notebooks:
            raise RebuildError(f"unknown notebook {name!r}; valid notebooks: {', '.join(notebooks) or '(none)'}")
    if overrides and len(names) != 1:
        raise RebuildError("-p/--param overrides need exactly one notebook (--only NAME)")
    jobs, errors = [], []
    for name in names:
        if name not in table:
            errors.append(f"{name}: no entry in profile {profile!r} of notebooks/profiles.yml")
            continue
        nb = read_notebook(notebooks[name])
        declared = declared_parameters(notebooks[name], nb)
        params = dict(table[name] or {})
        params.update(overrides or {})
        for key, value in params.items():
            if key in RUNNER_PARAMS:
                errors.append(f"{name}: parameter {key!r} is set by the runner and cannot be overridden")
            elif key not in declared:
                valid = ", ".join(k for k in declared if k not in RUNNER_PARAMS)
                errors.append(f"{name}: unknown parameter {key!r}; valid parameters: {valid}")
            elif not _type_ok(declared[key], value):
                errors.append(f"{name}: parameter {key!r} = {value!r} has type {_type_name(value)}, "
                              f"expected {_type_name(declared[key])} (default {declared[key]!r})")
        resolved = {k: v for k, v in declared.items() if k not in RUNNER_PARAMS}
        resolved.update({k: v for k, v in params.items() if k not in RUNNER_PARAMS})
        jobs.append(Job(name, notebooks[name], params, resolved, nb))
    if errors:
        raise RebuildError("invalid request, nothing was run:\n  " + "\n  ".join(errors))
    return jobs
