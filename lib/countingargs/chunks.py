"""Heavy loops as independent seeded chunks: in process, or on Dask distributed.

A chapter's heavy step (sampling 10^8 random networks, training many seeds, LLC chains) is cut
into *chunks*: each chunk is one call ``fn(**chunk)`` of a top-level function, with its own
``seed`` and ``chunk`` index from which it derives its random streams
(:func:`countingargs.nets.seeding.chunk_generator`). Results are merged in chunk order, so they
are the same whatever runs them: in this process, a :class:`distributed.LocalCluster` with one
or many workers, or an existing cluster.

``scheduler`` (a parameter of the heavy functions; ``None`` reads the environment variable
``COUNTINGARGS_SCHEDULER``, empty by default; recorded in the provenance):

- ``""``            in process (one chunk after another, or ``workers`` threads)
- ``"local"``       a LocalCluster on this machine (loopback only), one single-threaded worker
                    process per core
- ``"local:N"``     a LocalCluster with N workers
- ``"tcp://H:P"``   an existing scheduler (e.g. started by ``dask scheduler`` on a cluster, or
                    by ``dask-jobqueue`` on SLURM / PBS)
- ``"FILE.json"``   an existing scheduler, by its scheduler file

A LocalCluster or client is started once per scheduler string and kept for the rest of the
process (a notebook calls the sampler many times); :func:`close_clients` ends them.

Checkpoints: with ``checkpoint=DIR`` (``None`` reads ``COUNTINGARGS_CHECKPOINT``) each finished
chunk's result is written to ``DIR/<name>/<key>.pkl`` (atomically) under a key made of the
function, its arguments, the library source it imports and the torch and numpy versions; a killed
run started again loads the finished chunks and computes only the rest. A failing chunk is retried
``retries`` times, then reported by chunk index and seed (:class:`ChunkError`).

CUDA: the chunk function receives ``device`` among its arguments when the caller passes it (the
device is then recorded in ``info``); GPU random streams differ from CPU ones, so the caller
keeps such results apart.
"""
from __future__ import annotations

import atexit
import functools
import hashlib
import json
import logging
import os
import pickle
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed as _threads_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence


class ChunkError(RuntimeError):
    """A chunk failed after its retries; names the chunk and its seed."""


@dataclass
class ChunkRun:
    """``results``: one per chunk, in chunk order. ``info``: where it ran (scheduler, kind,
    workers, threads per worker, device), how many chunks were computed and how many loaded
    from checkpoints."""

    results: list
    info: dict = field(default_factory=dict)


def default_scheduler() -> str:
    return os.environ.get("COUNTINGARGS_SCHEDULER", "").strip()


def default_checkpoint() -> str | None:
    return os.environ.get("COUNTINGARGS_CHECKPOINT", "").strip() or None


@functools.lru_cache(maxsize=None)
def _salt_of_module(module: str) -> str:
    from .build.deps import closure

    import numpy
    import torch

    h = hashlib.sha256(f"torch {torch.__version__} numpy {numpy.__version__}".encode())
    for p in closure([f"import {module}"]):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _source_salt(fn: Callable) -> str:
    """Hash of the library files the chunk function's module imports and of the torch and
    numpy versions (a change invalidates the checkpoints; read once per process)."""
    return _salt_of_module(fn.__module__)


def _encode(value: Any) -> Any:
    """JSON stand-in for a chunk argument JSON cannot hold: arrays and tensors by the hash of
    their bytes, shape and dtype (their ``repr`` elides the middle of a large array, so two
    different arrays could share a key); other objects by ``repr``."""
    mod = type(value).__module__
    if mod.startswith("torch") and hasattr(value, "detach"):
        value = value.detach().cpu().contiguous().numpy()
    if mod.startswith(("numpy", "torch")) and hasattr(value, "tobytes") and hasattr(value, "shape"):
        import numpy as np

        arr = np.ascontiguousarray(value)
        return {"array": hashlib.sha256(arr.tobytes()).hexdigest(), "shape": list(arr.shape),
                "dtype": str(arr.dtype)}
    return repr(value)


