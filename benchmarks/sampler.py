"""Benchmark of the random-network sampler (``countingargs.nets.sampler``, chapters 02 and 03).

Prints, on the machine it runs on: networks per second; the achieved GFLOP/s counting only the
networks' own arithmetic (``sampler.forward_flops``) over the whole wall time (random numbers,
encoding and counting included); the same run's dense float32 matmul GFLOP/s; their ratio; the
speedup over a straightforward per-network loop (same weights, one ``x @ W + b`` chain per
network); and where the time goes.

    python benchmarks/sampler.py                       # 7->40->40->1 relu, 200,000 networks
    python benchmarks/sampler.py --samples 1000000 --workers 2 --block 64 --chunk 2048
    python benchmarks/sampler.py --device cuda --chunk 65536 --samples 10000000

On a shared machine, run it with ``nice`` and read the numbers as lower bounds on speed.
"""
from __future__ import annotations

import argparse
import time

import torch

from countingargs.nets import sampler as V


def dense_gflops(device: str, n: int = 2048, reps: int = 5) -> tuple[float, float]:
    """Best float32 ``n x n`` matmul GFLOP/s, and the cores this process kept busy meanwhile."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best, cores = float("inf"), 1.0
    for _ in range(reps + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        c0, t0 = time.process_time(), time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if dt < best:
            best, cores = dt, (time.process_time() - c0) / dt
    return 2 * n ** 3 / best / 1e9, cores


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--inputs", type=int, default=7)
    p.add_argument("--hidden", type=int, nargs="+", default=[40, 40])
    p.add_argument("--samples", type=int, default=200_000)
    p.add_argument("--chunk", type=int, default=2048)
    p.add_argument("--block", type=int, default=64)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--loop-samples", type=int, default=2000,
                   help="networks for the per-network loop baseline")
    p.add_argument("--activation", default="relu")
    p.add_argument("--encoding", default="01", choices=["01", "pm1"],
                   help="inputs in {0,1} or {-1,+1}")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args(argv)

    flops = V.forward_flops(a.inputs, a.hidden)
    dense_before, cores_before = dense_gflops(a.device)
    V.sample_functions(a.inputs, a.hidden, min(a.samples, 4 * a.chunk), chunk=a.chunk,
                       block=a.block, workers=a.workers, device=a.device,
                       encoding=a.encoding)  # warm-up
    c0, t0 = time.process_time(), time.perf_counter()
    fc = V.sample_functions(a.inputs, a.hidden, a.samples, sigma_w=1.0, sigma_b=0.1,
                            activation=a.activation, seed=1, chunk=a.chunk, block=a.block,
                            workers=a.workers, device=a.device, encoding=a.encoding)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    dense_after, cores_after = dense_gflops(a.device)
    dense, dense_cores = max((dense_before, cores_before), (dense_after, cores_after))
    rate = a.samples / wall
    gf = rate * flops / 1e9

    # the straightforward per-network loop: one network at a time (its own normal_ call, a
    # chain of x @ W + b, sign, pack, a dict of counts), on one torch thread, which is faster
    # than two for matrices this small
    g = torch.Generator(device=a.device).manual_seed(1)
    x = V.cube(a.inputs, device=a.device, encoding=a.encoding)
    counts: dict[bytes, int] = {}
    t0 = time.perf_counter()
    with V.torch_threads(1):
        for m in range(a.loop_samples):
            buf = V.draw_params(1, a.inputs, a.hidden, 1.0, 0.1, g, a.device)
            out = V.forward_per_network(buf, x, a.inputs, a.hidden, a.activation)
            key = V.pack_bits(out > 0).cpu().numpy().tobytes()
            counts[key] = counts.get(key, 0) + 1
    loop_wall = time.perf_counter() - t0
    loop_rate = a.loop_samples / loop_wall

    t = fc.timing
    print(f"architecture      : {a.inputs}->{'->'.join(map(str, a.hidden))}->1 {a.activation}, "
          f"{2 ** a.inputs} inputs ({a.encoding}), {V.n_params(a.inputs, a.hidden)} parameters, "
          f"{flops / 1e6:.3f} MFLOP per network")
    print(f"device            : {a.device}, torch threads {torch.get_num_threads()}, "
          f"workers {t['workers']}, chunk {a.chunk}, block {a.block}")
    print(f"networks          : {a.samples} in {wall:.2f} s -> {rate:,.0f} networks/s "
          f"({fc.n_distinct} distinct functions)")
    print(f"achieved GFLOP/s  : {gf:.1f} (network arithmetic over the whole wall time)")
    print(f"dense matmul      : {dense:.1f} GFLOP/s (float32 2048x2048, best of before/after "
          f"the sampler: {dense_before:.1f} before)")
    print(f"ratio             : {gf / dense:.3f}")
    print(f"per-network loop  : {loop_rate:,.0f} networks/s -> speedup {rate / loop_rate:.1f}x")
    print(f"CPU use           : {cpu / wall:.2f} cores busy on average during sampling, "
          f"{dense_cores:.2f} during the best dense matmul (fewer than the threads: other "
          f"processes took CPU time)")
    if a.device == "cpu":
        per_core = (gf / max(cpu / wall, 1e-9)) / (dense / max(dense_cores, 1e-9))
        print(f"ratio per busy core: {per_core:.3f} (both rates divided by the cores this process "
              f"actually kept busy; read this one on a shared machine)")
    busy = t["random"] + t["forward"] + t["encode"]
    other = max(t["sample_wall"] - busy, 0.0)
    print("time breakdown    : (per worker, seconds of wall time)")
    for k, v in [("random numbers", t["random"]), ("forward (matmuls)", t["forward"]),
                 ("encode bits", t["encode"]), ("threads/other", other),
                 ("counting (sort)", t["count"])]:
        print(f"  {k:<18}: {v:7.3f} s  {100 * v / wall:5.1f}%")
    return {"rate": rate, "gflops": gf, "dense": dense, "ratio": gf / dense,
            "speedup": rate / loop_rate}


if __name__ == "__main__":
    main()
