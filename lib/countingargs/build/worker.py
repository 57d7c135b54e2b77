"""Executes one notebook under papermill, in a child process the runner controls.

``python -m countingargs.build.worker SPEC.json EVENTS_FD`` runs the notebook described by the
spec (written by :mod:`.supervisor`) into its temporary folder and nothing else: it never moves
anything into place (the runner commits the outputs after it exits), so a worker that outlived
its runner could not change the book. It still must not outlive it:

- it runs in its own session (the runner starts it so), so a terminal's Ctrl-C reaches only the
  runner, which then stops it in order;
- on Linux it asks the kernel for SIGTERM when the runner dies (``PR_SET_PDEATHSIG``), even by
  SIGKILL; and it watches its stdin, a pipe from the runner that reaches EOF when the runner is gone;
- on SIGTERM, SIGHUP, SIGINT or that EOF it kills its Jupyter kernel's process group (and any
  other child), removes its temporary folder and exits. A kernel whose worker was SIGKILLed exits
  by itself within a second (ipykernel polls ``JPY_PARENT_PID``).

Progress goes to the runner as JSON lines on the ``EVENTS_FD`` pipe (``{"cell": i, "of": n}``);
the outcome is written to ``result.json`` in the temporary folder. Everything the worker, papermill
and the kernel print goes to ``worker.log`` there (the terminal stays clean).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_once = threading.Lock()
_state: dict = {"workdir": None, "events": None}


def _kill_children() -> None:
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is pinned
        return
    me = psutil.Process()
    kids = me.children(recursive=True)
    own = os.getpgid(0)
    for k in kids:
        try:
            pg = os.getpgid(k.pid)
            if pg != own:
                os.killpg(pg, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            k.kill()
        except psutil.Error:
            pass
    # reap our own children; grandchildren are dead (SIGKILL) and reaped by whoever adopts them
    psutil.wait_procs([k for k in kids if k.pid in {c.pid for c in me.children()}], timeout=5)


def _shutdown(code: int) -> None:
    """Stop the kernel, remove the temporary folder, exit at once (from any thread)."""
    if not _once.acquire(blocking=False):
        return
    try:
        _kill_children()
        if _state["workdir"]:
            shutil.rmtree(_state["workdir"], ignore_errors=True)
    finally:
        os._exit(code)


def _on_signal(signum, _frame) -> None:
    _shutdown(128 + signum)


def _watch_runner() -> None:
    """EOF on stdin: the runner is gone (the pipe's write end closed with it)."""
    try:
        while sys.stdin.buffer.read(1 << 12):
            pass
    except OSError:
        pass
    _shutdown(129)


def _die_with_runner(runner_pid: int) -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the stdin watch still works
        pass
    if os.getppid() != runner_pid:  # the runner died before prctl took effect
        _shutdown(129)


def emit(event: dict) -> None:
    fd = _state["events"]
    if fd is None:
        return
    try:
        os.write(fd, (json.dumps(event) + "\n").encode())
    except OSError:  # the runner is gone
        _shutdown(129)


def _engine():
    from papermill.engines import NBClientEngine

    class ReportingEngine(NBClientEngine):
        """papermill's nbclient engine, telling the runner which cell is running."""

        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
            start = nb_man.cell_start
            total = len(nb_man.nb.cells)

            def cell_start(cell, cell_index=None, **kw):
                emit({"cell": (cell_index or 0) + 1, "of": total})
                return start(cell, cell_index, **kw)

            nb_man.cell_start = cell_start
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    return ReportingEngine


def run(spec: dict) -> dict:
    import papermill as pm
    from papermill.engines import papermill_engines

    papermill_engines.register("countingargs", _engine())
    t0 = time.perf_counter()
    result: dict = {"ok": True}
    try:
        pm.execute_notebook(spec["source"], spec["output"], parameters=spec["parameters"],
                            kernel_name="python3", engine_name="countingargs", cwd=spec["cwd"],
                            execution_timeout=spec["timeout"], progress_bar=False, log_output=False,
                            report_mode=False)
    except Exception as exc:  # noqa: BLE001 - every failure is reported the same way
        result = {"ok": False, "ename": getattr(exc, "ename", type(exc).__name__),
                  "evalue": str(getattr(exc, "evalue", exc)),
                  "cell_index": getattr(exc, "cell_index", None)}
    result["seconds"] = time.perf_counter() - t0
    return result


def main(argv: list[str]) -> int:
    spec_path = Path(argv[0])
    _state["events"] = int(argv[1])
    spec = json.loads(spec_path.read_text())
    _state["workdir"] = spec["workdir"]
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, _on_signal)
    threading.Thread(target=_watch_runner, daemon=True).start()
    _die_with_runner(spec["runner_pid"])
    result = run(spec)
    if not _once.acquire(blocking=False):
        # another thread is shutting down (the runner is gone): it removes the folder and exits
        threading.Event().wait()
    tmp = Path(spec["result"]).with_suffix(".tmp")
    tmp.write_text(json.dumps(result) + "\n")
    tmp.replace(spec["result"])
    if os.getppid() != spec["runner_pid"]:  # the runner died meanwhile: nobody will read this
        shutil.rmtree(spec["workdir"], ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