def chunk_key(fn: Callable, chunk: Mapping[str, Any], salt: str = "") -> str:
    payload = json.dumps({"fn": f"{fn.__module__}.{fn.__qualname__}", "args": chunk, "salt": salt},
                         sort_keys=True, default=_encode)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


_MALLOC_TUNED = False


def _tune_malloc() -> None:
    """Undo, in a Dask worker process, what Dask's default ``MALLOC_TRIM_THRESHOLD_=65536``
    does to glibc: setting it also fixes the mmap threshold, so every freed ~1 MB activation
    block goes back to the system and the next one page-faults afresh (the sampler ran 2.5x
    slower). Sets generous trim and mmap thresholds once per process (Linux glibc only)."""
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    if not sys.platform.startswith("linux") or "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 32 << 20)   # M_MMAP_THRESHOLD (glibc's maximum on 64-bit)
    except (OSError, AttributeError):
        pass


def _call(fn: Callable, chunk: dict, threads: int | None):
    """One chunk on a Dask worker: ``threads`` torch threads (None: leave them)."""
    _tune_malloc()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    return fn(**chunk)


class _torch_threads:
    def __init__(self, n: int | None):
        self.n = n

    def __enter__(self):
        import torch

        self.old = torch.get_num_threads()
        if self.n is not None:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.old)
        return False


