"""Tiny made-up books for the runner's tests: notebooks that take a second (no torch)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat

PARAMS = '''profile = "standard"
results_dir = "res"
figures_dir = "figs"
n = 3            # >= 1; rows in the table
scale = 1.5      # > 0
fail = False
finish = True
hold = ""        # a folder: write <name>.started there, then wait for a file "go" in it
'''
BODY = '''import json, os, pathlib, time
res, figs = pathlib.Path(results_dir), pathlib.Path(figures_dir)
if hold:  # a child process of the kernel too, as a notebook starting workers would have
    import subprocess, sys
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    pathlib.Path(hold, "{name}.started").write_text(f"{{os.getpid()}} {{os.getppid()}} {{child.pid}}")
    for _ in range(1200):
        if pathlib.Path(hold, "go").exists():
            break
        time.sleep(0.05)
    child.kill()
    child.wait()
(res / "squares.csv").write_text("i,sq\\n" + "".join(f"{{i}},{{scale * i * i}}\\n" for i in range(n)))
(res / "glue.json").write_text(json.dumps({{"total": sum(scale * i * i for i in range(n))}}))
(figs / "{name}-line.png").write_bytes(b"not really a png " + str(n).encode())
(figs / "{name}-line.pdf").write_bytes(b"not really a pdf " + str(n).encode())
print("wrote", res / "squares.csv")
res / "glue.json"
'''
FAIL = '''if fail:
    raise RuntimeError("deliberate failure for the test")
'''
FINISH = '''if finish:
    (res / "run.json").write_text(json.dumps({"seeds": [0], "device": "cpu"}))
'''


def write_notebook(root: Path, name: str, extra_md: str = "") -> Path:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(PARAMS)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# Notebook {name}\n{extra_md}"), p,
                nbformat.v4.new_code_cell(BODY.format(name=name)), nbformat.v4.new_code_cell(FAIL),
                nbformat.v4.new_code_cell(FINISH)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = root / "notebooks" / f"{name}.md"
    jupytext.write(nb, path, fmt="md:myst")
    return path


def make_light_book(root: Path, names=("01_a",), profiles: str | None = None) -> Path:
    """A book of light notebooks; in the quick profile each has n = 2."""
    (root / "notebooks").mkdir(parents=True, exist_ok=True)
    (root / "_config.yml").write_text("title: test\n")
    for name in names:
        write_notebook(root, name)
    if profiles is None:
        quick = "".join(f"    {n}: {{n: 2}}\n" for n in names)
        std = "".join(f"    {n}: {{}}\n" for n in names)
        profiles = f"quick:\n  timeout: 120\n  notebooks:\n{quick}standard:\n  notebooks:\n{std}"
    (root / "notebooks" / "profiles.yml").write_text(profiles)
    return root


def quiet(msg):
    print(msg, file=sys.stderr)


def cli(root: Path, *args, timeout=300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "countingargs", *args, "--root", str(root)],
                          capture_output=True, text=True, timeout=timeout, **kw)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of the book's outputs (results, figures, executed notebooks), by path."""
    out = {}
    for top in ("results", "book/figures", "book/generated"):
        d = root / top
        if d.exists():
            for p in sorted(d.rglob("*")):
                if p.is_file():
                    out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


def alive(pid: int) -> bool:
    """True if ``pid`` is a running (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_for(cond, timeout=60.0, step=0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


def started_pids(hold: Path) -> dict[str, tuple[int, ...]]:
    """{notebook: (kernel pid, worker pid, pid of the kernel's child)} from the markers the held
    notebooks write."""
    out = {}
    for p in hold.glob("*.started"):
        text = p.read_text().split()
        if len(text) == 3:
            out[p.stem] = tuple(int(t) for t in text)
    return out
