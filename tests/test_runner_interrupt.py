"""Interrupts, concurrency and the parallel path: Ctrl-C and SIGKILL during a parallel run, two
runs on one root, a failing notebook among parallel ones, one progress line per running notebook."""
from __future__ import annotations

import io
import json
import os
import pty
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from countingargs.build import RebuildError
from countingargs.build.lock import root_lock
from countingargs.build.supervisor import Progress
from runner_books import alive, cli, make_light_book, snapshot, started_pids, wait_for

NAMES = ("01_a", "02_b", "03_c")


def _held_book(root: Path, extra: dict[str, str] | None = None) -> tuple[Path, Path]:
    """Three light notebooks that, in the quick profile, wait for ``hold/go`` before writing."""
    hold = root / "hold"
    hold.mkdir(parents=True)
    extra = extra or {}
    rows = "".join(f'    {n}: {{n: 2, hold: "{hold}"{extra.get(n, "")}}}\n' for n in NAMES)
    make_light_book(root, NAMES, profiles=f"quick:\n  timeout: 120\n  notebooks:\n{rows}")
    return root, hold


@pytest.fixture
def runner_procs():
    """Runners started by a test; killed if the test fails and leaves one behind (their workers
    then get SIGTERM from the kernel)."""
    procs: list[subprocess.Popen] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.communicate()


