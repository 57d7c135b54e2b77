"""Runs notebooks in worker processes (:mod:`.worker`), a few at a time, and stops them cleanly.

The runner hands :func:`run_tasks` a list of :class:`Task` (a notebook to execute into its own
temporary folder). At most ``n_jobs`` workers run at once. When a worker exits, ``on_done`` is
called *in this process*: only the runner ever moves outputs into place.

Interrupts: while :func:`run_tasks` runs, SIGINT, SIGTERM and SIGHUP only set a flag (so a commit
in progress always completes); the loop then stops every running worker (SIGTERM: the worker kills
its kernel and removes its temporary folder; SIGKILL to the worker's process group after a grace
period), starts nothing more, commits nothing more, and raises :class:`Interrupted` naming what was
cancelled. If this process is killed outright, its workers get SIGTERM from the kernel
(``PR_SET_PDEATHSIG``) and see EOF on their stdin, and exit the same way.

Progress: on a terminal, :class:`Progress` keeps one status line per running notebook at the
bottom of the screen (redrawn in place) and prints every log message above them.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

from . import RebuildError

GRACE_SECONDS = 10.0
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(RebuildError):
    """The run was interrupted (Ctrl-C, SIGTERM, SIGHUP); ``exit_code`` is 128 + the signal."""

    def __init__(self, message: str, signum: int, outcomes: list | None = None):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
        self.outcomes = outcomes or []


@dataclass
class Task:
    name: str
    head: str                       # "[2/5] 02_volume (quick)"
    workdir: Path | None = None     # the temporary folder (also the kernel's working directory)
    spec: dict = field(default_factory=dict)   # what the worker needs (see worker.main)
    proc: subprocess.Popen | None = None
    events: int | None = None       # read end of the events pipe
    buffer: bytes = b""
    cell: tuple[int, int] | None = None
    started: float = 0.0
    extra: dict = field(default_factory=dict)
    after: set = field(default_factory=set)    # names of tasks that must finish before it starts

    @property
    def spec_path(self) -> Path:
        return self.workdir / "worker-spec.json"

    @property
    def log_path(self) -> Path:
        return self.workdir / "worker.log"

    @property
    def result_path(self) -> Path:
        return self.workdir / "result.json"


def _fmt(s: float) -> str:
    m, sec = divmod(int(round(s)), 60)
    return f"{m}m{sec:02d}s" if m else f"{s:.0f}s"


class Progress:
    """One line per running notebook at the bottom of a terminal; log messages above them.

    Off a terminal (or with ``enabled=False``) it only passes log messages through."""

    def __init__(self, log: Callable[[str], None], stream: TextIO | None = None,
                 enabled: bool | None = None, width: int | None = None):
        self._log = log
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.width = width
        self.lines: dict[str, str] = {}
        self._drawn = 0

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\x1b[1A\x1b[2K" * self._drawn)
            self._drawn = 0

    def _draw(self) -> None:
        width = self.width or shutil.get_terminal_size((100, 20)).columns
        for text in self.lines.values():
            self.stream.write(text[: max(10, width - 1)] + "\n")
        self._drawn = len(self.lines)
        self.stream.flush()

    def log(self, message: str) -> None:
        if not self.enabled:
            self._log(message)
            return
        self._clear()
        self.stream.flush()
        self._log(message)
        sys.stdout.flush()
        self._draw()

    def set(self, key: str, text: str) -> None:
        if not self.enabled or self.lines.get(key) == text:
            return
        self._clear()
        self.lines[key] = text
        self._draw()

    def drop(self, key: str) -> None:
        if not self.enabled or key not in self.lines:
            return
        self._clear()
        del self.lines[key]
        self._draw()

    def close(self) -> None:
        if self.enabled:
            self._clear()
            self.lines.clear()
            self.stream.flush()


class _Signals:
    """Turn SIGINT/SIGTERM/SIGHUP into a flag while installed (main thread only)."""

    def __init__(self):
        self.received: int | None = None
        self._old: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        if self.received is None:
            self.received = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def _start(task: Task, env: dict) -> None:
    task.spec_path.write_text(json.dumps(task.spec, indent=1))
    # the kernel's connection file and anything the notebook puts in a temporary file live in
    # the task's folder, so they go with it whatever happens
    scratch = task.workdir / "tmp"
    scratch.mkdir(exist_ok=True)
    env = {**env, "TMPDIR": str(scratch)}
    r, w = os.pipe()
    log = open(task.log_path, "ab")
    try:
        task.proc = subprocess.Popen(
            [sys.executable, "-m", "countingargs.build.worker", str(task.spec_path), str(w)],
            stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, pass_fds=(w,),
            cwd=task.workdir, env=env, start_new_session=True)
    finally:
        os.close(w)
        log.close()
    os.set_blocking(r, False)
    task.events = r
    task.started = time.perf_counter()


def _read_events(task: Task) -> None:
    if task.events is None:
        return
    while True:
        try:
            chunk = os.read(task.events, 1 << 14)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            return
        task.buffer += chunk
        *lines, task.buffer = task.buffer.split(b"\n")
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if "cell" in ev:
                task.cell = (int(ev["cell"]), int(ev["of"]))


def _close(task: Task) -> None:
    if task.events is not None:
        os.close(task.events)
        task.events = None
    if task.proc is not None and task.proc.stdin:
        try:
            task.proc.stdin.close()
        except OSError:
            pass


def stop(tasks: list[Task], grace: float = GRACE_SECONDS) -> None:
    """SIGTERM every worker (it stops its kernel and cleans up), then SIGKILL what is left."""
    for t in tasks:
        if t.proc and t.proc.poll() is None:
            try:
                t.proc.terminate()
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace
    for t in tasks:
        if not t.proc:
            continue
        try:
            t.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(t.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            t.proc.wait()
    for t in tasks:
        _close(t)


def run_tasks(tasks: list[Task], n_jobs: int, env: dict, on_start: Callable[[Task], None],
              on_done: Callable[[Task, dict | None], None], progress: Progress) -> None:
    """Run every task, ``n_jobs`` at a time, each only after the tasks named in its ``after``
    have finished; ``on_start(task)`` must set its ``workdir`` and
    ``spec``; ``on_done(task, result)`` is called here when its
    worker exits (``result`` is the worker's ``result.json``, or None if it wrote none). Raises
    :class:`Interrupted` on SIGINT/SIGTERM/SIGHUP, after stopping every worker."""
    queue = deque(tasks)
    running: list[Task] = []
    finished: set[str] = set()
    with _Signals() as sig:
        try:
            while queue or running:
                if sig.received is not None:
                    break
                while queue and len(running) < n_jobs:
                    task = _next_ready(queue, finished, bool(running))
                    if task is None:
                        break
                    on_start(task)
                    _start(task, env)
                    running.append(task)
                fds = [t.events for t in running if t.events is not None]
                try:
                    select.select(fds, [], [], 0.25)
                except InterruptedError:
                    pass
                now = time.perf_counter()
                for task in running:
                    _read_events(task)
                for task in running:
                    where = f"cell {task.cell[0]}/{task.cell[1]}" if task.cell else "starting its kernel"
                    progress.set(task.name, f"  {task.name}: {where} ({_fmt(now - task.started)})")
                for task in [t for t in running if t.proc.poll() is not None]:
                    _read_events(task)
                    _close(task)
                    running.remove(task)
                    progress.drop(task.name)
                    if sig.received is not None:   # interrupted: commit nothing more
                        running.append(task)       # reported as cancelled below
                        break
                    result = None
                    if task.result_path.exists():
                        try:
                            result = json.loads(task.result_path.read_text())
                        except ValueError:
                            result = None
                    finished.add(task.name)
                    on_done(task, result)
        finally:
            stop(running)
            for t in running:
                progress.drop(t.name)
        if sig.received is not None:
            raise Interrupted(_cancel_message(sig.received, running, list(queue)), sig.received)


def _next_ready(queue: deque, finished: set[str], busy: bool) -> Task | None:
    """Take from ``queue`` the first task whose ``after`` tasks have all finished; with nothing
    running and nothing ready (a cycle of ``after``), the first task anyway."""
    for task in queue:
        if task.after <= finished:
            queue.remove(task)
            return task
    return None if busy else queue.popleft()


def _cancel_message(signum: int, running: list[Task], queued: list[Task]) -> str:
    name = signal.Signals(signum).name
    parts = [f"{t.name} (running, stopped)" for t in running] + [f"{t.name} (queued)" for t in queued]
    cancelled = ", ".join(parts) if parts else "nothing was running"
    return (f"interrupted ({name}): cancelled {cancelled}; nothing of theirs was moved into place, "
            "their earlier outputs are unchanged")


def worker_log_tail(task: Task, lines: int = 15) -> str:
    try:
        text = task.log_path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])
