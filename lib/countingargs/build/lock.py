"""One rebuild (or render) at a time per book root.

:func:`root_lock` takes an exclusive ``flock`` on ``<root>/.rebuild.lock`` for the duration of a
rebuild, render or replot. A second command on the same root is refused at once with a message
naming the holder (pid, command, start time); a lock held by a process that died (even by
SIGKILL) is released by the kernel, so no stale lock ever needs removing by hand. The file itself
is never deleted (deleting a lock file others may hold open would let two runs in).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from contextlib import contextmanager
from pathlib import Path

from . import RebuildError

LOCK_NAME = ".rebuild.lock"


@contextmanager
def root_lock(root: Path, what: str):
    """Hold the book root's lock while the block runs; refuse at once if another process holds it."""
    import fcntl

    path = Path(root) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RebuildError(_held_message(path, root)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps({
            "pid": os.getpid(), "command": what,
            "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}) + "\n").encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _held_message(path: Path, root: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    who = (f"{info.get('command', 'a command')} (pid {info.get('pid', '?')}, started "
           f"{info.get('started', '?')})") if info else "another process"
    return (f"another run holds the lock of the book at {root}: {who}. Two runs on one book would "
            "overwrite each other's outputs; wait for it to finish, or stop it, then run again")
