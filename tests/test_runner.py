"""Behaviour of the rebuild runner on a tiny book made up for each test."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

from countingargs.build import runner as rb
from runner_books import cli, make_light_book, quiet, snapshot

PARAMS = '''profile = "standard"
results_dir = "res"
figures_dir = "figs"
n = 3
scale = 1.5
fail = False
'''
BODY = '''import pandas as pd, matplotlib.pyplot as plt
from countingargs.notebook import Run
run = Run(results_dir, figures_dir, profile=profile, notebook="01_ok")
run.table("squares", pd.DataFrame({"i": range(n), "sq": [scale * i * i for i in range(n)]}))
fig, ax = plt.subplots(); ax.plot(range(n)); run.figure(fig, "ok-line")
run.glue("total", sum(scale * i * i for i in range(n)))
'''
FAIL = '''if fail:
    raise RuntimeError("deliberate failure for the test")
run.finish(seeds=[0])
'''


def make_book(root: Path, profiles: str | None = None) -> Path:
    (root / "notebooks").mkdir(parents=True)
    (root / "_config.yml").write_text("title: test\n")
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(PARAMS)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# OK"), p, nbformat.v4.new_code_cell(BODY),
                nbformat.v4.new_code_cell(FAIL)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    jupytext.write(nb, root / "notebooks" / "01_ok.md", fmt="md:myst")
    (root / "notebooks" / "profiles.yml").write_text(profiles or (
        "quick:\n  timeout: 120\n  notebooks:\n    01_ok: {n: 2}\n"
        "standard:\n  notebooks:\n    01_ok: {}\n"))
    return root


def test_plan_refuses_bad_requests_and_runs_nothing(tmp_path):
    root = make_book(tmp_path)
    cases = [
        (dict(profile="fast"), "unknown profile 'fast'; valid profiles: quick, standard, full"),
        (dict(profile="full"), "not defined in notebooks/profiles.yml"),
        (dict(profile="quick", only=["02_nope"]), "unknown notebook '02_nope'; valid notebooks: 01_ok"),
        (dict(profile="quick", only=["01_ok"], overrides={"bogus": 1}),
         "unknown parameter 'bogus'; valid parameters: n, scale, fail"),
        (dict(profile="quick", only=["01_ok"], overrides={"n": "three"}),
         "'n' = 'three' has type str, expected int"),
        (dict(profile="quick", only=["01_ok"], overrides={"results_dir": "/tmp"}), "set by the runner"),
    ]
    for kwargs, message in cases:
        with pytest.raises(rb.RebuildError) as err:
            rb.rebuild(root, log=quiet, **kwargs)
        assert message in str(err.value)
    assert not (root / "results").exists() and not (root / "book").exists()


def test_profile_file_errors_are_named(tmp_path):
    root = make_book(tmp_path, "quick:\n  notebooks:\n    02_missing: {}\n")
    with pytest.raises(rb.RebuildError, match="names notebook '02_missing'"):
        rb.plan(root, "quick")
    (root / "notebooks" / "profiles.yml").write_text("quick:\n  notebooks:\n    01_ok: {n: 1.5}\n")
    with pytest.raises(rb.RebuildError, match="expected int"):
        rb.plan(root, "quick")


def test_int_accepted_for_float_but_not_bool_for_int(tmp_path):
    root = make_book(tmp_path)
    assert rb.plan(root, "quick", ["01_ok"], {"scale": 2})[0].resolved["scale"] == 2
    with pytest.raises(rb.RebuildError, match="expected int"):
        rb.plan(root, "quick", ["01_ok"], {"n": True})


def test_success_moves_everything_into_place_then_skips(tmp_path):
    root = make_book(tmp_path)
    [out] = rb.rebuild(root, "quick", log=quiet, n_jobs=1)
    assert out.status == "ran", out.message
    res = root / "results" / "quick" / "01_ok"
    assert (res / "squares.csv").read_text() == "i,sq\n0,0\n1,1.5\n"
    assert json.loads((res / "glue.json").read_text()) == {"total": 1.5}
    prov = json.loads((res / "provenance.json").read_text())
    for key in ("commit", "dirty", "profile", "parameters", "seeds", "packages", "device",
                "torch_threads", "wall_seconds", "input_hash", "outputs"):
        assert key in prov, key
    assert prov["parameters"] == {"n": 2, "scale": 1.5, "fail": False}
    assert prov["seeds"] == [0] and prov["packages"]["torch"]
    assert {"ok-line.png", "ok-line.pdf"} <= {p.name for p in (root / "book" / "figures").iterdir()}
    assert {"book/figures/ok-line.png", "book/generated/01_ok.ipynb",
            "results/quick/01_ok/run.json", "results/quick/01_ok/glue.json"} <= set(prov["outputs"])
    gen = nbformat.read(root / "book" / "generated" / "01_ok.ipynb", as_version=4)
    assert gen.metadata["countingargs"]["profile"] == "quick"
    assert any("provenance" in c.metadata.get("tags", []) for c in gen.cells)
    # one parameters cell, holding the values actually used (comments kept), no injected copy
    assert not [c for c in gen.cells if "injected-parameters" in c.metadata.get("tags", [])]
    [params] = [c for c in gen.cells if "parameters" in c.metadata.get("tags", [])]
    assert "n = 2\n" in params.source and "scale = 1.5\n" in params.source
    assert "results_dir = 'results/quick/01_ok'" in params.source
    text = (root / "book" / "generated" / "01_ok.ipynb").read_text()
    assert ".rebuild-tmp" not in text and str(root) not in text
    assert not (root / ".rebuild-tmp").exists()

    [again] = rb.rebuild(root, "quick", log=quiet)
    assert again.status == "skipped"
    [forced] = rb.rebuild(root, "quick", force=True, log=quiet)
    assert forced.status == "ran"


def test_failure_names_notebook_cell_exception_and_keeps_old_outputs(tmp_path):
    root = make_light_book(tmp_path)
    assert rb.rebuild(root, "quick", log=quiet)[0].status == "ran"
    before = snapshot(root)
    profiles = root / "notebooks" / "profiles.yml"
    profiles.write_text(profiles.read_text().replace("{n: 2}", "{n: 5, fail: true}"))
    [out] = rb.rebuild(root, "quick", log=quiet)
    assert out.status == "failed"
    assert "notebook 01_a failed in cell 4 of 01_a.md (code: 'if fail:')" in out.message
    assert "RuntimeError: deliberate failure for the test" in out.message
    kept = root / "failures" / "quick" / "01_a.ipynb"
    assert out.failed_copy == kept and kept.exists()
    assert snapshot(root) == before
    assert not (root / ".rebuild-tmp").exists()
    # a later success removes the stale failure copy
    profiles.write_text(profiles.read_text().replace("{n: 5, fail: true}", "{n: 5}"))
    assert rb.rebuild(root, "quick", log=quiet)[0].status == "ran"
    assert not kept.exists()


def test_failed_first_run_leaves_no_partial_results(tmp_path):
    root = make_light_book(tmp_path)
    [out] = rb.rebuild(root, "quick", only=["01_a"], overrides={"fail": True}, publish=True, log=quiet)
    assert out.status == "failed"
    assert snapshot(root) == {}


def test_cli_exit_codes_messages_and_a_clean_terminal(tmp_path):
    root = make_light_book(tmp_path)
    bad = cli(root, "rebuild", "--profile", "nope")
    assert bad.returncode == 2 and "valid profiles: quick, standard, full" in bad.stderr
    bad = cli(root, "rebuild", "--profile", "quick", "--only", "01_a", "-p", "bogus", "1")
    assert bad.returncode == 2 and "unknown parameter 'bogus'" in bad.stderr
    assert not (root / "results").exists()
    failing = cli(root, "rebuild", "--profile", "quick", "--only", "01_a", "-p", "fail", "true")
    assert failing.returncode == 1 and "failed in cell 4" in failing.stdout
    ok = cli(root, "rebuild", "--profile", "quick", "--only", "01_a", "01_a")   # duplicates collapse
    assert ok.returncode == 0 and "1 ran, 0 skipped, 0 failed" in ok.stdout, ok.stdout + ok.stderr
    assert "[1/1] 01_a (quick)" in ok.stdout
    for proc in (failing, ok):   # what the kernels and papermill print stays off the terminal
        assert "without encryption" not in proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr
    params = cli(root, "params", "01_a")
    assert params.returncode == 0 and "n = 3 (>= 1) [quick: 2]" in params.stdout, params.stdout
    for cmd in ("params 01_a", "list", "rebuild --profile quick", "render"):
        gone = cli(tmp_path / "nonexistent", *cmd.split())
        assert gone.returncode == 2 and "no such folder" in gone.stderr, (cmd, gone.stderr)
    (tmp_path / "empty").mkdir()
    notbook = cli(tmp_path / "empty", "params", "01_a")
    assert notbook.returncode == 2 and "not a book root (missing _config.yml, notebooks)" in notbook.stderr


def test_a_notebook_that_reads_another_starts_after_it_in_a_parallel_rebuild(tmp_path):
    root = make_light_book(tmp_path, names=("01_slow", "02_reader", "03_free"))
    path = root / "notebooks" / "02_reader.md"   # jupytext writes only the metadata it knows
    path.write_text(path.read_text().replace("---\n", '---\nreads_results: ["01_*"]\n', 1))
    jobs = {j.name: j for j in rb.plan(root, "quick")}
    assert rb.reads_results(jobs["02_reader"], jobs) == {"01_slow"}
    assert rb.reads_results(jobs["01_slow"], jobs) == set()
    logs = []
    outcomes = rb.rebuild(root, "quick", log=logs.append, n_jobs=2)
    assert [o.status for o in outcomes] == ["ran"] * 3, [o.message for o in outcomes]
    started = next(i for i, m in enumerate(logs) if "02_reader" in m and ": running" in m)
    done = next(i for i, m in enumerate(logs) if "01_slow" in m and ": done" in m)
    assert done < started and "after 01_slow" in logs[started], logs
    jobs["02_reader"].nb.metadata["reads_results"] = "01_slow"
    with pytest.raises(rb.RebuildError, match="reads_results"):
        rb.reads_results(jobs["02_reader"], jobs)
