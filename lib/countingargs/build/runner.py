"""The rebuild runner: executes the book's notebooks with papermill, safely.

For a rebuild of one book root (one at a time: :mod:`.lock`):

1. **Validate** (before anything runs, for every notebook; :func:`.profiles.plan`): the profile
   exists, the notebook exists, every parameter the profile or ``-p`` sets is declared in the
   notebook's ``parameters`` cell, has the declared default's type and lies in its declared
   range (:mod:`.values`). Any problem raises :class:`RebuildError` listing what is valid.
2. **Skip** a notebook whose outputs are a complete, undamaged run of its current inputs: the
   hash of its source cells, resolved parameters, the library files it imports (:mod:`.deps`)
   and the pins matches the record, and every recorded output (table, ``glue.json``,
   ``run.json``, figure, executed notebook) still has its recorded hash (:mod:`.outputs`).
   Otherwise the log says why it runs (``--force`` always reruns).
3. **Execute** each notebook in a worker process (:mod:`.worker`, :mod:`.supervisor`), ``--jobs``
   at a time, in a fresh temporary folder under ``.rebuild-tmp/`` with a per-cell timeout. The
   MyST source is converted to ``.ipynb`` in memory; the resolved parameters are written to
   ``results/parameters.json`` for the notebook's ``Run``. Ctrl-C (or SIGTERM) stops every
   worker and its kernel, starts nothing more, moves nothing into place and exits 130 (143).
4. **Stage, then commit** on success (:func:`.outputs.commit`): the executed notebook is cleaned
   (one parameters cell with the values used, no path of this machine, a banner saying how the
   page was produced), provenance is written, then results, figures and executed notebook move
   into place together, or not at all. A failed cell, a notebook that never calls
   ``run.finish()`` or a failed move keeps the executed copy in
   ``failures/<variant>/<name>.ipynb`` and leaves earlier outputs untouched.
5. **Order**: a notebook whose front matter lists other notebooks' results it reads
   (``reads_results: [01_distillation, "07_*"]``, names or patterns) starts only after those
   notebooks of the same rebuild have finished (:func:`reads_results`), so what it reads does
   not depend on which notebook happened to finish first.

Where outputs go: a profile's run writes ``results/<profile>/<name>/``, ``book/figures/`` and
``book/generated/<name>.ipynb``. A run with ``-p`` overrides writes only
``results/<profile>+<hash>/<name>/`` (its figures and executed notebook inside), unless
``publish=True`` (``--publish``) puts it in the book, whose banner then lists the overrides.
"""
from __future__ import annotations

import copy
import datetime as _dt
import fnmatch
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import RebuildError
from .deps import closure, lib_dir
from .lock import root_lock
from .outputs import (CommitError, Targets, commit, output_hashes, read_provenance, targets_for,
                      why_stale, write_provenance)
from .profiles import Job, load_profiles, plan, timeout_of
from .provenance import commit_info, package_versions, sha256 as _sha
from .sources import RUNNER_PARAMS, code_sources, parameters_cell, render_parameters, without_comments
from .supervisor import Interrupted, Progress, Task, run_tasks, worker_log_tail

__all__ = ["RebuildError", "Interrupted", "Job", "Outcome", "find_root", "check_root", "plan",
           "input_hash", "input_parts", "rebuild", "stale", "dependencies", "RUNNER_PARAMS"]

TMP = ".rebuild-tmp"


@dataclass
class Outcome:
    name: str
    status: str                     # "ran", "skipped" or "failed"
    seconds: float = 0.0
    message: str = ""
    failed_copy: Path | None = None
    reason: str = ""                # why it ran (or "inputs unchanged")
    variant: str = ""               # where its results are: results/<variant>/<name>/


