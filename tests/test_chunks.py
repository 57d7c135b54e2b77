"""Chunked heavy loops (countingargs.chunks): the same results in process and on a Dask
LocalCluster (loopback only) with 1 and 2 workers, resumable checkpoints, retries and clear
errors."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from countingargs import chunks
from countingargs.chunks import ChunkError, map_chunks, parse_scheduler
from countingargs.nets.sampler import sample_functions

HERE = Path(__file__).resolve().parent
LIB = HERE.parent / "lib"


def _same(a, b):
    (fa, sa), (fb, sb) = a, b
    assert fa.codes.tobytes() == fb.codes.tobytes()
    assert fa.counts.tobytes() == fb.counts.tobytes()
    assert sa.tobytes() == sb.tobytes()


def test_sampler_on_local_cluster_1_and_2_workers_matches_in_process(workers_env):
    kw = dict(n_inputs=5, hidden=[16, 16], n_samples=9000, chunk=500, sigma_b=0.1,
              keep_samples=True, seed=11)
    ref = sample_functions(**kw, workers=1, scheduler="")
    assert ref[0].timing["run"]["kind"] == "inprocess"
    _same(ref, sample_functions(**kw, workers=2, per_task=1500, scheduler=""))
    for sched, per_task in (("local:1", None), ("local:2", 1000), ("local:2", 3500)):
        got = sample_functions(**kw, scheduler=sched, per_task=per_task)
        _same(ref, got)
        info = got[0].timing["run"]
        assert info["kind"] == "local" and info["workers"] == int(sched[-1])
        assert info["threads_per_worker"] == 1 and info["device"] == "cpu"
    # the default scheduler comes from the environment
    os.environ["COUNTINGARGS_SCHEDULER"] = "local:2"
    try:
        got = sample_functions(**kw)
    finally:
        del os.environ["COUNTINGARGS_SCHEDULER"]
    _same(ref, got)
    assert got[0].timing["run"]["scheduler"] == "local:2"
    rows = {(h["scheduler"], h["workers"]) for h in chunks.history()}
    assert {("local:1", 1), ("local:2", 2)} <= rows


def test_llama_sampling_on_local_cluster_matches_in_process(workers_env):
    """Chapter 03's sampling loop: the same analysed networks and function counts."""
    from countingargs.chapters.ch03_llama import experiment as L

    fam = L.feature_family(7, n_random=8, seed=0)
    kw = dict(sigma_w=1.0, sigma_b=0.1, max_analysed=30, chunk=256)
    ref = L.sample_llamas(1000, 3, fam, **kw)
    got = L.sample_llamas(1000, 3, fam, **kw, scheduler="local:2")
    assert ref.to_csv() == got.to_csv()
    assert list(ref.attrs["f_counts"].items()) == list(got.attrs["f_counts"].items())
    assert (ref["group"] == "constant").sum() == 30  # the cap binds across chunks


def test_failing_chunk_is_retried_then_reported_on_the_cluster(workers_env, tmp_path):
    import chunk_fns

    cs = [dict(seed=7, chunk=i) for i in range(4)]
    run = map_chunks(chunk_fns.flaky, [dict(c, marker=str(tmp_path / "m")) for c in cs],
                     name="flaky", scheduler="local:2", retries=1)
    assert run.results == [0, 10, 20, 30]
    with pytest.raises(ChunkError, match=r"bad: chunk 2 \(seed 7\) failed after 1 retry.*broken"):
        map_chunks(chunk_fns.fails, [dict(c, bad=2) for c in cs], name="bad",
                   scheduler="local:2", retries=1)


def test_failing_chunk_in_process(tmp_path):
    sys.path.insert(0, str(HERE))
    try:
        import chunk_fns
    finally:
        sys.path.remove(str(HERE))
    cs = [dict(seed=3, chunk=i) for i in range(3)]
    run = map_chunks(chunk_fns.flaky, [dict(c, marker=str(tmp_path / "m")) for c in cs],
                     name="flaky", scheduler="", retries=1, workers=2)
    assert run.results == [0, 10, 20]
    with pytest.raises(ChunkError, match=r"chunk 1 \(seed 3\) failed after 2 retries"):
        map_chunks(chunk_fns.fails, [dict(c, bad=1) for c in cs], name="bad", retries=2)
    with pytest.raises(ChunkError, match=r"chunk 1 \(seed 3\) failed after 0 retries"):
        map_chunks(chunk_fns.fails, [dict(c, bad=1) for c in cs], name="bad", retries=0, workers=2)


