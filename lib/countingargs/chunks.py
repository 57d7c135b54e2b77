"""Heavy loops as independent seeded chunks: in process, or on Dask distributed.

A chapter's heavy step (sampling 10^8 random networks, training many seeds, LLC chains) is cut
into *chunks*: each chunk is one call ``fn(**chunk)`` of a top-level function, with its own
``seed`` and ``chunk`` index from which it derives its random streams
(:func:`countingargs.nets.seeding.chunk_generator`). Results are merged in chunk order, so they
are the same whatever runs them: in this process, a :class:`distributed.LocalCluster` with one
or many workers, or an existing cluster.

``scheduler`` (a notebook parameter, recorded in the provenance):

- ``""``            in process, one chunk after another (the default for quick and standard)
- ``"local"``       a LocalCluster on this machine, one single-threaded worker per core
- ``"local:N"``     a LocalCluster with N workers
- ``"tcp://H:P"``   an existing scheduler (e.g. started by ``dask scheduler`` on a cluster, or
                    by ``dask-jobqueue`` on SLURM / PBS)
- ``"FILE.json"``   an existing scheduler, by its scheduler file

Checkpoints: with ``checkpoint=DIR`` each finished chunk's result is written to
``DIR/<name>/<key>.pkl`` (atomically) under a key made of the function, its arguments and the
library source it imports; a killed run started again loads the finished chunks and runs the
rest. A failing chunk is retried ``retries`` times, then reported by chunk index and seed.
CUDA: the chunk function receives ``device`` among its arguments when the caller passes it;
GPU random streams differ from CPU ones, so such results are kept apart by the caller.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence


class ChunkError(RuntimeError):
    """A chunk failed after its retries; names the chunk and its seed."""


@dataclass
class ChunkRun:
    """``results``: one per chunk, in chunk order. ``info``: where it ran (scheduler, workers,
    threads per worker), how many chunks were computed and how many loaded from checkpoints."""

    results: list
    info: dict = field(default_factory=dict)


def _source_salt(fn: Callable) -> str:
    """Hash of the library files the chunk function's module imports (a code change
    invalidates the checkpoints)."""
    from .build.deps import closure

    h = hashlib.sha256()
    for p in closure([f"import {fn.__module__}"]):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def chunk_key(fn: Callable, chunk: Mapping[str, Any], salt: str = "") -> str:
    payload = json.dumps({"fn": f"{fn.__module__}.{fn.__qualname__}", "args": chunk, "salt": salt},
                         sort_keys=True, default=repr)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _call(fn: Callable, chunk: dict, threads: int):
    import torch

    torch.set_num_threads(threads)
    return fn(**chunk)


def _save(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


class _Progress:
    def __init__(self, name: str, total: int, stream=None, every: float = 2.0):
        self.name, self.total, self.done = name, total, 0
        self.stream = stream if stream is not None else sys.__stderr__
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.every = every

    def step(self, n: int = 1, force: bool = False) -> None:
        self.done += n
        now = time.perf_counter()
        if self.stream is None or not (force or now - self.last >= self.every or self.done == self.total):
            return
        self.last = now
        el = now - self.t0
        rate = self.done / el if el > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        print(f"[{self.name}] chunks {self.done}/{self.total}, {rate:.2f}/s, ETA {eta:.0f}s",
              file=self.stream, flush=True)


def parse_scheduler(scheduler: str) -> tuple[str, int | None]:
    """``(kind, n_workers)`` with kind in ``inprocess``, ``local``, ``address``, ``file``."""
    s = (scheduler or "").strip()
    if s in ("", "none", "inprocess"):
        return "inprocess", None
    if s == "local" or s.startswith("local:"):
        n = s.split(":", 1)[1] if ":" in s else ""
        if n and (not n.isdigit() or int(n) < 1):
            raise ValueError(f"scheduler {scheduler!r}: 'local:N' needs a worker count N >= 1")
        return "local", int(n) if n else None
    if s.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        return "address", None
    if s.endswith(".json"):
        if not Path(s).exists():
            raise ValueError(f"scheduler file {s} does not exist")
        return "file", None
    raise ValueError(f"unknown scheduler {scheduler!r}: use '' (in process), 'local', 'local:N', "
                     "'tcp://HOST:PORT' or a scheduler file ending in .json")


def map_chunks(fn: Callable, chunks: Sequence[Mapping[str, Any]], *, name: str,
               scheduler: str = "", threads: int = 1, checkpoint: str | os.PathLike | None = None,
               retries: int = 1, stream=None) -> ChunkRun:
    """Run ``fn(**chunk)`` for every chunk and return the results in chunk order.

    Every chunk must hold ``seed`` and ``chunk`` (its index), used in error reports and, by
    ``fn``, to derive its random streams. ``fn`` must be a top-level function of an importable
    module (it is pickled to the workers). ``threads``: torch threads per chunk call.
    """
    chunks = [dict(c) for c in chunks]
    for i, c in enumerate(chunks):
        if "seed" not in c or "chunk" not in c:
            raise ValueError(f"chunk {i} of {name} needs 'seed' and 'chunk' keys, got {sorted(c)}")
    kind, n_workers = parse_scheduler(scheduler)
    salt = _source_salt(fn) if checkpoint else ""
    folder = Path(checkpoint) / name if checkpoint else None
    keys = [chunk_key(fn, c, salt) for c in chunks]
    results: list[Any] = [None] * len(chunks)
    todo = []
    for i, k in enumerate(keys):
        path = folder / f"{k}.pkl" if folder else None
        if path is not None and path.exists():
            with open(path, "rb") as fh:
                results[i] = pickle.load(fh)
        else:
            todo.append(i)
    loaded = len(chunks) - len(todo)
    prog = _Progress(name, len(chunks), stream)
    prog.done = loaded
    info = {"scheduler": scheduler or "inprocess", "kind": kind, "chunks": len(chunks),
            "computed": len(todo), "from_checkpoint": loaded, "threads_per_worker": threads}

    def failed(i: int, exc: BaseException) -> ChunkError:
        c = chunks[i]
        return ChunkError(f"{name}: chunk {c['chunk']} (seed {c['seed']}) failed after "
                          f"{retries} retr{'y' if retries == 1 else 'ies'}: "
                          f"{type(exc).__name__}: {exc}")

    if kind == "inprocess":
        info["workers"] = 1
        for i in todo:
            for attempt in range(retries + 1):
                try:
                    results[i] = _call(fn, chunks[i], threads)
                    break
                except Exception as exc:  # noqa: BLE001 - reported with the chunk's identity
                    if attempt == retries:
                        raise failed(i, exc) from exc
            if folder is not None:
                _save(folder / f"{keys[i]}.pkl", results[i])
            prog.step()
        return ChunkRun(results, info)

    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if kind == "local":
        cluster = LocalCluster(n_workers=n_workers or os.cpu_count(), threads_per_worker=1,
                               processes=True, host="127.0.0.1", dashboard_address=None,
                               silence_logs=40)
        client = Client(cluster)
    elif kind == "file":
        client = Client(scheduler_file=scheduler)
    else:
        client = Client(scheduler)
    try:
        info["workers"] = len(client.scheduler_info().get("workers", {}))
        futures = {client.submit(_call, fn, chunks[i], threads, key=f"{name}-{keys[i]}",
                                 retries=retries, pure=False): i for i in todo}
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                results[i] = fut.result()
            except Exception as exc:  # noqa: BLE001
                for other in futures:
                    other.cancel()
                raise failed(i, exc) from exc
            if folder is not None:
                _save(folder / f"{keys[i]}.pkl", results[i])
            prog.step()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return ChunkRun(results, info)