def _save(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


PROGRESS_EVERY = 2.0  # seconds between progress lines


class _Progress:
    """``[name] chunks done/total, rate/s, ETA`` on ``stream`` (default: the process's real
    stderr, so notebook outputs stay the same), at most every ``every`` seconds and only for runs
    longer than that; the rate counts computed chunks only (not those loaded from checkpoints)."""

    def __init__(self, name: str, total: int, loaded: int, stream=None, every: float | None = None):
        self.name, self.total, self.done, self.computed = name, total, loaded, 0
        self.stream = stream if stream is not None else sys.__stderr__
        self.t0 = self.last = time.perf_counter()
        self.every, self.printed = PROGRESS_EVERY if every is None else every, False

    def step(self) -> None:
        self.done += 1
        self.computed += 1
        now = time.perf_counter()
        if self.stream is None:
            return
        end = self.done == self.total
        if not (now - self.last >= self.every or (end and self.printed)):
            return
        self.last, self.printed = now, True
        el = now - self.t0
        rate = self.computed / el if el > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        print(f"[{self.name}] chunks {self.done}/{self.total}, {rate:.2f}/s, ETA {eta:.0f}s",
              file=self.stream, flush=True)


def parse_scheduler(scheduler: str) -> tuple[str, int | None]:
    """``(kind, n_workers)`` with kind in ``inprocess``, ``local``, ``address``, ``file``."""
    if not isinstance(scheduler, str):
        raise ValueError(f"scheduler must be a string, got {scheduler!r}")
    s = scheduler.strip()
    if s in ("", "none", "inprocess"):
        return "inprocess", None
    if s == "local" or s.startswith("local:"):
        n = s.split(":", 1)[1] if ":" in s else ""
        if ":" in s and (not n.isdigit() or int(n) < 1):
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


# -- clients, kept per scheduler string for the life of the process ---------------------------
_CLIENTS: dict[str, tuple[Any, Any]] = {}
_CLIENTS_LOCK = threading.RLock()  # calls side by side share one client, never start two


def _local_cluster(n_workers: int | None):
    from distributed import LocalCluster

    return LocalCluster(n_workers=n_workers or os.cpu_count(), threads_per_worker=1,
                        processes=True, host="127.0.0.1", dashboard_address=None,
                        # the scheduler's HTTP routes (health, metrics) on a free loopback
                        # port, not on 8787 of every interface
                        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
                        silence_logs=logging.ERROR)


def get_client(scheduler: str):
    """The Dask client for ``scheduler`` (not in-process), started on first use and kept (one
    per scheduler string, also when threads ask for it at once)."""
    kind, n_workers = parse_scheduler(scheduler)
    if kind == "inprocess":
        raise ValueError("get_client: the in-process scheduler has no client")
    with _CLIENTS_LOCK:
        return _get_client(scheduler, kind, n_workers)


def _get_client(scheduler: str, kind: str, n_workers: int | None):
    key = scheduler.strip()
    if key in _CLIENTS:
        client = _CLIENTS[key][0]
        if client.status == "running":
            return client
        close_clients(key)
    from distributed import Client

    cluster = None
    if kind == "local":
        import dask

        # Dask's default MALLOC_TRIM_THRESHOLD_ for workers also fixes glibc's mmap threshold,
        # so every ~1 MB activation block becomes an mmap with fresh page faults (measured: the
        # sampler ran about 2x slower on a worker); torch's own caching makes the trim moot here
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
            cluster = _local_cluster(n_workers)
        client = Client(cluster)
    elif kind == "file":
        client = Client(scheduler_file=key)
    else:
        client = Client(key)
    _CLIENTS[key] = (client, cluster)
    return client


def close_clients(scheduler: str | None = None) -> None:
    """Close the kept client of ``scheduler`` (all if None) and any LocalCluster it started."""
    for key in [scheduler.strip()] if scheduler is not None else list(_CLIENTS):
        client, cluster = _CLIENTS.pop(key, (None, None))
        log = logging.getLogger("distributed")
        level = log.level
        log.setLevel(logging.ERROR)  # a LocalCluster logs every step of its shutdown
        try:
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()
        finally:
            log.setLevel(level)


atexit.register(close_clients)


# -- what ran where, for the provenance ---------------------------------------------------------
_HISTORY: list[dict] = []


def reset_history() -> None:
    _HISTORY.clear()


def history() -> list[dict]:
    """One row per (name, scheduler, kind, workers, threads, device) of the map_chunks calls of
    this process since :func:`reset_history`: calls, chunks, computed, from_checkpoint."""
    keys = ("name", "scheduler", "kind", "workers", "threads_per_worker", "torch_threads", "device")
    out: dict[tuple, dict] = {}
    for h in _HISTORY:
        k = tuple(h.get(x) for x in keys)
        row = out.setdefault(k, dict(zip(keys, k), calls=0, chunks=0, computed=0, from_checkpoint=0))
        row["calls"] += 1
        for x in ("chunks", "computed", "from_checkpoint"):
            row[x] += h[x]
    return list(out.values())


def side_by_side(calls: Mapping[str, Callable[[], Any]], workers: int | None = None) -> dict[str, Any]:
    """Run independent computations at the same time, in threads of this process, and return
    their results by name (in the order of ``calls``).

    ``calls``: name -> zero-argument callable (e.g. three trainings of a chapter that share no
    state and draw every random number from their own seeded streams; their results are then
    bitwise those of running them one after another). ``workers``: threads at once (None: one
    per CPU core this process may use, at most one per call). Each thread uses the caller's
    torch thread count. A failing call is re-raised as a :class:`ChunkError` that names it."""
    if not calls:
        return {}
    names = list(calls)
    for n in names:
        if not callable(calls[n]):
            raise ValueError(f"side_by_side: {n!r} is not callable")
    if workers is None:
        try:
            workers = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            workers = os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"side_by_side needs workers >= 1, got {workers}")
    import torch

    n_threads = torch.get_num_threads()

    def one(name: str):
        torch.set_num_threads(n_threads)
        try:
            return calls[name]()
        except Exception as exc:  # noqa: BLE001 - reported with the call's name
            raise ChunkError(f"side_by_side: {name!r} failed: {type(exc).__name__}: {exc}") from exc

    if workers == 1 or len(names) == 1:
        return {n: one(n) for n in names}
    with ThreadPoolExecutor(min(workers, len(names))) as pool:
        futs = {n: pool.submit(one, n) for n in names}
        try:
            return {n: futs[n].result() for n in names}
        except BaseException:
            for f in futs.values():
                f.cancel()
            raise


