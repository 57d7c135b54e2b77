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


def quiet(msg):
    print(msg, file=sys.stderr)


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
                "torch_threads", "wall_seconds", "input_hash"):
        assert key in prov, key
    assert prov["parameters"] == {"n": 2, "scale": 1.5, "fail": False}
    assert prov["seeds"] == [0] and prov["packages"]["torch"]
    assert {"ok-line.png", "ok-line.pdf"} <= {p.name for p in (root / "book" / "figures").iterdir()}
    gen = nbformat.read(root / "book" / "generated" / "01_ok.ipynb", as_version=4)
    assert gen.metadata["countingargs"]["profile"] == "quick"
    assert any("provenance" in c.metadata.get("tags", []) for c in gen.cells)
    injected = [c for c in gen.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert "results/quick/01_ok" in injected[0].source and ".rebuild-tmp" not in injected[0].source
    assert not (root / ".rebuild-tmp").exists()

    [again] = rb.rebuild(root, "quick", log=quiet)
    assert again.status == "skipped"
    [forced] = rb.rebuild(root, "quick", force=True, log=quiet)
    assert forced.status == "ran"
    [changed] = rb.rebuild(root, "quick", only=["01_ok"], overrides={"n": 4}, log=quiet)
    assert changed.status == "ran"
    assert (res / "squares.csv").read_text().count("\n") == 5
    # a missing or edited figure makes the outputs stale
    (root / "book" / "figures" / "ok-line.png").write_bytes(b"edited")
    [stale] = rb.rebuild(root, "quick", only=["01_ok"], overrides={"n": 4}, log=quiet)
    assert stale.status == "ran"


def test_failure_names_notebook_cell_exception_and_keeps_old_outputs(tmp_path):
    root = make_book(tmp_path)
    assert rb.rebuild(root, "quick", log=quiet)[0].status == "ran"
    res = root / "results" / "quick" / "01_ok"
    before = {p.name: p.read_bytes() for p in res.iterdir()}
    fig_before = (root / "book" / "figures" / "ok-line.png").read_bytes()
    gen_before = (root / "book" / "generated" / "01_ok.ipynb").read_bytes()

    [out] = rb.rebuild(root, "quick", only=["01_ok"], overrides={"fail": True, "n": 5}, log=quiet)
    assert out.status == "failed"
    assert "notebook 01_ok failed in cell 4 of 01_ok.md" in out.message
    assert "RuntimeError: deliberate failure for the test" in out.message
    kept = root / "failures" / "quick" / "01_ok.ipynb"
    assert out.failed_copy == kept and kept.exists()
    assert {p.name: p.read_bytes() for p in res.iterdir()} == before
    assert (root / "book" / "figures" / "ok-line.png").read_bytes() == fig_before
    assert (root / "book" / "generated" / "01_ok.ipynb").read_bytes() == gen_before
    assert not (root / ".rebuild-tmp").exists()


def test_failed_first_run_leaves_no_partial_results(tmp_path):
    root = make_book(tmp_path)
    [out] = rb.rebuild(root, "quick", only=["01_ok"], overrides={"fail": True}, log=quiet)
    assert out.status == "failed"
    assert not (root / "results" / "quick" / "01_ok").exists()
    assert not (root / "book" / "figures").exists() or not any((root / "book" / "figures").iterdir())


def test_cli_exit_codes_and_messages(tmp_path):
    root = make_book(tmp_path)
    run = lambda *a: subprocess.run([sys.executable, "-m", "countingargs", *a, "--root", str(root)],  # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    bad = run("rebuild", "--profile", "nope")
    assert bad.returncode == 2 and "valid profiles: quick, standard, full" in bad.stderr
    bad = run("rebuild", "--profile", "quick", "--only", "01_ok", "-p", "bogus", "1")
    assert bad.returncode == 2 and "unknown parameter 'bogus'" in bad.stderr
    assert not (root / "results").exists()
    failing = run("rebuild", "--profile", "quick", "--only", "01_ok", "-p", "fail", "true")
    assert failing.returncode == 1 and "failed in cell 4" in failing.stdout
    ok = run("rebuild", "--profile", "quick")
    assert ok.returncode == 0 and "1 ran, 0 skipped, 0 failed" in ok.stdout
    params = run("params", "01_ok")
    assert params.returncode == 0 and "n = 3 [quick: 2]" in params.stdout


def _tiny_notebook(root: Path, name: str, body: str, reads=None) -> None:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell('profile = "standard"\nresults_dir = "res"\nfigures_dir = "figs"\n')
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {name}"), p, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    text = jupytext.writes(nb, fmt="md:myst")
    if reads is not None:   # jupytext writes only the metadata it knows: add the key to the front matter
        text = text.replace("---\n", "---\nreads_results: " + json.dumps(reads) + "\n", 1)
    (root / "notebooks" / f"{name}.md").write_text(text)


def test_a_notebook_that_reads_another_starts_after_it_in_a_parallel_rebuild(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "_config.yml").write_text("title: test\n")
    head = "import pandas as pd\nfrom countingargs.notebook import Run\nrun = Run(results_dir, figures_dir, profile=profile)\n"
    _tiny_notebook(tmp_path, "01_slow", head + "import time\ntime.sleep(4)\n"
                   "run.table('x', pd.DataFrame({'a': [1]}))\nrun.finish()\n")
    _tiny_notebook(tmp_path, "02_reader", head + "from pathlib import Path\n"
                   "src = Path.cwd().parents[1] / 'results' / profile / '01_slow' / 'x.csv'\n"
                   "run.glue('found', src.exists())\nrun.finish()\n", reads=["01_*"])
    _tiny_notebook(tmp_path, "03_free", head + "run.finish()\n")
    (tmp_path / "notebooks" / "profiles.yml").write_text(
        "quick:\n  notebooks:\n    01_slow: {}\n    02_reader: {}\n    03_free: {}\n")
    jobs = {j.name: j for j in rb.plan(tmp_path, "quick")}
    assert rb.reads_results(jobs["02_reader"], jobs) == {"01_slow"}
    assert rb.reads_results(jobs["01_slow"], jobs) == set()
    logs = []
    outcomes = rb.rebuild(tmp_path, "quick", log=logs.append, n_jobs=2)
    assert [o.status for o in outcomes] == ["ran"] * 3, [o.message for o in outcomes]
    glue = json.loads((tmp_path / "results" / "quick" / "02_reader" / "glue.json").read_text())
    assert glue == {"found": True}
    assert any("02_reader" in m and "after 01_slow" in m for m in logs)
    jobs["02_reader"].nb.metadata["reads_results"] = "01_slow"
    with pytest.raises(rb.RebuildError, match="reads_results"):
        rb.reads_results(jobs["02_reader"], jobs)