def find_root(start: Path | None = None) -> Path:
    """The book root: the nearest folder upwards holding ``_config.yml`` and ``notebooks/``."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "_config.yml").exists() and (d / "notebooks").is_dir():
            return d
    raise RebuildError(f"no book root (a folder with _config.yml and notebooks/) at or above {here}")


def check_root(root: Path) -> Path:
    """``root`` resolved, if it is a book root; a clear error otherwise."""
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise RebuildError(f"--root {root}: no such folder")
    missing = [n for n in ("_config.yml", "notebooks") if not (path / n).exists()]
    if missing:
        raise RebuildError(f"--root {root}: not a book root (missing {', '.join(missing)})")
    return path


# ---------------------------------------------------------------------------------------------
# Hashing
# ---------------------------------------------------------------------------------------------
def dependencies(job: Job) -> list[Path]:
    """The library files the notebook imports, transitively (see :mod:`.deps`)."""
    return closure(code_sources(job.nb))


def _digest(*chunks: bytes) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(len(c).to_bytes(8, "little"))
        h.update(c)
    return h.hexdigest()


def input_parts(root: Path, job: Job, profile: str, threads: int = 1) -> dict[str, str]:
    """The hashes of what a notebook's results depend on, part by part: its cells (type, tags,
    source), its profile and resolved parameters, the library files it imports, the pins and
    the runner's thread setting."""
    cells = []
    for c in job.nb.cells:
        cells += [c.cell_type.encode(), json.dumps(sorted(c.get("metadata", {}).get("tags", []))).encode(),
                  c.source.encode()]
    base = lib_dir()
    lib = []
    for p in dependencies(job):
        lib += [p.relative_to(base).as_posix().encode(), p.read_bytes()]
    req = Path(root) / "requirements.txt"
    return {
        "source": _digest(*cells),
        "parameters": _digest(json.dumps({"profile": profile, "params": job.resolved},
                                         sort_keys=True).encode()),
        "library": _digest(*lib),
        "pins": _digest(req.read_bytes() if req.exists() else b""),
        "runner": _digest(json.dumps({"threads": threads}).encode()),
    }


def input_hash(root: Path, job: Job, profile: str, threads: int = 1) -> str:
    """One hash of :func:`input_parts`: a notebook reruns when it changes."""
    return _digest(json.dumps(input_parts(root, job, profile, threads), sort_keys=True).encode())


def _library_files(job: Job) -> dict[str, str]:
    return {p.relative_to(lib_dir().parent).as_posix(): _sha(p) for p in dependencies(job)}


# ---------------------------------------------------------------------------------------------
# Messages and the executed notebook
# ---------------------------------------------------------------------------------------------
def _fmt_seconds(s: float) -> str:
    m, sec = divmod(int(round(s)), 60)
    return f"{m}m{sec:02d}s" if m else f"{s:.1f}s"


def _describe_failure(result: dict, out_nb: Path, job: Job) -> str:
    """Name the notebook, the source cell and the exception."""
    import nbformat

    cell_index = result.get("cell_index")
    ename = result.get("ename", "Error")
    evalue = result.get("evalue", "")
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


def _banner(job: Job, profile: str, commit: dict, started: str, seconds: float) -> str:
    c = (commit.get("commit") or "no git commit")[:10]
    dirty = " with uncommitted changes" if commit.get("dirty") else ""
    over = ""
    if job.overrides:
        listed = ", ".join(f"`{k} = {v!r}`" for k, v in sorted(job.overrides.items()))
        over = (f" **with overrides** of the profile's parameters: {listed} (published with "
                "`--publish`; these are not the profile's settings)")
    return (f"```{{admonition}} How this page was produced\n:class: note\n"
            f"Executed by the rebuild runner in the **{profile}** profile{over}, at commit `{c}`{dirty}, "
            f"on {started[:10]} ({_fmt_seconds(seconds)} of wall time). Its data are in "
            f"`results/{job.variant}/`; see [Rerun the notebooks](../rerun.md) to reproduce it.\n```")


def _replace_strings(obj: Any, pairs: list[tuple[str, str]]) -> Any:
    if isinstance(obj, str):
        for a, b in pairs:
            if a in obj:
                obj = obj.replace(a, b)
        return obj
    if isinstance(obj, list):
        return [_replace_strings(v, pairs) for v in obj]
    if isinstance(obj, dict):
        return {k: _replace_strings(v, pairs) for k, v in obj.items()}
    return obj