_KILLED_RUN = """
import sys
sys.path[:0] = [{lib!r}, {here!r}]
import chunk_fns
from countingargs.chunks import map_chunks
map_chunks(chunk_fns.draw, [dict(seed=5, chunk=i, n=100, log={log!r}, sleep=0.25) for i in range(12)],
           name="draw", checkpoint={ckpt!r})
print("finished")
"""


def test_killed_run_resumes_from_finished_chunks(tmp_path):
    sys.path.insert(0, str(HERE))
    try:
        import chunk_fns
    finally:
        sys.path.remove(str(HERE))
    ckpt, log = tmp_path / "ckpt", tmp_path / "calls.log"
    script = _KILLED_RUN.format(lib=str(LIB), here=str(HERE), log=str(log), ckpt=str(ckpt))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(ckpt.glob("draw/*.pkl"))) < 3:
        time.sleep(0.05)
    proc.kill()
    out, _ = proc.communicate()
    assert b"finished" not in out, "the run ended before it was killed: make its chunks slower"
    done_before = len(list(ckpt.glob("draw/*.pkl")))
    assert 3 <= done_before < 12
    log.write_text("")
    cs = [dict(seed=5, chunk=i, n=100, log=str(log), sleep=0.25) for i in range(12)]  # same keys
    err = io.StringIO()
    chunks.PROGRESS_EVERY, every = 0.0, chunks.PROGRESS_EVERY
    try:
        run = map_chunks(chunk_fns.draw, cs, name="draw", checkpoint=ckpt, stream=err)
    finally:
        chunks.PROGRESS_EVERY = every
    computed = sorted(int(x) for x in log.read_text().split())
    assert run.info["from_checkpoint"] == done_before
    assert run.info["computed"] == 12 - done_before == len(computed)
    fresh = [chunk_fns.draw(5, i, 100) for i in range(12)]
    assert all(a.tobytes() == b.tobytes() for a, b in zip(run.results, fresh))
    assert f"[draw] chunks 12/12" in err.getvalue()
    # a third run computes nothing
    log.write_text("")
    again = map_chunks(chunk_fns.draw, cs, name="draw", checkpoint=ckpt)
    assert again.info["computed"] == 0 and log.read_text() == ""


def test_checkpoint_key_changes_with_arguments():
    f = sample_functions
    a = chunks.chunk_key(f, dict(seed=1, chunk=0, n=3))
    assert a == chunks.chunk_key(f, dict(chunk=0, n=3, seed=1))
    assert a != chunks.chunk_key(f, dict(seed=2, chunk=0, n=3))
    assert a != chunks.chunk_key(f, dict(seed=1, chunk=0, n=3), salt="other source")


def test_bad_scheduler_and_chunks_are_named():
    assert parse_scheduler("") == ("inprocess", None)
    assert parse_scheduler("local:3") == ("local", 3)
    assert parse_scheduler("tcp://10.0.0.1:8786") == ("address", None)
    for bad, msg in (("local:0", "worker count"), ("local:x", "worker count"),
                     ("nowhere", "unknown scheduler"), ("/no/such/file.json", "does not exist")):
        with pytest.raises(ValueError, match=msg):
            parse_scheduler(bad)
    with pytest.raises(ValueError, match="needs 'seed' and 'chunk'"):
        map_chunks(print, [dict(seed=1)], name="x")
    with pytest.raises(ValueError, match="per_task must be a positive multiple"):
        sample_functions(n_samples=100, chunk=10, per_task=15)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where CUDA is missing")
def test_cuda_asked_without_cuda_fails_clearly():
    with pytest.raises(RuntimeError, match=r"device='cuda' was asked for.*cuda.is_available"):
        sample_functions(n_samples=10, device="cuda")


def test_run_json_records_where_the_chunked_loops_ran(tmp_path):
    from countingargs.notebook import Run

    run = Run(tmp_path / "res", tmp_path / "fig", profile="quick", notebook="00_x", params={})
    sample_functions(n_inputs=3, hidden=[4], n_samples=300, chunk=100, workers=2, scheduler="")
    run.finish()
    import json

    info = json.loads((tmp_path / "res" / "run.json").read_text())
    assert info["device"] == "cpu" and info["cuda_device"] is None
    (row,) = info["chunked"]
    assert row["scheduler"] == "inprocess" and row["chunks"] == 3 and row["threads_per_worker"] == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where CUDA is missing")
