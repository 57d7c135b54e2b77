"""The rebuild runner: executes the book's notebooks with papermill, safely.

For each selected notebook, in order:

1. **Validate** (before anything runs, for every notebook): the profile exists, the notebook
   exists, every parameter the profile sets is declared in the notebook's ``parameters`` cell
   and has the declared default's type. Any problem raises :class:`RebuildError` listing what
   is valid; nothing has run.
2. **Skip** it when its inputs are unchanged: the hash of its source cells, its resolved
   parameters, the library sources and the pinned requirements matches the one recorded with
   its current outputs (``--force`` reruns).
3. **Execute** it under papermill in a fresh temporary folder (also its working directory),
   with a per-cell timeout. Results and figures are written inside that folder.
4. **Move into place** only on success: ``results/<profile>/<name>/`` (tables, ``glue.json``,
   ``run.json`` and ``provenance.json``), ``book/figures/<label>.{png,pdf}`` and the executed
   notebook ``book/generated/<name>.ipynb``. On failure the executed copy goes to
   ``failures/<profile>/<name>.ipynb``, the error names the notebook, the cell and the
   exception, earlier good outputs stay untouched, and the run ends non-zero.
"""
from __future__ import annotations

import ast
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

PROFILES = ("quick", "standard", "full")
RUNNER_PARAMS = ("profile", "results_dir", "figures_dir")
PACKAGES = ("torch", "numpy", "pandas", "scipy", "scikit-learn", "matplotlib", "seaborn",
            "papermill", "jupyter-book", "myst-nb", "nbclient", "ipykernel")


class RebuildError(Exception):
    """A problem with the request (profile, notebook, parameter) or a failed notebook."""


@dataclass
class Job:
    name: str
    source: Path
    params: dict[str, Any]          # the overrides the profile sets
    resolved: dict[str, Any]        # every declared parameter after overrides (minus runner ones)
    input_hash: str = ""


@dataclass
class Outcome:
    name: str
    status: str                     # "ran", "skipped" or "failed"
    seconds: float = 0.0
    message: str = ""
    failed_copy: Path | None = None