def _finalise_notebook(out_nb: Path, job: Job, profile: str, root: Path, tmp: Path,
                       targets: Targets, commit: dict, started: str, seconds: float) -> None:
    """One parameters cell holding the values used, no path of this machine, the banner, stable
    cell ids and the runner's metadata."""
    import nbformat

    nb = nbformat.read(out_nb, as_version=4)
    rel_results = targets.results.relative_to(root).as_posix()
    rel_figures = targets.figures.relative_to(root).as_posix()
    used = {**job.resolved, "profile": profile, "results_dir": rel_results, "figures_dir": rel_figures}
    cells = []
    for c in nb.cells:
        tags = c.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags:
            continue
        if "parameters" in tags:   # the cell as written (with its comments), with the values used
            c.source = render_parameters(parameters_cell(job.nb, job.source.name).source, used)
        cells.append(c)
    banner = nbformat.v4.new_markdown_cell(_banner(job, profile, commit, started, seconds))
    banner.metadata["tags"] = ["provenance"]
    first_md = next((i for i, c in enumerate(cells) if c.cell_type == "markdown"), -1)
    cells.insert(first_md + 1, banner)
    for c in cells:  # ids are random per run; make them stable
        c.pop("id", None)
    nb.cells = cells
    nb.nbformat_minor = 4
    nb.metadata.pop("papermill", None)
    nb.metadata["countingargs"] = {"profile": profile, "variant": job.variant,
                                   "overrides": job.overrides, "input_hash": job.input_hash,
                                   "commit": commit.get("commit"), "dirty": commit.get("dirty")}
    # no path of the build machine in the page: the temporary folder and the book root become
    # the places the outputs end up in, relative to the book root
    pairs = [(str(tmp / "results"), rel_results), (str(tmp / "figures"), rel_figures),
             (str(tmp), "."), (str(root) + os.sep, ""), (str(root), ".")]
    nbformat.write(nbformat.from_dict(_replace_strings(dict(nb), pairs)), out_nb)


# ---------------------------------------------------------------------------------------------
# One notebook: prepare, then (after its worker exits) stage and commit
# ---------------------------------------------------------------------------------------------
@dataclass
class _Context:
    root: Path
    profile: str
    timeout: float
    threads: int
    publish: bool
    commit: dict
    log: Callable[[str], None]


def _targets(ctx: _Context, job: Job) -> Targets:
    return targets_for(ctx.root, job.name, job.variant, ctx.publish or not job.overrides)


def _prepare(ctx: _Context, task: Task) -> None:
    """Make the task's temporary folder (when it starts, so a queued notebook leaves nothing
    behind): the source as .ipynb, parameters.json, the worker's spec."""
    import nbformat

    job: Job = task.extra["job"]
    work = ctx.root / TMP
    work.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{job.name}-", dir=work))
    res_tmp, fig_tmp = tmp / "results", tmp / "figures"
    res_tmp.mkdir()
    fig_tmp.mkdir()
    src_nb = tmp / f"{job.name}.source.ipynb"
    nb = copy.deepcopy(job.nb)
    cell = parameters_cell(nb, job.source.name)
    cell.source = without_comments(cell.source)
    nbformat.write(nb, src_nb)
    (res_tmp / "parameters.json").write_text(json.dumps(job.resolved, indent=2, sort_keys=True) + "\n")
    params = {**job.resolved, "profile": ctx.profile, "results_dir": str(res_tmp),
              "figures_dir": str(fig_tmp)}
    task.workdir = tmp
    task.spec = {"name": job.name, "workdir": str(tmp), "source": str(src_nb),
                 "output": str(tmp / f"{job.name}.ipynb"), "cwd": str(tmp), "parameters": params,
                 "timeout": ctx.timeout, "runner_pid": os.getpid(), "result": str(tmp / "result.json")}


def _keep_failed(ctx: _Context, job: Job, nb_path: Path) -> Path | None:
    if not nb_path.exists():
        return None
    failed = ctx.root / "failures" / job.variant / f"{job.name}.ipynb"
    try:
        failed.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(nb_path, failed)
    except OSError:
        return None
    return failed


def _failed(ctx: _Context, job: Job, seconds: float, msg: str, nb_path: Path) -> Outcome:
    kept = _keep_failed(ctx, job, nb_path)
    if kept is not None:
        msg += f"\n  the executed copy is kept at {kept.relative_to(ctx.root)}"
    return Outcome(job.name, "failed", seconds, msg, kept, variant=job.variant)