def map_chunks(fn: Callable, chunks: Sequence[Mapping[str, Any]], *, name: str,
               scheduler: str | None = None, threads: int | None = 1, workers: int = 1,
               checkpoint: str | os.PathLike | None = None, retries: int = 1,
               stream=None) -> ChunkRun:
    """Run ``fn(**chunk)`` for every chunk and return the results in chunk order.

    Every chunk must hold ``seed`` and ``chunk`` (its index), used in error reports and, by
    ``fn``, to derive its random streams. ``fn`` must be a top-level function of an importable
    module (it is pickled by reference to the workers). ``threads``: torch threads per chunk call
    (None: unchanged). ``workers``: threads running chunks at once *in process* (a cluster's
    workers are its own). ``scheduler`` and ``checkpoint``: see the module docstring.
    """
    if scheduler is None:
        scheduler = default_scheduler()
    if checkpoint is None:
        checkpoint = default_checkpoint()
    if retries < 0 or workers < 1:
        raise ValueError(f"need retries >= 0 and workers >= 1, got {retries}, {workers}")
    chunks = [dict(c) for c in chunks]
    for i, c in enumerate(chunks):
        if "seed" not in c or "chunk" not in c:
            raise ValueError(f"chunk {i} of {name} needs 'seed' and 'chunk' keys, got {sorted(c)}")
    kind, _ = parse_scheduler(scheduler)
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
    prog = _Progress(name, len(chunks), loaded, stream)
    devices = sorted({str(c["device"]) for c in chunks if "device" in c})
    info = {"name": name, "scheduler": scheduler or "inprocess", "kind": kind,
            "chunks": len(chunks), "computed": len(todo), "from_checkpoint": loaded,
            "torch_threads": threads, "device": ",".join(devices) or "cpu"}

    def failed(i: int, exc: BaseException) -> ChunkError:
        c = chunks[i]
        return ChunkError(f"{name}: chunk {c['chunk']} (seed {c['seed']}) failed after "
                          f"{retries} retr{'y' if retries == 1 else 'ies'}: "
                          f"{type(exc).__name__}: {exc}")

    def done(i: int, value: Any) -> None:
        results[i] = value
        if folder is not None:
            _save(folder / f"{keys[i]}.pkl", value)
        prog.step()

    if kind == "inprocess":
        info.update(workers=1, threads_per_worker=workers)

        def attempt(i: int):
            for a in range(retries + 1):
                try:
                    return fn(**chunks[i])
                except Exception as exc:  # noqa: BLE001 - reported with the chunk's identity
                    if a == retries:
                        raise failed(i, exc) from exc

        with _torch_threads(threads):
            if workers == 1 or len(todo) <= 1:
                for i in todo:
                    done(i, attempt(i))
            else:
                with ThreadPoolExecutor(min(workers, len(todo))) as ex:
                    futs = {ex.submit(attempt, i): i for i in todo}
                    try:
                        for f in _threads_completed(futs):
                            done(futs[f], f.result())
                    except BaseException:
                        for f in futs:
                            f.cancel()
                        raise
        _HISTORY.append(info)
        return ChunkRun(results, info)

    from distributed import as_completed

    client = get_client(scheduler)
    token = uuid.uuid4().hex[:8]  # a fresh key per call: a kept client never reuses a cancelled one
    futures = {client.submit(_call, fn, chunks[i], threads, key=f"{name}-{i}-{keys[i][:12]}-{token}",
                             retries=retries, pure=False): i for i in todo}
    try:
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                value = fut.result()
            except Exception as exc:  # noqa: BLE001
                raise failed(i, exc) from exc
            done(i, value)
            fut.release()
    finally:
        for fut in futures:
            fut.cancel()
    nthreads = client.nthreads()
    info.update(workers=len(nthreads),
                threads_per_worker=max(nthreads.values()) if nthreads else None)
    _HISTORY.append(info)
    return ChunkRun(results, info)
