"""The rebuild runner: executes the book's notebooks with papermill, safely.

For each selected notebook, in order:

1. **Validate** (before anything runs, for every notebook; :func:`.profiles.plan`): the profile
   exists, the notebook exists, every parameter the profile sets is declared in the notebook's
   ``parameters`` cell and has the declared default's type. Any problem raises
   :class:`RebuildError` listing what is valid; nothing has run.
2. **Skip** it when its inputs are unchanged: the hash of its source cells, its resolved
   parameters, the library files it imports (:mod:`.deps`) and the pinned requirements matches
   the one recorded with its current outputs (``--force`` reruns).
3. **Execute** it under papermill in a fresh temporary folder (also its working directory),
   with a per-cell timeout. The MyST source is converted to ``.ipynb`` in memory first. The
   resolved parameters are written to ``results/parameters.json`` for the notebook's ``Run``.
4. **Order** (parallel runs): a notebook whose front matter lists other notebooks' results it
   reads (``reads_results: [01_distillation, "07_*"]``, names or patterns) starts only after
   those notebooks of the same rebuild have finished (:func:`reads_results`), so what it reads
   does not depend on which notebook happened to finish first. Sequential runs go in name
   order, so such a notebook must come after the ones it reads.
5. **Move into place** only on success: ``results/<profile>/<name>/`` (tables, ``glue.json``,
   ``run.json`` and ``provenance.json``), ``book/figures/<label>.{png,pdf}`` and the executed
   notebook ``book/generated/<name>.ipynb``. On failure the executed copy goes to
   ``failures/<profile>/<name>.ipynb``, the error names the notebook, the cell and the
   exception, earlier good outputs stay untouched, and the run ends non-zero.
"""
from __future__ import annotations

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
from .profiles import Job, load_profiles, plan, timeout_of
from .provenance import commit_info, package_versions, sha256 as _sha
from .sources import code_sources

__all__ = ["RebuildError", "Job", "Outcome", "find_root", "plan", "input_hash", "rebuild",
           "dependencies"]


@dataclass
class Outcome:
    name: str
    status: str                     # "ran", "skipped" or "failed"
    seconds: float = 0.0
    message: str = ""
    failed_copy: Path | None = None


def find_root(start: Path | None = None) -> Path:
    """The book root: the nearest folder upwards holding ``_config.yml`` and ``notebooks/``."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "_config.yml").exists() and (d / "notebooks").is_dir():
            return d
    raise RebuildError(f"no book root (a folder with _config.yml and notebooks/) at or above {here}")


# ---------------------------------------------------------------------------------------------
# Hashing
# ---------------------------------------------------------------------------------------------
def dependencies(job: Job) -> list[Path]:
    """The library files the notebook imports, transitively (see :mod:`.deps`)."""
    return closure(code_sources(job.nb))


def input_hash(root: Path, job: Job, profile: str, threads: int = 1) -> str:
    """Hash of everything a notebook's results depend on: its cells (type, tags, source), its
    profile and resolved parameters, the library files it imports and the pins."""
    h = hashlib.sha256()
    for c in job.nb.cells:
        h.update(c.cell_type.encode())
        h.update(json.dumps(sorted(c.get("metadata", {}).get("tags", []))).encode())
        h.update(c.source.encode())
    h.update(json.dumps({"profile": profile, "params": job.resolved, "threads": threads},
                        sort_keys=True).encode())
    base = lib_dir()
    for p in dependencies(job):
        h.update(p.relative_to(base).as_posix().encode())
        h.update(p.read_bytes())
    req = Path(root) / "requirements.txt"
    if req.exists():
        h.update(req.read_bytes())
    return h.hexdigest()


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


def reads_results(job: Job, names) -> set[str]:
    """The notebooks among ``names`` whose results ``job`` reads (its front matter's
    ``reads_results``: notebook names or glob patterns), itself excluded."""
    pats = (job.nb.metadata.get("reads_results") if job.nb is not None else None) or []
    if isinstance(pats, str) or not all(isinstance(p, str) for p in pats):
        raise RebuildError(f"{job.name}: reads_results must be a list of notebook names or patterns, got {pats!r}")
    return {n for n in names if n != job.name and any(fnmatch.fnmatch(n, p) for p in pats)}


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
    import nbformat
    import papermill as pm

    work = root / ".rebuild-tmp"
    work.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{job.name}-", dir=work))
    res_tmp, fig_tmp, out_nb = tmp / "results", tmp / "figures", tmp / f"{job.name}.ipynb"
    res_tmp.mkdir()
    fig_tmp.mkdir()
    src_nb = tmp / f"{job.name}.source.ipynb"
    nbformat.write(job.nb, src_nb)
    (res_tmp / "parameters.json").write_text(json.dumps(job.resolved, indent=2, sort_keys=True) + "\n")
    params = {**job.params, "profile": profile, "results_dir": str(res_tmp),
              "figures_dir": str(fig_tmp)}
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    commit = commit_info(root)
    t0 = time.perf_counter()
    env_backup = dict(os.environ)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    try:
        pm.execute_notebook(str(src_nb), str(out_nb), parameters=params, kernel_name="python3",
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
        "library_files": {p.relative_to(lib_dir().parent).as_posix(): _sha(p) for p in dependencies(job)},
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
    timeout = timeout_of(load_profiles(root), profile)
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
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        names = {job.name for _, job in todo}
        waits = {job.name: reads_results(job, names) for _, job in todo}
        pending, finished, futures = list(todo), set(), {}
        with ProcessPoolExecutor(max_workers=n_jobs, mp_context=mp.get_context("spawn")) as pool:
            while pending or futures:
                ready = [(h, j) for h, j in pending if waits[j.name] <= finished]
                if not ready and not futures:   # a cycle of reads: run the first one anyway
                    ready = pending[:1]
                for head, job in ready:
                    pending.remove((head, job))
                    after = f", after {', '.join(sorted(waits[job.name]))}" if waits[job.name] else ""
                    log(f"{head}: queued ({n_jobs} at a time, {threads} thread(s) each{after})")
                    futures[pool.submit(execute, root, job, profile, timeout, False, threads)] = (head, job.name)
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in done:
                    head, name = futures.pop(fut)
                    finished.add(name)
                    report(head, fut.result())
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
