"""``notebooks/profiles.yml`` and the validation of a rebuild request (before anything runs)."""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import RebuildError
from .sources import RUNNER_PARAMS, list_notebooks, parameter_specs, read_notebook
from .values import check_value, load_yaml

PROFILES = ("quick", "standard", "full")
DEFAULT_TIMEOUT = 3600


@dataclass
class Job:
    name: str
    source: Path
    params: dict[str, Any]          # what the profile (and -p) set
    resolved: dict[str, Any]        # every declared parameter after overrides (minus runner ones)
    nb: Any = field(default=None, repr=False)   # the source notebook, read once
    input_hash: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)  # -p values that differ from the profile's
    variant: str = ""               # "quick", or "quick+1a2b3c4d" for a run with overrides
    specs: dict = field(default_factory=dict, repr=False)    # name -> sources.Parameter


def _where(path: Path, *keys: str) -> str:
    return f"{path}: " + " > ".join(keys) if keys else str(path)


def load_profiles(root: Path) -> dict[str, dict]:
    """``notebooks/profiles.yml``, read as YAML 1.2 (:mod:`.values`) and checked: known profile
    names; each profile a mapping with ``notebooks`` (a mapping of notebook name to a mapping of
    parameters) and an optional ``timeout`` (a positive number of seconds, per cell); no key twice."""
    path = Path(root) / "notebooks" / "profiles.yml"
    if not path.exists():
        raise RebuildError(f"missing profiles file {path}")
    data = load_yaml(path.read_text(), str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RebuildError(f"{path} must map profile names to settings, not a {type(data).__name__}")
    for name, prof in data.items():
        if name not in PROFILES:
            raise RebuildError(f"{path}: unknown profile {name!r}; valid: {', '.join(PROFILES)}")
        if not isinstance(prof, dict):
            raise RebuildError(f"{_where(path, name)}: expected a mapping with 'notebooks' (and "
                               f"'timeout'), got {_kind(prof)}")
        extra = set(prof) - {"timeout", "notebooks"}
        if extra:
            raise RebuildError(f"{path}: profile {name!r} has unknown keys {sorted(extra, key=str)}; "
                               "valid: timeout, notebooks")
        if "timeout" in prof:
            t = prof["timeout"]
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
                raise RebuildError(f"{_where(path, name, 'timeout')}: must be a positive number of "
                                   f"seconds (per cell), got {t!r}")
        nbs = prof.get("notebooks")
        if not isinstance(nbs, dict):
            raise RebuildError(f"{_where(path, name, 'notebooks')}: expected a mapping of notebook "
                               f"name to parameters, got {_kind(nbs)}")
        for nb_name, entry in nbs.items():
            if entry is None:
                nbs[nb_name] = {}
            elif not isinstance(entry, dict):
                raise RebuildError(f"{_where(path, name, 'notebooks', str(nb_name))}: expected a "
                                   f"mapping of parameter: value (or {{}}), got {_kind(entry)}")
            elif any(not isinstance(k, str) for k in entry):
                bad = [k for k in entry if not isinstance(k, str)]
                raise RebuildError(f"{_where(path, name, 'notebooks', str(nb_name))}: parameter names "
                                   f"must be text, got {bad!r}")
    return data


def _kind(v: Any) -> str:
    return "nothing" if v is None else f"a {type(v).__name__} ({v!r:.60})"


def timeout_of(profiles: dict, profile: str) -> float:
    return profiles[profile].get("timeout", DEFAULT_TIMEOUT)


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


def _coerce(default: Any, value: Any) -> Any:
    """An int given for a float parameter becomes a float (the notebook sees the declared type,
    and ``2`` and ``2.0`` are one run)."""
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, (list, tuple)) and default and isinstance(value, (list, tuple)) \
            and len({type(v) for v in default}) == 1:
        return [_coerce(default[0], v) for v in value]
    return value


def _type_name(v: Any) -> str:
    if isinstance(v, list) and v:
        return f"list of {type(v[0]).__name__}"
    return type(v).__name__


def variant_name(profile: str, overrides: dict[str, Any]) -> str:
    """``profile``, or ``profile+<8 hex>`` naming a run with these overrides."""
    if not overrides:
        return profile
    digest = hashlib.sha256(json.dumps(overrides, sort_keys=True).encode()).hexdigest()
    return f"{profile}+{digest[:8]}"


def _check_params(name: str, specs: dict, params: dict, errors: list[str], origin: str) -> None:
    for key, value in params.items():
        if key in RUNNER_PARAMS:
            errors.append(f"{name}: parameter {key!r} is set by the runner and cannot be {origin}")
        elif key not in specs:
            valid = ", ".join(k for k in specs if k not in RUNNER_PARAMS)
            errors.append(f"{name}: unknown parameter {key!r}; valid parameters: {valid}")
        elif not _type_ok(specs[key].default, value):
            d = specs[key].default
            errors.append(f"{name}: parameter {key!r} = {value!r} has type {_type_name(value)}, "
                          f"expected {_type_name(d)} (default {d!r})")
        else:
            spec = specs[key]
            errors.extend(f"{name}: {p}" for p in check_value(key, value, spec.default, spec.conditions))


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
    overrides = dict(overrides or {})
    if overrides and len(names) != 1:
        raise RebuildError("-p/--param overrides need exactly one notebook (--only NAME)")
    jobs, errors = [], []
    for name in names:
        if name not in table:
            errors.append(f"{name}: no entry in profile {profile!r} of notebooks/profiles.yml")
            continue
        nb = read_notebook(notebooks[name])
        specs = parameter_specs(notebooks[name], nb)
        n_errors = len(errors)
        _check_params(name, specs, table[name], errors, "set in profiles.yml")
        _check_params(name, specs, overrides, errors, "overridden")
        if len(errors) > n_errors:
            continue
        base = {k: s.default for k, s in specs.items() if k not in RUNNER_PARAMS}
        base.update({k: _coerce(specs[k].default, v) for k, v in table[name].items()})
        resolved = dict(base)
        resolved.update({k: _coerce(specs[k].default, v) for k, v in overrides.items()})
        diff = {k: resolved[k] for k in overrides
                if json.dumps(resolved[k], sort_keys=True) != json.dumps(base[k], sort_keys=True)}
        params = {**table[name], **overrides}
        jobs.append(Job(name, notebooks[name], params, resolved, nb, overrides=diff,
                        variant=variant_name(profile, diff), specs=specs))
    if errors:
        raise RebuildError("invalid request, nothing was run:\n  " + "\n  ".join(errors))
    return jobs
