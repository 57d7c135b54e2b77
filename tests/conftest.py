"""Shared fixtures: a copy of the book in a temporary folder, executed in the quick profile
(never touching the repository's own outputs), its strict render, and a local web server."""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BOOK_FILES = ["_config.yml", "_toc.yml", "requirements.txt", "CITATION.cff", "book", "notebooks", "vendor"]
GENERATED = ["generated", "figures"]


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Unit tests run with one torch thread, like the runner's notebook kernels: the tensors are
    small, and on a busy 2-core machine OpenMP spin-waits make two threads many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def copy_book(dest: Path) -> Path:
    """Copy the book's sources (not its generated outputs) to ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in BOOK_FILES:
        src = REPO / name
        if not src.exists():
            continue
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns(*GENERATED, "__pycache__",
                                                                          ".ipynb_checkpoints"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def jupyter_book() -> str:
    exe = Path(sys.executable).with_name("jupyter-book")
    return str(exe) if exe.exists() else "jupyter-book"


@pytest.fixture(scope="session")
def quick_book(tmp_path_factory):
    """The whole book executed in the quick profile in a temporary copy."""
    from countingargs.build import runner as rebuild

    root = copy_book(tmp_path_factory.mktemp("quick-a"))
    outcomes = rebuild.rebuild(root, "quick", log=lambda m: print(m, file=sys.stderr))
    failed = [o.message for o in outcomes if o.status != "ran"]
    assert not failed, "\n".join(failed)
    return root


@pytest.fixture(scope="session")
def built_html(quick_book):
    """The strict render of the quick book: returns (returncode, log, html folder)."""
    proc = subprocess.run([jupyter_book(), "build", str(quick_book), "-W", "-n", "--keep-going"],
                          capture_output=True, text=True, timeout=900)
    return proc.returncode, proc.stdout + proc.stderr, quick_book / "_build" / "html"


@pytest.fixture(scope="session")
def served_html(built_html):
    rc, log, html = built_html
    assert rc == 0, log[-5000:]

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(html)))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_port}", html
    srv.shutdown()


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CA_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing but CA_REQUIRE_BROWSER is set (install Debian's chromium)")
        pytest.skip(f"{CHROMIUM} not installed (run `make chromium`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def workers_env():
    """For tests on a Dask LocalCluster: worker processes import ``countingargs`` (and the chunk
    functions of ``tests/chunk_fns.py``) through PYTHONPATH; the clusters started by the module
    are closed at its end and PYTHONPATH is restored."""
    from countingargs import chunks

    here = str(REPO / "tests")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO / "lib"), here] + ([old] if old else []))
    sys.path.insert(0, here)
    yield
    chunks.close_clients()
    sys.path.remove(here)
    if old is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old
