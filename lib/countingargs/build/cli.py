"""Command line: ``python -m countingargs <command>``.

    rebuild  --profile quick|standard|full [--only NAME ...] [--force] [-p NAME VALUE ... [--publish]]
             [--jobs N] [--threads N] [--root DIR]
    render   [--root DIR]                    a fresh, strict jupyter-book build (zero warnings)
    build    --profile ... [--only ...]      rebuild, then render
    params   NAME [--root DIR]               a notebook's parameters and each profile's values
    list     [--root DIR]                    the notebooks and profiles
    verify   [--profile P] [--only NAME ...] recompute every glued number from the saved tables
    replot   [--profile P] [--only NAME ...] redraw every figure from the saved tables

Exit codes: 0 ok; 1 a notebook failed or the render had warnings; 2 a bad request (or another
run holds the book's lock); 130 interrupted by Ctrl-C (143 by SIGTERM).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import RebuildError
from . import runner as rb
from .lock import root_lock
from .profiles import load_profiles, timeout_of
from .sources import RUNNER_PARAMS, list_notebooks, parameter_specs
from .supervisor import Interrupted
from .values import parse_value

WARNING_RE = re.compile(r"\b(WARNING|ERROR|CRITICAL|SEVERE)\b[:(]")


def _root(args) -> Path:
    return rb.check_root(args.root) if args.root else rb.find_root()


def _parse_overrides(pairs) -> dict:
    out = {}
    for name, raw in pairs or []:
        if name in out:
            raise RebuildError(f"-p {name} is given twice")
        out[name] = parse_value(raw, name)
    return out


def cmd_rebuild(args) -> int:
    overrides = _parse_overrides(args.param)
    if args.publish and not overrides:
        raise RebuildError("--publish puts a run with -p overrides into the book; without -p a run "
                           "of the profile goes into the book anyway")
    outcomes = rb.rebuild(_root(args), args.profile, args.only or None, args.force, overrides,
                          n_jobs=args.jobs, threads=args.threads, publish=args.publish)
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def _jupyter_book() -> str:
    jb = Path(sys.executable).with_name("jupyter-book")
    return str(jb) if jb.exists() else "jupyter-book"


def render(root: Path, quiet: bool = False) -> int:
    """Build the book fresh (no cached pages, so every page's warnings are seen on every build)
    and report: 0 only if jupyter-book succeeded and printed no warning at all."""
    if not (root / "vendor" / "mathjax" / "tex-mml-chtml.js").exists():
        print("warning: vendor/mathjax is missing (run `make vendor`): math will not render offline",
              file=sys.stderr)
    if not (root / "book" / "generated").is_dir():
        raise RebuildError("book/generated/ is missing: run `python -m countingargs rebuild` first")
    t0 = time.perf_counter()
    for stale in (root / "_build" / "html", root / "_build" / ".doctrees"):
        shutil.rmtree(stale, ignore_errors=True)
    # (pages generated from results, e.g. ledger or status pages, are written here, before the build)
    cmd = [_jupyter_book(), "build", str(root), "--all", "-W", "-n", "--keep-going"]
    if quiet:
        cmd.append("-q")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace")
    warnings = []
    try:
        for line in proc.stdout:
            sys.stdout.write(line)
            if WARNING_RE.search(line):
                warnings.append(line.rstrip())
        rc = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
        print("render: interrupted; _build/html is incomplete", file=sys.stderr)
        return 130
    ok = rc == 0 and not warnings
    note = "" if ok else f" (exit code {rc}, {len(warnings)} warning(s))"
    print(f"render: {'ok' if ok else 'FAILED'}{note} in {time.perf_counter() - t0:.1f}s "
          f"-> {root / '_build' / 'html' / 'index.html'}")
    for w in warnings[:20]:
        print(f"  {w}")
    return rc if rc else (0 if ok else 1)


def cmd_render(args) -> int:
    root = _root(args)
    with root_lock(root, "render"):
        return render(root, args.quiet)


def cmd_build(args) -> int:
    rc = cmd_rebuild(args)
    if rc:
        return rc
    if args.param and not args.publish:
        print("build: the override run is not part of the book (add --publish to render it); "
              "rendering the book as it is")
    return cmd_render(args)


def cmd_params(args) -> int:
    root = _root(args)
    nbs = list_notebooks(root)
    if args.name not in nbs:
        raise RebuildError(f"unknown notebook {args.name!r}; valid notebooks: {', '.join(nbs)}")
    specs = parameter_specs(nbs[args.name])
    profiles = load_profiles(root)
    print(f"{args.name}: parameters (default = standard), declared ranges and profile overrides")
    for key, spec in specs.items():
        if key in RUNNER_PARAMS:
            continue
        row = [f"  {key} = {spec.default!r}"]
        if spec.conditions:
            row.append(f"({spec.declared})")
        for p, prof in profiles.items():
            over = (prof.get("notebooks", {}).get(args.name) or {})
            if key in over:
                row.append(f"[{p}: {over[key]!r}]")
        print(" ".join(row))
    print("  (set by the runner: " + ", ".join(RUNNER_PARAMS) + ")")
    return 0


def cmd_list(args) -> int:
    root = _root(args)
    profiles = load_profiles(root)
    print("notebooks: " + ", ".join(list_notebooks(root)))
    print("profiles:  " + ", ".join(f"{p} (cell timeout {timeout_of(profiles, p)} s)"
                                     for p, v in profiles.items()))
    return 0


def cmd_verify(args) -> int:
    from .check import verify

    reports = verify(_root(args), args.profile, args.only or None)
    bad = 0
    for rep in reports:
        if rep.ok:
            print(f"{rep.name}: ok ({rep.checked_glue} glued values, {rep.checked_tables} derived tables)")
        else:
            bad += 1
            print(f"{rep.name}: {len(rep.problems)} problem(s)")
            for p in rep.problems:
                print(f"  - {p}")
    print(f"verify {args.profile}: {len(reports) - bad} ok, {bad} with problems")
    return 1 if bad else 0


def cmd_replot(args) -> int:
    from .check import replot

    root = _root(args)
    with root_lock(root, "replot"):
        written = replot(root, args.profile, args.only or None, args.out)
    for name, files in written.items():
        print(f"{name}: {len(files)} file(s) redrawn")
    return 0


def make_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m countingargs",
                                 description="Rebuild and render the book 'Counting Arguments, Counted'.")
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--root", help="book root (default: found from the current directory)")

    for name, fn, hlp in (("rebuild", cmd_rebuild, "execute notebooks with papermill"),
                          ("build", cmd_build, "rebuild, then render the book")):
        p = sub.add_parser(name, help=hlp)
        p.add_argument("--profile", default="standard",
                       help="quick, standard (default) or full")
        p.add_argument("--only", nargs="+", metavar="NAME", help="notebooks to run (default: all)")
        p.add_argument("--force", action="store_true", help="rerun even if inputs are unchanged")
        p.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                       help="override a parameter of the one notebook given with --only (a YAML 1.2 "
                            "/ JSON value: 8, 1e-3, true, \"[4, 8]\"); the run goes to "
                            "results/<profile>+<hash>/, not into the book")
        p.add_argument("--publish", action="store_true",
                       help="put a run with -p overrides into the book (its banner lists them)")
        p.add_argument("--jobs", type=int, default=2, help="notebooks run at once (default 2)")
        p.add_argument("--threads", type=int, default=1, help="torch/BLAS threads per notebook (default 1)")
        p.add_argument("--quiet", action="store_true", help="quieter render (build only)")
        p.add_argument("--scheduler", metavar="ADDR",
                       help="where the chunked loops run (countingargs.chunks): local, local:N, "
                            "tcp://HOST:PORT or a scheduler file; never changes results, so not "
                            "part of the input hash (sets COUNTINGARGS_SCHEDULER for the kernels)")
        p.add_argument("--checkpoint", metavar="DIR",
                       help="keep each finished chunk in DIR; a killed run started again computes "
                            "only the missing chunks (sets COUNTINGARGS_CHECKPOINT)")
        common(p)
        p.set_defaults(func=fn)
    p = sub.add_parser("render", help="jupyter-book build, strict")
    p.add_argument("--quiet", action="store_true")
    common(p)
    p.set_defaults(func=cmd_render)
    p = sub.add_parser("params", help="list a notebook's parameters")
    p.add_argument("name")
    common(p)
    p.set_defaults(func=cmd_params)
    for name, fn, hlp in (("verify", cmd_verify, "recompute glued numbers from saved tables"),
                          ("replot", cmd_replot, "redraw figures from saved tables")):
        p = sub.add_parser(name, help=hlp)
        p.add_argument("--profile", default="standard", help="quick, standard (default) or full")
        p.add_argument("--only", nargs="+", metavar="NAME", help="notebooks (default: all with results)")
        if name == "replot":
            p.add_argument("--out", help="folder for the figures (default: book/figures)")
        common(p)
        p.set_defaults(func=fn)
    p = sub.add_parser("list", help="list notebooks and profiles")
    common(p)
    p.set_defaults(func=cmd_list)
    return ap


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    # the kernels inherit the environment: where their chunked loops run, and their checkpoints
    # (paths made absolute: the kernels run in folders of their own)
    if getattr(args, "scheduler", None):
        file = Path(args.scheduler)
        os.environ["COUNTINGARGS_SCHEDULER"] = str(file.resolve()) if file.is_file() else args.scheduler
    if getattr(args, "checkpoint", None):
        os.environ["COUNTINGARGS_CHECKPOINT"] = str(Path(args.checkpoint).resolve())
    try:
        return args.func(args)
    except Interrupted as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except RebuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted (SIGINT) before any notebook started", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