def _finish(ctx: _Context, task: Task, result: dict | None) -> Outcome:
    """After the worker exited: report a failure, or stage and commit the outputs."""
    job: Job = task.extra["job"]
    tmp = task.workdir
    res_tmp, out_nb = tmp / "results", tmp / f"{job.name}.ipynb"
    seconds = (result or {}).get("seconds", 0.0)
    if result is None:
        code = task.proc.returncode if task.proc else None
        tail = worker_log_tail(task)
        return _failed(ctx, job, seconds, f"notebook {job.name}: its worker process ended without a "
                       f"result (exit code {code})" + (f"; its log ends with:\n{tail}" if tail else ""),
                       out_nb)
    if not result.get("ok"):
        return _failed(ctx, job, seconds, _describe_failure(result, out_nb, job), out_nb)
    if not (res_tmp / "run.json").exists():
        return _failed(ctx, job, seconds, f"notebook {job.name} ran but never called run.finish(): "
                       "no run.json written, so its outputs were not moved into place", out_nb)
    try:
        moves, remove = _stage(ctx, task, seconds)
    except (OSError, ValueError) as exc:
        return _failed(ctx, job, seconds, f"notebook {job.name} ran, but its outputs could not be "
                       f"prepared: {type(exc).__name__}: {exc}", out_nb)
    try:
        commit(ctx.root, moves, remove, tmp / "backup")
    except CommitError as exc:
        return _failed(ctx, job, seconds, _commit_failure(ctx, task, exc),
                       out_nb if out_nb.exists() else res_tmp / out_nb.name)
    stale = ctx.root / "failures" / job.variant / f"{job.name}.ipynb"
    if stale.exists():
        stale.unlink()
    targets = _targets(ctx, job)
    where = "" if targets.published and not job.overrides else \
        f" -> {targets.results.relative_to(ctx.root)}/" + (" (published in the book)" if targets.published else "")
    return Outcome(job.name, "ran", seconds, where, variant=job.variant)


def _stage(ctx: _Context, task: Task, seconds: float) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """Clean the executed notebook, write provenance.json (with the hash of every output as it
    will be placed) and return the moves (staged -> final) and the files to remove (figures of
    this notebook's earlier run that it no longer draws)."""
    job: Job = task.extra["job"]
    tmp = task.workdir
    res_tmp, fig_tmp, out_nb = tmp / "results", tmp / "figures", tmp / f"{job.name}.ipynb"
    targets = _targets(ctx, job)
    run_info = json.loads((res_tmp / "run.json").read_text())
    started = task.extra["started"]
    _finalise_notebook(out_nb, job, ctx.profile, ctx.root, tmp, targets, ctx.commit, started, seconds)
    figures = {targets.figures / p.name: p for p in sorted(fig_tmp.iterdir()) if p.is_file()}
    placed = {targets.notebook: out_nb, **figures}
    placed.update({targets.results / p.name: p for p in sorted(res_tmp.iterdir()) if p.is_file()})
    prov = {
        "notebook": job.name,
        "profile": ctx.profile,
        "variant": job.variant,
        "parameters": job.resolved,
        "profile_parameters": {k: v for k, v in job.params.items() if k not in job.overrides},
        "overrides": job.overrides,
        "published": targets.published,
        "seeds": run_info.get("seeds"),
        "input_hash": job.input_hash,
        "input_parts": task.extra["parts"],
        **ctx.commit,
        "started_utc": started,
        "wall_seconds": round(seconds, 2),
        "device": run_info.get("device"),
        "cuda_device": run_info.get("cuda_device"),
        "torch_threads": run_info.get("torch_threads"),
        "chunked": run_info.get("chunked"),  # scheduler, workers, threads, device of heavy loops
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python_executable": sys.executable,
        "packages": package_versions(),
        "tables": {p.name: _sha(p) for p in sorted(res_tmp.glob("*.csv"))},
        "library_files": task.extra["library"],
        "figure_files": {p.name: _sha(p) for p in figures.values()},
        "outputs": output_hashes(ctx.root, placed),
    }
    if targets.published:
        moves = [(res_tmp, targets.results), *((p, dst) for dst, p in figures.items()),
                 (out_nb, targets.notebook)]
        old, _ = read_provenance(targets.results)
        remove = [targets.figures / f for f in ((old or {}).get("figure_files") or {})
                  if targets.figures / f not in figures and (targets.figures / f).exists()]
    else:  # an unpublished override run: everything inside its own results folder
        os.rename(fig_tmp, res_tmp / "figures")
        os.rename(out_nb, res_tmp / out_nb.name)
        moves, remove = [(res_tmp, targets.results)], []
    write_provenance(res_tmp, prov)
    return moves, remove