def _start_runner(procs: list, root: Path, *args: str) -> subprocess.Popen:
    """The CLI in its own process group, as a shell runs a foreground job."""
    procs.append(subprocess.Popen([sys.executable, "-m", "countingargs", "rebuild", "--profile", "quick",
                             "--jobs", "2", "--root", str(root), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True))
    return procs[-1]


def _two_running(hold: Path, proc: subprocess.Popen) -> dict[str, tuple[int, int]]:
    assert wait_for(lambda: len(started_pids(hold)) >= 2 or proc.poll() is not None, timeout=120), \
        "the notebooks never started"
    assert proc.poll() is None, proc.communicate()
    pids = started_pids(hold)
    assert set(pids) == {"01_a", "02_b"}, pids           # two at a time; 03_c is queued
    return pids


def test_ctrl_c_cancels_queued_stops_kernels_moves_nothing_and_exits_130(tmp_path, runner_procs):
    root, hold = _held_book(tmp_path)
    proc = _start_runner(runner_procs, root)
    pids = _two_running(hold, proc)
    every = [pid for trio in pids.values() for pid in trio]
    err_lines: list[str] = []
    alive_when_reported: list[int] = []

    def read_stderr():
        for line in proc.stderr:
            if "interrupted (SIGINT)" in line:   # the runner is still running here
                alive_when_reported.extend(p for p in every if alive(p))
            err_lines.append(line)

    reader = threading.Thread(target=read_stderr)
    reader.start()
    os.killpg(proc.pid, signal.SIGINT)            # what Ctrl-C in a terminal sends
    out = proc.stdout.read()
    proc.wait(timeout=60)
    reader.join(timeout=10)
    err = "".join(err_lines)
    # the runner stopped every worker, kernel and kernel's child before it said so (and so
    # before it exited and the workers' own watch on it could act)
    assert not alive_when_reported, f"alive when the runner reported the interrupt: {alive_when_reported}"
    assert not [p for p in every if alive(p)], f"alive after the runner exited: {every}"
    assert proc.returncode == 130, (out, err)
    assert ("interrupted (SIGINT): cancelled 01_a (running, stopped), 02_b (running, stopped), "
            "03_c (queued); nothing of theirs was moved into place") in err, err
    assert "Traceback" not in err
    assert not (hold / "03_c.started").exists()
    (hold / "go").write_text("")                  # a kernel still alive would now write its outputs
    wait_for(lambda: False, timeout=1.5)
    assert snapshot(root) == {}
    assert not (root / ".rebuild-tmp").exists() and not (root / "failures").exists()
    with root_lock(root, "test"):                 # the lock was released
        pass


def test_sigkill_of_the_runner_leaves_no_worker_or_kernel_and_moves_nothing(tmp_path, runner_procs):
    root, hold = _held_book(tmp_path)
    proc = _start_runner(runner_procs, root)
    pids = _two_running(hold, proc)
    proc.kill()
    proc.communicate(timeout=30)
    # the kernels are still inside a cell (waiting for "go"), so only the workers' watch on their
    # runner can end them
    every = [pid for trio in pids.values() for pid in trio]
    assert wait_for(lambda: not any(alive(p) for p in every), timeout=15), \
        f"still alive after the runner was killed: {[p for p in every if alive(p)]}"
    (hold / "go").write_text("")
    wait_for(lambda: False, timeout=1.5)
    assert snapshot(root) == {}
    tmp = root / ".rebuild-tmp"
    assert not tmp.exists() or not any(tmp.iterdir()), list(tmp.iterdir())   # workers cleaned up
    with root_lock(root, "test"):                 # a killed holder does not leave a stale lock
        pass


def test_second_run_on_one_root_is_refused_and_a_parallel_failure_is_reported(tmp_path, runner_procs):
    root, hold = _held_book(tmp_path, extra={"02_b": ", fail: true"})
    proc = _start_runner(runner_procs, root)
    _two_running(hold, proc)
    for cmd in (["rebuild", "--profile", "quick"], ["render"]):
        second = cli(root, *cmd)
        assert second.returncode == 2, second.stderr
        assert f"another run holds the lock of the book at {root}: rebuild --profile quick (pid {proc.pid}" \
            in second.stderr, second.stderr
    with pytest.raises(RebuildError, match="another run holds the lock"):
        with root_lock(root, "test"):
            pass
    (hold / "go").write_text("")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, (out, err)
    assert "2 ran, 0 skipped, 1 failed" in out, out
    assert "02_b (quick): FAILED" in out and "RuntimeError: deliberate failure for the test" in out
    assert (root / "failures" / "quick" / "02_b.ipynb").exists()
    for name in ("01_a", "03_c"):
        assert json.loads((root / "results" / "quick" / name / "glue.json").read_text()) == {"total": 1.5}
    assert not (root / "results" / "quick" / "02_b").exists()
    assert not (root / "book" / "generated" / "02_b.ipynb").exists()
    assert not (root / ".rebuild-tmp").exists()
    assert "without encryption" not in out + err


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _screen(raw: str) -> list[str]:
    """What a terminal shows after ``raw`` (handles the two escapes Progress uses)."""
    lines, cur = [""], 0
    i = 0
    while i < len(raw):
        if raw.startswith("\x1b[1A", i):
            cur = max(0, cur - 1)
            i += 4
        elif raw.startswith("\x1b[2K", i):
            lines[cur] = ""
            i += 4
        elif raw[i] == "\n":
            cur += 1
            if cur == len(lines):
                lines.append("")
            i += 1
        else:
            lines[cur] += raw[i]
            i += 1
    while lines and lines[-1] == "":
        lines.pop()
    return lines


def test_one_progress_line_per_running_notebook():
    term = _Terminal()
    logged = []
    p = Progress(lambda m: (logged.append(m), term.write(m + "\n")), stream=term, enabled=True, width=80)
    p.set("01_a", "  01_a: cell 1/9 (0s)")
    p.set("02_b", "  02_b: starting its kernel (0s)")
    for i in range(2, 9):
        p.set("01_a", f"  01_a: cell {i}/9 ({i}s)")
        p.set("02_b", f"  02_b: cell {i - 1}/7 ({i}s)")
    assert _screen(term.getvalue()) == ["  01_a: cell 8/9 (8s)", "  02_b: cell 7/7 (8s)"]
    p.drop("02_b")
    p.log("[2/3] 02_b (quick): done in 8.0s")
    p.set("03_c", "  03_c: starting its kernel (0s)")
    assert _screen(term.getvalue()) == ["[2/3] 02_b (quick): done in 8.0s", "  01_a: cell 8/9 (8s)",
                                        "  03_c: starting its kernel (0s)"]
    p.set("01_a", "  01_a: " + "x" * 200)
    assert all(len(line) < 80 for line in _screen(term.getvalue()))
    p.close()
    assert _screen(term.getvalue()) == ["[2/3] 02_b (quick): done in 8.0s"]
    quiet = Progress(logged.append, stream=io.StringIO())   # not a terminal: log lines only
    quiet.set("01_a", "cell 1/2")
    quiet.log("message")
    assert logged[-1] == "message" and quiet.stream.getvalue() == ""


def test_on_a_terminal_each_running_notebook_has_one_status_line(tmp_path, runner_procs):
    root, hold = _held_book(tmp_path)
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "countingargs", "rebuild", "--profile", "quick",
                             "--jobs", "2", "--root", str(root)], stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, start_new_session=True,
                            env={**os.environ, "COLUMNS": "100"})
    runner_procs.append(proc)
    os.close(slave)
    chunks: list[bytes] = []

    def drain():
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    _two_running(hold, proc)

    def screen():
        return _screen(b"".join(chunks).decode(errors="replace").replace("\r", ""))

    def status_lines():
        return [ln for ln in screen() if ln.startswith("  0")]

    assert wait_for(lambda: len(status_lines()) == 2 and all("cell 4/6" in ln for ln in status_lines()),
                    timeout=30), screen()
    for _ in range(3):   # as the seconds tick, the lines are redrawn in place, never added
        wait_for(lambda: False, timeout=1.1)
        lines = status_lines()
        assert [ln.split(":")[0] for ln in lines] == ["  01_a", "  02_b"], screen()
    (hold / "go").write_text("")
    assert proc.wait(timeout=120) == 0
    reader.join(timeout=10)
    os.close(master)
    final = screen()
    assert not [ln for ln in final if ln.startswith("  0")], final   # no status line left behind
    assert any("rebuild quick: 3 ran, 0 skipped, 0 failed" in ln for ln in final), final
    assert sum("03_c (quick): done" in ln for ln in final) == 1, final
