"""Times the book pipeline on this machine, in a temporary copy (the repository's own outputs
are never touched):

    python benchmarks/book.py [--profile quick]

Prints the wall time of (1) a full rebuild of every notebook, (2) a rebuild with nothing changed
(every notebook skipped), (3) the strict render, and each notebook's own time from its
provenance file. Budgets for the quick profile on 2 cores: (1)+(3) within 5 minutes, (2) within
15 s, (3) within 60 s. It asserts nothing about time; it reports.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import copy_book, jupyter_book  # noqa: E402

from countingargs.build import runner as rebuild  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = copy_book(Path(tmp) / "book")
        t0 = time.perf_counter()
        out = rebuild.rebuild(root, args.profile, n_jobs=args.jobs, log=lambda m: None)
        t_rebuild = time.perf_counter() - t0
        if any(o.status != "ran" for o in out):
            print("\n".join(o.message for o in out if o.message), file=sys.stderr)
            return 1
        t0 = time.perf_counter()
        again = rebuild.rebuild(root, args.profile, log=lambda m: None)
        t_skip = time.perf_counter() - t0
        assert all(o.status == "skipped" for o in again)
        t0 = time.perf_counter()
        rc = subprocess.call([jupyter_book(), "build", str(root), "-W", "-n", "--keep-going", "-q"],
                             stdout=subprocess.DEVNULL)
        t_render = time.perf_counter() - t0
        print(f"profile {args.profile}, {args.jobs} notebooks at a time")
        for o in out:
            prov = json.loads((root / "results" / args.profile / o.name / "provenance.json").read_text())
            print(f"  {o.name:<20} {prov['wall_seconds']:8.1f} s")
        print(f"rebuild (all notebooks)   {t_rebuild:8.1f} s")
        print(f"rebuild, nothing changed  {t_skip:8.1f} s")
        print(f"render (strict)           {t_render:8.1f} s   {'ok' if rc == 0 else 'FAILED'}")
        print(f"rebuild + render          {t_rebuild + t_render:8.1f} s")
        return rc


if __name__ == "__main__":
    raise SystemExit(main())