def _commit_failure(ctx: _Context, task: Task, exc: CommitError) -> str:
    job: Job = task.extra["job"]
    msg = f"notebook {job.name} ran, but its outputs could not be moved into place: {exc}. "
    if exc.rolled_back:
        return msg + "Nothing was changed: its results, figures and executed notebook are as before."
    kept = ctx.root / "failures" / job.variant / f"{job.name}.earlier-outputs"
    try:
        kept.parent.mkdir(parents=True, exist_ok=True)
        os.rename(task.workdir / "backup", kept)
    except OSError:
        task.extra["keep_tmp"] = True
        kept = task.workdir / "backup"
    return msg + f"The earlier outputs that could not be put back are in {kept.relative_to(ctx.root)}."


# ---------------------------------------------------------------------------------------------
# The rebuild
# ---------------------------------------------------------------------------------------------
def _assess(ctx: _Context, job: Job, force: bool) -> tuple[dict, dict, str | None]:
    """Hash the job's inputs (sets ``job.input_hash``); return the hash parts, the library
    files' hashes and why it must run (None: its outputs are current and intact)."""
    parts = input_parts(ctx.root, job, ctx.profile, ctx.threads)
    job.input_hash = input_hash(ctx.root, job, ctx.profile, ctx.threads)
    library = _library_files(job)
    reason = "--force" if force else why_stale(ctx.root, _targets(ctx, job), job.input_hash, parts, library)
    return parts, library, reason


def stale(root: Path, profile: str = "standard", only: list[str] | None = None,
          overrides: dict[str, Any] | None = None, threads: int = 1,
          publish: bool = False) -> dict[str, str | None]:
    """For each selected notebook, why a rebuild would run it (None: it would be skipped).
    Runs nothing and takes no lock."""
    root = Path(root).resolve()
    jobs = plan(root, profile, only, overrides)
    ctx = _Context(root, profile, 0, threads, publish, {}, print)
    return {job.name: _assess(ctx, job, False)[2] for job in jobs}


def reads_results(job: Job, names) -> set[str]:
    """The notebooks among ``names`` whose results ``job`` reads (its front matter's
    ``reads_results``: notebook names or glob patterns), itself excluded."""
    pats = (job.nb.metadata.get("reads_results") if job.nb is not None else None) or []
    if isinstance(pats, str) or not all(isinstance(p, str) for p in pats):
        raise RebuildError(f"{job.name}: reads_results must be a list of notebook names or patterns, "
                           f"got {pats!r}")
    return {n for n in names if n != job.name and any(fnmatch.fnmatch(n, p) for p in pats)}


def _clean_leftovers(root: Path, log: Callable[[str], None]) -> None:
    """Remove what an interrupted or killed run left in ``.rebuild-tmp/`` (we hold the lock, so
    nothing else is using it)."""
    work = root / TMP
    if not work.is_dir():
        return
    left = list(work.iterdir())
    for p in left:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    if left:
        log(f"removed {len(left)} leftover temporary folder(s) of an earlier, interrupted run "
            f"from {TMP}/")


