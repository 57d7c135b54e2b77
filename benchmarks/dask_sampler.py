"""Benchmark of the sampler on Dask distributed (``countingargs.chunks``): scaling and overhead.

Runs the same ``sample_functions`` call (7->40->40->1 relu, 10^6 networks by default) four ways in
one process, and checks that all four give the same counts byte for byte:

- in process, one thread (the reference for one core)
- in process, two threads (the default path of the quick and standard profiles)
- a Dask LocalCluster (loopback) with 1 single-threaded worker process
- a Dask LocalCluster with 2 workers

and prints networks per second, the overhead of Dask on one core (1-worker time over the
1-thread in-process time, minus 1), the scaling efficiency at 2 workers (1-worker time over twice
the 2-worker time) and the clusters' start-up time (paid once per notebook, not per call). Each
timing is the best of ``--reps`` after a warm-up call (workers import torch on first use).

    python benchmarks/dask_sampler.py                      # 10^6 networks
    python benchmarks/dask_sampler.py --samples 200000 --reps 1
    python benchmarks/dask_sampler.py --workers 16 --samples 10000000   # a bigger machine

Aim (issue 17): efficiency >= 0.8 at 2 workers and overhead under 10 %. On a shared 2-core
machine the second worker competes with everything else that runs: read the numbers with the
load printed at the end.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=1_000_000)
    p.add_argument("--inputs", type=int, default=7)
    p.add_argument("--hidden", type=int, nargs="+", default=[40, 40])
    p.add_argument("--chunk", type=int, default=2048)
    p.add_argument("--per-task", type=int, default=None,
                   help="networks per Dask task (default 64 chunks)")
    p.add_argument("--workers", type=int, default=2, help="workers of the larger cluster")
    p.add_argument("--reps", type=int, default=2)
    a = p.parse_args(argv)

    import torch

    from countingargs import chunks
    from countingargs.nets.sampler import sample_functions

    kw = dict(n_inputs=a.inputs, hidden=a.hidden, n_samples=a.samples, chunk=a.chunk, seed=1)

    def timed(**extra):
        best, fc = float("inf"), None
        for _ in range(a.reps):
            t0 = time.perf_counter()
            fc = sample_functions(**kw, **extra)
            best = min(best, time.perf_counter() - t0)
        return best, fc

    torch.set_num_threads(1)
    rows, ref = {}, None
    rows["in process, 1 thread"] = timed(workers=1)
    rows[f"in process, {a.workers} threads"] = timed(workers=a.workers)
    start = {}
    for n in (1, a.workers):
        sched = f"local:{n}"
        t0 = time.perf_counter()
        chunks.get_client(sched).wait_for_workers(n)
        start[n] = time.perf_counter() - t0
        sample_functions(**dict(kw, n_samples=min(a.samples, 4 * a.chunk)), scheduler=sched)  # warm-up
        rows[f"Dask LocalCluster, {n} worker{'s' if n > 1 else ''}"] = timed(
            scheduler=sched, per_task=a.per_task)
        chunks.close_clients(sched)
    ref = rows["in process, 1 thread"][1]
    same = all(fc.codes.tobytes() == ref.codes.tobytes() and fc.counts.tobytes() == ref.counts.tobytes()
               for _, fc in rows.values())
    print(f"{a.samples:,} networks {a.inputs}->{'->'.join(map(str, a.hidden))}->1, chunk {a.chunk}, "
          f"best of {a.reps}; {os.cpu_count()} CPUs")
    for name, (t, _) in rows.items():
        print(f"  {name:32s} {t:8.2f} s  {a.samples / t:12,.0f} networks/s")
    t_in1 = rows["in process, 1 thread"][0]
    t_d1 = rows["Dask LocalCluster, 1 worker"][0]
    t_dn = rows[f"Dask LocalCluster, {a.workers} workers"][0]
    t_inn = rows[f"in process, {a.workers} threads"][0]
    out = dict(overhead=t_d1 / t_in1 - 1, efficiency=t_d1 / (a.workers * t_dn),
               vs_threads=t_inn / t_dn, identical=same, start_1=start[1], start_n=start[a.workers],
               rate_dask_n=a.samples / t_dn, rate_in1=a.samples / t_in1)
    print(f"  overhead of Dask on one core (1 worker / in process 1 thread - 1): {out['overhead']:+.1%}")
    print(f"  scaling efficiency at {a.workers} workers (t1 / ({a.workers} t{a.workers})):"
          f"        {out['efficiency']:.2f}")
    print(f"  {a.workers} Dask workers vs {a.workers} in-process threads (time ratio):      "
          f"{out['vs_threads']:.2f}")
    print(f"  cluster start-up: {start[1]:.1f} s (1 worker), {start[a.workers]:.1f} s "
          f"({a.workers} workers), once per process")
    print(f"  merged counts identical in all four runs: {same}")
    print(f"  load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if not same:
        raise SystemExit("the runs disagree: the chunking changed the results")
    return out


if __name__ == "__main__":
    main()