# ---------------------------------------------------------------------------------------------
# Discovery and validation
# ---------------------------------------------------------------------------------------------
def find_root(start: Path | None = None) -> Path:
    """The book root: the nearest folder upwards holding ``_config.yml`` and ``notebooks/``."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "_config.yml").exists() and (d / "notebooks").is_dir():
            return d
    raise RebuildError(f"no book root (a folder with _config.yml and notebooks/) at or above {here}")


def list_notebooks(root: Path) -> dict[str, Path]:
    nbs = sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    return {p.stem: p for p in nbs}


def load_profiles(root: Path) -> dict[str, dict]:
    path = root / "notebooks" / "profiles.yml"
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


def declared_parameters(nb_path: Path) -> dict[str, Any]:
    """Name -> default value of the notebook's ``parameters`` cell (literals only)."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise RebuildError(f"{nb_path.name}: needs exactly one cell tagged 'parameters', found {len(cells)}")
    out: dict[str, Any] = {}
    try:
        tree = ast.parse(cells[0].source)
    except SyntaxError as exc:
        raise RebuildError(f"{nb_path.name}: parameters cell is not valid Python: {exc}") from None
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            raise RebuildError(f"{nb_path.name}: parameters cell may hold only 'name = literal' lines "
                               f"(line {node.lineno})")
        try:
            out[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError:
            raise RebuildError(f"{nb_path.name}: parameter {node.targets[0].id!r} must be a literal "
                               f"(line {node.lineno})") from None
    missing = [p for p in RUNNER_PARAMS if p not in out]
    if missing:
        raise RebuildError(f"{nb_path.name}: parameters cell must declare {missing}")
    return out


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
    names = list(notebooks) if not only else list(only)
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
        declared = declared_parameters(notebooks[name])
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
        jobs.append(Job(name, notebooks[name], params, resolved))
    if errors:
        raise RebuildError("invalid request, nothing was run:\n  " + "\n  ".join(errors))
    return jobs


# ---------------------------------------------------------------------------------------------
# Hashing and provenance
# ---------------------------------------------------------------------------------------------
def _lib_dir() -> Path:
    return Path(__file__).resolve().parent


def input_hash(root: Path, job: Job, profile: str, threads: int = 1) -> str:
    import nbformat

    h = hashlib.sha256()
    nb = nbformat.read(job.source, as_version=4)
    for c in nb.cells:
        h.update(c.cell_type.encode())
        h.update(json.dumps(sorted(c.get("metadata", {}).get("tags", []))).encode())
        h.update(c.source.encode())
    h.update(json.dumps({"profile": profile, "params": job.resolved, "threads": threads},
                        sort_keys=True).encode())
    for p in sorted(_lib_dir().rglob("*.py")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    req = root / "requirements.txt"
    if req.exists():
        h.update(req.read_bytes())
    return h.hexdigest()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _git(root: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def commit_info(root: Path) -> dict[str, Any]:
    commit = _git(root, "rev-parse", "--verify", "-q", "HEAD")
    dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no")) if commit else None
    return {"commit": commit or None, "dirty": dirty}


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _outputs_current(root: Path, job: Job, profile: str) -> bool:
    prov_path = root / "results" / profile / job.name / "provenance.json"
    gen = root / "book" / "generated" / f"{job.name}.ipynb"
    if not (prov_path.exists() and gen.exists()):
        return False
    try:
        prov = json.loads(prov_path.read_text())
        meta = json.loads(gen.read_text()).get("metadata", {}).get("countingargs", {})
    except (OSError, json.JSONDecodeError):
        return False
    if prov.get("input_hash") != job.input_hash or meta.get("input_hash") != job.input_hash:
        return False
    for rel, digest in prov.get("figure_files", {}).items():
        p = root / "book" / "figures" / rel
        if not p.exists() or _sha(p) != digest:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Execution
# ---------------------------------------------------------------------------------------------
def _fmt_seconds(s: float) -> str:
    m, sec = divmod(int(round(s)), 60)
    return f"{m}m{sec:02d}s" if m else f"{s:.1f}s"


def _describe_failure(exc: BaseException, out_nb: Path, job: Job) -> str:
    """Name the notebook, the source cell and the exception."""
    import nbformat

    cell_index = getattr(exc, "cell_index", None)
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    where = "before or between cells"
    if out_nb.exists():
        nb = nbformat.read(out_nb, as_version=4)
        src_cells = [c for c in nb.cells
                     if not ({"injected-parameters", "papermill-error-cell-tag"}
                             & set(c.get("metadata", {}).get("tags", [])))]
        failing = [c for c in src_cells
                   if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
        if failing:
            cell = failing[0]
            n = src_cells.index(cell) + 1
            first = next((ln for ln in cell.source.splitlines() if ln.strip()), "")
            where = f"cell {n} of {job.source.name} (code: {first[:70]!r})"
        elif cell_index is not None:
            where = f"output cell index {cell_index}"
    elif cell_index is not None:
        where = f"output cell index {cell_index}"
    return f"notebook {job.name} failed in {where}: {ename}: {str(evalue).strip()[:500]}"


def _banner(profile: str, commit: dict, started: str, seconds: float) -> str:
    c = (commit.get("commit") or "no git commit")[:10]
    dirty = " with uncommitted changes" if commit.get("dirty") else ""
    return (f"```{{admonition}} How this page was produced\n:class: note\n"
            f"Executed by the rebuild runner in the **{profile}** profile, at commit `{c}`{dirty}, "
            f"on {started[:10]} ({_fmt_seconds(seconds)} of wall time). Its data are in "
            f"`results/{profile}/`; see [Rerun the notebooks](../rerun.md) to reproduce it.\n```")


def _finalise_notebook(out_nb: Path, job: Job, profile: str, tmp: Path, commit: dict,
                       started: str, seconds: float) -> None:
    import nbformat

    nb = nbformat.read(out_nb, as_version=4)
    final_results = f"results/{profile}/{job.name}"
    for c in nb.cells:
        if "injected-parameters" in c.get("metadata", {}).get("tags", []):
            c.source = (c.source.replace(str(tmp / "results"), final_results)
                        .replace(str(tmp / "figures"), "book/figures"))
    banner = nbformat.v4.new_markdown_cell(_banner(profile, commit, started, seconds))
    banner.metadata["tags"] = ["provenance"]
    first_md = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), -1)
    nb.cells.insert(first_md + 1, banner)
    for c in nb.cells:  # ids are random per run; make them stable
        c.pop("id", None)
    nb.nbformat_minor = 4
    nb.metadata["countingargs"] = {"profile": profile, "input_hash": job.input_hash,
                                   "commit": commit.get("commit"), "dirty": commit.get("dirty")}
    nbformat.write(nb, out_nb)


def execute(root: Path, job: Job, profile: str, timeout: int, progress_bar: bool,
            threads: int = 1) -> Outcome:
    import papermill as pm

    work = root / ".rebuild-tmp"
    work.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{job.name}-", dir=work))
    res_tmp, fig_tmp, out_nb = tmp / "results", tmp / "figures", tmp / f"{job.name}.ipynb"
    res_tmp.mkdir()
    fig_tmp.mkdir()
    params = {**job.params, "profile": profile, "results_dir": str(res_tmp),
              "figures_dir": str(fig_tmp)}
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    commit = commit_info(root)
    t0 = time.perf_counter()
    env_backup = dict(os.environ)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    os.environ["COUNTINGARGS_PROFILE"] = profile
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    try:
        pm.execute_notebook(str(job.source), str(out_nb), parameters=params, kernel_name="python3",
                            cwd=str(tmp), execution_timeout=timeout, progress_bar=progress_bar,
                            log_output=False, report_mode=False)
    except BaseException as exc:  # noqa: BLE001 - every failure is reported the same way
        if isinstance(exc, KeyboardInterrupt):
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        seconds = time.perf_counter() - t0
        msg = _describe_failure(exc, out_nb, job)
        failed = None
        if out_nb.exists():
            failed = root / "failures" / profile / f"{job.name}.ipynb"
            failed.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out_nb, failed)
            msg += f"\n  the executed copy is kept at {failed.relative_to(root)}"
        shutil.rmtree(tmp, ignore_errors=True)
        return Outcome(job.name, "failed", seconds, msg, failed)
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
    seconds = time.perf_counter() - t0

    run_info = {}
    if (res_tmp / "run.json").exists():
        run_info = json.loads((res_tmp / "run.json").read_text())
    else:
        shutil.rmtree(tmp, ignore_errors=True)
        return Outcome(job.name, "failed", seconds,
                       f"notebook {job.name} ran but never called run.finish(): no run.json written")
    figure_files = {p.name: _sha(p) for p in sorted(fig_tmp.iterdir()) if p.is_file()}
    prov = {
        "notebook": job.name,
        "profile": profile,
        "parameters": job.resolved,
        "overrides": job.params,
        "seeds": run_info.get("seeds"),
        "input_hash": job.input_hash,
        **commit,
        "started_utc": started,
        "wall_seconds": round(seconds, 2),
        "device": run_info.get("device"),
        "cuda_device": run_info.get("cuda_device"),
        "torch_threads": run_info.get("torch_threads"),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python_executable": sys.executable,
        "packages": package_versions(),
        "tables": {p.name: _sha(p) for p in sorted(res_tmp.glob("*.csv"))},
        "figure_files": figure_files,
    }
    (res_tmp / "provenance.json").write_text(json.dumps(prov, indent=2, sort_keys=True, default=str) + "\n")
    _finalise_notebook(out_nb, job, profile, tmp, commit, started, seconds)

    # -- move into place: results folder, figures, executed notebook -------------------------
    dest = root / "results" / profile / job.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    old = dest.with_name(f".{job.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    res_tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    figdir = root / "book" / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    for p in fig_tmp.iterdir():
        os.replace(p, figdir / p.name)
    gendir = root / "book" / "generated"
    gendir.mkdir(parents=True, exist_ok=True)
    os.replace(out_nb, gendir / f"{job.name}.ipynb")
    shutil.rmtree(tmp, ignore_errors=True)
    stale = root / "failures" / profile / f"{job.name}.ipynb"
    if stale.exists():
        stale.unlink()
    return Outcome(job.name, "ran", seconds)


def rebuild(root: Path, profile: str = "standard", only: list[str] | None = None,
            force: bool = False, overrides: dict[str, Any] | None = None,
            log: Callable[[str], None] = print, progress_bar: bool | None = None,
            n_jobs: int = 2, threads: int = 1) -> list[Outcome]:
    """Validate, then run (or skip) every selected notebook. Raises RebuildError on a bad
    request; returns the outcomes in notebook order (check for ``status == 'failed'``).

    ``n_jobs`` notebooks run at once, each kernel limited to ``threads`` threads (the default,
    two notebooks with one thread each, suits a 2-core machine; results do not depend on it)."""
    if n_jobs < 1 or threads < 1:
        raise RebuildError(f"--jobs and --threads must be at least 1 (got {n_jobs}, {threads})")
    root = Path(root).resolve()
    jobs = plan(root, profile, only, overrides)
    timeout = int(load_profiles(root)[profile].get("timeout", 3600))
    if progress_bar is None:
        progress_bar = sys.stderr.isatty()
    outcomes: dict[str, Outcome] = {}
    t_all = time.perf_counter()
    todo: list[tuple[str, Job]] = []
    for i, job in enumerate(jobs, 1):
        job.input_hash = input_hash(root, job, profile, threads)
        head = f"[{i}/{len(jobs)}] {job.name} ({profile})"
        if not force and _outputs_current(root, job, profile):
            outcomes[job.name] = Outcome(job.name, "skipped")
            log(f"{head}: inputs unchanged, skipped (use --force to rerun)")
        else:
            todo.append((head, job))

    def report(head: str, out: Outcome) -> None:
        outcomes[out.name] = out
        done = f"(elapsed {_fmt_seconds(time.perf_counter() - t_all)})"
        if out.status == "ran":
            log(f"{head}: done in {_fmt_seconds(out.seconds)} {done}")
        else:
            log(f"{head}: FAILED after {_fmt_seconds(out.seconds)} {done}\n  {out.message}")

    if n_jobs <= 1 or len(todo) <= 1:
        for head, job in todo:
            log(f"{head}: running ... (elapsed {_fmt_seconds(time.perf_counter() - t_all)})")
            report(head, execute(root, job, profile, timeout, progress_bar, threads))
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=n_jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = {}
            for head, job in todo:
                log(f"{head}: queued ({n_jobs} at a time, {threads} thread(s) each)")
                futures[pool.submit(execute, root, job, profile, timeout, False, threads)] = head
            for fut in as_completed(futures):
                report(futures[fut], fut.result())
    outcomes = [outcomes[j.name] for j in jobs]
    ran = sum(o.status == "ran" for o in outcomes)
    skipped = sum(o.status == "skipped" for o in outcomes)
    failed = sum(o.status == "failed" for o in outcomes)
    log(f"rebuild {profile}: {ran} ran, {skipped} skipped, {failed} failed "
        f"in {_fmt_seconds(time.perf_counter() - t_all)}")
    work = root / ".rebuild-tmp"
    if work.exists() and not any(work.iterdir()):
        work.rmdir()
    return outcomes