def rebuild(root: Path, profile: str = "standard", only: list[str] | None = None,
            force: bool = False, overrides: dict[str, Any] | None = None,
            log: Callable[[str], None] = print, progress_bar: bool | None = None,
            n_jobs: int = 2, threads: int = 1, publish: bool = False) -> list[Outcome]:
    """Validate, then run (or skip) every selected notebook. Raises RebuildError on a bad
    request (or when another run holds the book's lock), :class:`Interrupted` on Ctrl-C or
    SIGTERM; returns the outcomes in notebook order (check for ``status == 'failed'``).

    ``n_jobs`` notebooks run at once, each kernel limited to ``threads`` threads (the default,
    two notebooks with one thread each, suits a 2-core machine; results do not depend on it).
    ``overrides`` (one notebook) put the run in ``results/<profile>+<hash>/`` and out of the
    book unless ``publish``."""
    if n_jobs < 1 or threads < 1:
        raise RebuildError(f"--jobs and --threads must be at least 1 (got {n_jobs}, {threads})")
    root = Path(root).resolve()
    jobs = plan(root, profile, only, overrides)
    timeout = timeout_of(load_profiles(root), profile)
    with root_lock(root, f"rebuild --profile {profile}"):
        _clean_leftovers(root, log)
        return _rebuild_locked(root, profile, jobs, timeout, force, log, progress_bar, n_jobs,
                               threads, publish)


def _rebuild_locked(root, profile, jobs, timeout, force, log, progress_bar, n_jobs, threads,
                    publish) -> list[Outcome]:
    ctx = _Context(root, profile, timeout, threads, publish, commit_info(root), log)
    progress = Progress(log, enabled=sys.stderr.isatty() if progress_bar is None else progress_bar)
    outcomes: dict[str, Outcome] = {}
    t_all = time.perf_counter()
    tasks: list[Task] = []
    for i, job in enumerate(jobs, 1):
        parts, library, reason = _assess(ctx, job, force)
        label = profile if job.variant == profile else f"{profile}, overrides -> results/{job.variant}/"
        head = f"[{i}/{len(jobs)}] {job.name} ({label})"
        if reason is None:
            outcomes[job.name] = Outcome(job.name, "skipped", reason="inputs unchanged", variant=job.variant)
            log(f"{head}: inputs unchanged, outputs intact: skipped (use --force to rerun)")
            continue
        tasks.append(Task(job.name, head, extra=dict(job=job, parts=parts, library=library,
                                                     reason=reason)))
        log(f"{head}: will run: {reason}")

    names = {task.name for task in tasks}
    for task in tasks:
        task.after = reads_results(task.extra["job"], names)

    def on_start(task: Task) -> None:
        _prepare(ctx, task)
        task.extra["started"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        after = f"after {', '.join(sorted(task.after))}; " if task.after else ""
        progress.log(f"{task.head}: running ({n_jobs} at a time, {threads} thread(s) each; {after}"
                     f"elapsed {_fmt_seconds(time.perf_counter() - t_all)})")

    def on_done(task: Task, result: dict | None) -> None:
        out = _finish(ctx, task, result)
        out.reason = task.extra["reason"]
        outcomes[out.name] = out
        done = f"(elapsed {_fmt_seconds(time.perf_counter() - t_all)})"
        if out.status == "ran":
            progress.log(f"{task.head}: done in {_fmt_seconds(out.seconds)}{out.message} {done}")
        else:
            progress.log(f"{task.head}: FAILED after {_fmt_seconds(out.seconds)} {done}\n  {out.message}")

    env = dict(os.environ)
    env.setdefault("PYTHONHASHSEED", "0")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    try:
        run_tasks(tasks, n_jobs, env, on_start, on_done, progress)
    except Interrupted as exc:
        exc.outcomes = [outcomes[j.name] for j in jobs if j.name in outcomes]
        done = [o.name for o in exc.outcomes if o.status == "ran"]
        if done:
            exc.args = (f"{exc.args[0]} (finished before the interrupt and kept: {', '.join(done)})",)
        raise
    finally:
        progress.close()
        for task in tasks:
            if task.workdir is not None and not task.extra.get("keep_tmp"):
                shutil.rmtree(task.workdir, ignore_errors=True)
        work = root / TMP
        if work.is_dir() and not any(work.iterdir()):
            work.rmdir()
    result = [outcomes[j.name] for j in jobs]
    ran = sum(o.status == "ran" for o in result)
    skipped = sum(o.status == "skipped" for o in result)
    failed = sum(o.status == "failed" for o in result)
    log(f"rebuild {profile}: {ran} ran, {skipped} skipped, {failed} failed "
        f"in {_fmt_seconds(time.perf_counter() - t_all)}")
    return result