def test_chapter_02_trainer_asked_for_cuda_without_cuda_fails_clearly():
    from countingargs.chapters.ch02_volume import experiment as V

    x = V.cube(3)
    with pytest.raises(RuntimeError, match=r"device='cuda' was asked for"):
        V.train_to_fit(x[:4], torch.ones(4, dtype=torch.bool), x, 8, [4], device="cuda")


def test_rebuild_passes_scheduler_and_checkpoint_to_the_kernels(monkeypatch, tmp_path):
    """`rebuild --scheduler/--checkpoint` set the variables the kernels inherit (and nothing else:
    an unknown notebook is still refused by name)."""
    from countingargs.build import cli
    from conftest import REPO

    monkeypatch.delenv("COUNTINGARGS_SCHEDULER", raising=False)
    monkeypatch.delenv("COUNTINGARGS_CHECKPOINT", raising=False)
    rc = cli.main(["rebuild", "--root", str(REPO), "--only", "99_nothing", "--scheduler", "local:2",
                   "--checkpoint", str(tmp_path / "ck")])
    assert rc == 2
    assert os.environ["COUNTINGARGS_SCHEDULER"] == "local:2"
    assert os.environ["COUNTINGARGS_CHECKPOINT"] == str((tmp_path / "ck").resolve())


def test_checkpoint_key_hashes_array_contents():
    """Arrays and tensors enter the key by their bytes: two large arrays whose repr is the same
    (numpy elides the middle) get different keys; the same values give the same key."""
    f = sample_functions
    a = np.zeros(5000)
    b = a.copy()
    b[2500] = 1.0
    assert repr(a) == repr(b)
    key = lambda v: chunks.chunk_key(f, dict(seed=1, chunk=0, params=v))  # noqa: E731
    assert key(a) != key(b)
    assert key(a) == key(a.copy())
    t = torch.zeros(5000)
    assert key(t) == key(torch.zeros(5000)) and key(t) != key(torch.ones(5000))
    assert key(t) != key(t.double())
    assert key({"w": t}) != key({"w": torch.ones(5000)})


def _tiny_training(seed: int):
    from countingargs.nets import transformer as T

    g = torch.Generator().manual_seed(seed)
    corpus = torch.randint(2, 23, (2, 64, 6), generator=g)
    model = T.BatchedTransformer(2, 23, 16, 1, 2, seeds=[seed, seed + 1])
    log = T.train_lm(model, corpus, T.TrainConfig(steps=30, batch_size=16, lr=1e-2, warmup=3),
                     [seed, seed + 1])
    return log, {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_side_by_side_gives_the_results_of_one_after_another():
    calls = {name: (lambda s=s: _tiny_training(s)) for name, s in (("a", 1), ("b", 7), ("c", 3))}
    together = chunks.side_by_side(calls, workers=2)
    alone = chunks.side_by_side(calls, workers=1)
    assert list(together) == ["a", "b", "c"]
    for name in calls:
        assert together[name][0].equals(alone[name][0])
        assert all(torch.equal(together[name][1][k], alone[name][1][k]) for k in alone[name][1])
    assert not torch.equal(together["a"][1]["w.tok"], together["b"][1]["w.tok"])


def test_side_by_side_names_a_failing_call_and_bad_inputs():
    def boom():
        raise ValueError("no good")

    with pytest.raises(ChunkError, match="'second' failed: ValueError: no good"):
        chunks.side_by_side({"first": lambda: 1, "second": boom}, workers=2)
    with pytest.raises(ValueError, match="'x' is not callable"):
        chunks.side_by_side({"x": 3})
    with pytest.raises(ValueError, match="workers >= 1"):
        chunks.side_by_side({"x": lambda: 1}, workers=0)
    assert chunks.side_by_side({}) == {}


def test_side_by_side_map_chunks_on_one_local_cluster(workers_env, monkeypatch):
    import chunk_fns

    chunks.close_clients()
    started = []
    start = chunks._local_cluster
    monkeypatch.setattr(chunks, "_local_cluster", lambda n: started.append(n) or start(n))

    def run(seed):
        return lambda: map_chunks(chunk_fns.draw, [dict(seed=seed, chunk=c, n=5) for c in range(4)],
                                  name=f"draw-{seed}", scheduler="local:2").results

    together = chunks.side_by_side({"a": run(1), "b": run(2)}, workers=2)
    for seed, name in ((1, "a"), (2, "b")):
        want = [np.random.default_rng([seed, c]).random(5) for c in range(4)]
        assert all(np.array_equal(g, w) for g, w in zip(together[name], want))
    assert started == [2] and list(chunks._CLIENTS) == ["local:2"]   # one cluster for both
