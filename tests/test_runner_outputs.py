"""Outputs: damage is detected against the recorded hashes and rerun (saying why), a changed
source reruns, the move into place is all or nothing, override runs stay out of the book."""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import nbformat
import pytest

from countingargs.build import outputs
from countingargs.build import runner as rb
from runner_books import make_light_book, quiet, snapshot, write_notebook

RES = "results/quick/01_a"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A light book run once in the quick profile (copied by each test that damages it)."""
    root = make_light_book(tmp_path_factory.mktemp("built"))
    [out] = rb.rebuild(root, "quick", log=quiet)
    assert out.status == "ran", out.message
    return root


@pytest.fixture
def book(built, tmp_path):
    root = tmp_path / "book"
    shutil.copytree(built, root, symlinks=True)
    return root


def _edit(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b" ")


DAMAGE = [
    (lambda r: (r / RES / "squares.csv").unlink(), f"{RES}/squares.csv is missing"),
    (lambda r: (r / RES / "squares.csv").write_text("i,sq\n0,0\n1,99\n"),
     f"{RES}/squares.csv differs from the hash recorded when it was written"),
    (lambda r: (r / RES / "glue.json").write_text('{"total": 99}'), f"{RES}/glue.json differs"),
    (lambda r: (r / RES / "glue.json").unlink(), f"{RES}/glue.json is missing"),
    (lambda r: (r / RES / "run.json").unlink(), f"{RES}/run.json is missing"),
    (lambda r: (r / RES / "parameters.json").unlink(), f"{RES}/parameters.json is missing"),
    (lambda r: _edit(r / "book/figures/01_a-line.png"), "book/figures/01_a-line.png differs"),
    (lambda r: (r / "book/figures/01_a-line.pdf").unlink(), "book/figures/01_a-line.pdf is missing"),
    (lambda r: (r / "book/generated/01_a.ipynb").unlink(), "book/generated/01_a.ipynb is missing"),
    (lambda r: _edit(r / "book/generated/01_a.ipynb"), "book/generated/01_a.ipynb differs"),
    (lambda r: (r / RES / "provenance.json").unlink(), "provenance.json is missing"),
    (lambda r: (r / RES / "provenance.json").write_text("{"), "provenance.json is damaged"),
    (lambda r: (r / RES / "provenance.json").write_text(
        (r / RES / "provenance.json").read_text().replace('"n": 2', '"n": 3')),
     "provenance.json was edited after it was written"),
    (lambda r: (r / RES / "extra.csv").write_text("a\n1\n"), f"{RES}/extra.csv is not part of the recorded run"),
    (lambda r: shutil.rmtree(r / RES), "no record of an earlier run"),
]


@pytest.mark.parametrize("damage, reason", DAMAGE, ids=[d[1][:40] for d in DAMAGE])
def test_damaged_outputs_are_detected_and_named(book, damage, reason):
    assert rb.stale(book, "quick") == {"01_a": None}
    damage(book)
    why = rb.stale(book, "quick")["01_a"]
    assert why is not None and reason in why, why


def test_a_damaged_output_is_rerun_and_restored(book):
    good = snapshot(book)
    (book / RES / "glue.json").write_text('{"total": 99}')
    (book / "book/figures/01_a-line.png").unlink()
    (book / ".rebuild-tmp" / "01_a-left-by-a-killed-run").mkdir(parents=True)   # a leftover
    (book / ".rebuild-tmp" / "01_a-left-by-a-killed-run" / "x.csv").write_text("x\n")
    lines = []
    [out] = rb.rebuild(book, "quick", log=lines.append)
    assert out.status == "ran" and "01_a-line.png is missing" in out.reason
    text = "\n".join(lines)
    assert "will run: book/figures/01_a-line.png is missing" in text
    assert "removed 1 leftover temporary folder(s)" in text
    assert not (book / ".rebuild-tmp").exists()
    now = snapshot(book)
    for rel in (f"{RES}/glue.json", f"{RES}/squares.csv", "book/figures/01_a-line.png"):
        assert now[rel] == good[rel], rel
    assert rb.stale(book, "quick") == {"01_a": None}


def _replace_in_source(root: Path, old: str, new: str) -> None:
    path = root / "notebooks" / "01_a.md"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_what_changed_in_the_inputs_is_named(book):
    """The notebook's own source is part of its input hash: editing its prose or code reruns it."""
    _replace_in_source(book, "# Notebook 01_a", "# Notebook 01_a, retitled")
    assert "the notebook's source changed" in rb.stale(book, "quick")["01_a"]
    _replace_in_source(book, "# Notebook 01_a, retitled", "# Notebook 01_a")
    assert rb.stale(book, "quick") == {"01_a": None}
    _replace_in_source(book, "raise RuntimeError(", "raise ValueError(")
    assert "the notebook's source changed" in rb.stale(book, "quick")["01_a"]
    _replace_in_source(book, "raise ValueError(", "raise RuntimeError(")
    profiles = book / "notebooks" / "profiles.yml"
    profiles.write_text(profiles.read_text().replace("{n: 2}", "{n: 3}"))
    assert rb.stale(book, "quick")["01_a"] == "its parameters changed"
    assert rb.stale(book, "quick", threads=2)["01_a"] == "its parameters changed; the runner's settings changed (--threads)"
    profiles.write_text(profiles.read_text().replace("{n: 3}", "{n: 2}"))
    (book / "requirements.txt").write_text("pandas==0\n")
    assert rb.stale(book, "quick")["01_a"] == "requirements.txt changed"


def test_input_hash_covers_every_cell_its_tags_and_the_parameters(book):
    [job] = rb.plan(book, "quick")
    base = rb.input_hash(book, job, "quick")
    for i, cell in enumerate(job.nb.cells):
        before = cell.source
        cell.source += "\n# edited"
        assert rb.input_hash(book, job, "quick") != base, f"cell {i} ({cell.cell_type}) not hashed"
        cell.source = before
        cell.metadata["tags"] = [*cell.metadata.get("tags", []), "hide-input"]
        assert rb.input_hash(book, job, "quick") != base, f"tags of cell {i} not hashed"
        cell.metadata["tags"].remove("hide-input")
    assert rb.input_hash(book, job, "quick") == base
    job.resolved["n"] = 7
    assert rb.input_hash(book, job, "quick") != base
    assert rb.input_hash(book, rb.plan(book, "quick")[0], "standard") != base


# ---------------------------------------------------------------------------------------------
# Commit: all or nothing
# ---------------------------------------------------------------------------------------------
def _staged(tmp: Path):
    root = tmp / "root"
    old = {"results/quick/x/t.csv": b"old table", "results/quick/x/provenance.json": b"old prov",
           "book/figures/a.png": b"old a", "book/figures/gone.png": b"old, no longer drawn",
           "book/generated/x.ipynb": b"old nb"}
    for rel, data in old.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    stage = root / ".rebuild-tmp" / "x-1"
    (stage / "results").mkdir(parents=True)
    (stage / "results" / "t.csv").write_bytes(b"new table")
    (stage / "results" / "provenance.json").write_bytes(b"new prov")
    (stage / "a.png").write_bytes(b"new a")
    (stage / "b.png").write_bytes(b"new b")
    (stage / "x.ipynb").write_bytes(b"new nb")
    moves = [(stage / "results", root / "results/quick/x"), (stage / "a.png", root / "book/figures/a.png"),
             (stage / "b.png", root / "book/figures/b.png"), (stage / "x.ipynb", root / "book/generated/x.ipynb")]
    return root, stage, moves, [root / "book/figures/gone.png"]


def test_commit_is_all_or_nothing_whichever_move_fails(tmp_path, monkeypatch):
    root, stage, moves, remove = _staged(tmp_path / "ok")
    outputs.commit(root, moves, remove, stage / "backup")
    new = snapshot(root)
    assert new["results/quick/x/t.csv"] == b"new table" and new["book/figures/b.png"] == b"new b"
    assert "book/figures/gone.png" not in new and not (stage / "backup").exists()
    n_moves = 8   # 5 targets set aside (one absent) + 4 moves in
    real = outputs._move
    for k in range(n_moves):
        root, stage, moves, remove = _staged(tmp_path / f"fail-{k}")
        before = snapshot(root)
        calls = []

        def failing(src, dst, k=k, calls=calls):
            calls.append((src, dst))
            if len(calls) == k + 1:
                raise OSError(30, "Read-only file system", str(dst))
            real(src, dst)

        monkeypatch.setattr(outputs, "_move", failing)
        with pytest.raises(outputs.CommitError) as err:
            outputs.commit(root, moves, remove, stage / "backup")
        monkeypatch.setattr(outputs, "_move", real)
        assert err.value.rolled_back and "Read-only file system" in str(err.value)
        assert snapshot(root) == before, f"move {k + 1} failed and the book changed"
        assert not (stage / "backup").exists()
        assert (stage / "results" / "t.csv").read_bytes() == b"new table"   # the stage is intact
    assert len(calls) > n_moves   # the last case failed on the last move, then undid all


def _other_filesystem() -> Path | None:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != Path.cwd().stat().st_dev:
        return shm
    return None


@pytest.mark.skipif(_other_filesystem() is None, reason="needs /dev/shm on another filesystem")
def test_a_write_error_during_the_move_changes_nothing(book):
    """book/figures on another filesystem: renaming into it fails (EXDEV) even for root, after the
    results folder was already moved; everything is rolled back."""
    elsewhere = _other_filesystem() / f"figures-{uuid.uuid4().hex}"
    shutil.move(str(book / "book" / "figures"), str(elsewhere))
    try:
        (book / "book" / "figures").symlink_to(elsewhere)
        before = snapshot(book)
        [out] = rb.rebuild(book, "quick", force=True, log=quiet)
        assert out.status == "failed"
        assert "ran, but its outputs could not be moved into place" in out.message
        assert "Invalid cross-device link" in out.message
        assert "Nothing was changed: its results, figures and executed notebook are as before" in out.message
        assert snapshot(book) == before
        kept = book / "failures" / "quick" / "01_a.ipynb"
        assert out.failed_copy == kept and nbformat.read(kept, as_version=4).cells
        assert not (book / ".rebuild-tmp").exists()
        assert rb.stale(book, "quick") == {"01_a": None}
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)


def test_a_notebook_that_never_calls_finish_gets_a_failures_copy(book):
    before = snapshot(book)
    [out] = rb.rebuild(book, "quick", only=["01_a"], overrides={"finish": False}, publish=True, log=quiet)
    assert out.status == "failed" and "never called run.finish()" in out.message
    kept = book / "failures" / out.variant / "01_a.ipynb"
    assert out.failed_copy == kept and kept.exists()
    assert snapshot(book) == before and not (book / ".rebuild-tmp").exists()


# ---------------------------------------------------------------------------------------------
# Override runs
# ---------------------------------------------------------------------------------------------
def test_override_runs_go_to_their_own_place_and_into_the_book_only_with_publish(book):
    before = snapshot(book)
    [out] = rb.rebuild(book, "quick", only=["01_a"], overrides={"n": 4}, log=quiet)
    assert out.status == "ran" and out.variant.startswith("quick+") and len(out.variant) == 14
    own = book / "results" / out.variant / "01_a"
    assert (own / "squares.csv").read_text().count("\n") == 5
    assert (own / "figures" / "01_a-line.png").exists() and (own / "01_a.ipynb").exists()
    prov = json.loads((own / "provenance.json").read_text())
    assert prov["overrides"] == {"n": 4} and prov["parameters"]["n"] == 4 and not prov["published"]
    after = snapshot(book)
    assert {k: v for k, v in after.items() if not k.startswith(f"results/{out.variant}/")} == before
    [again] = rb.rebuild(book, "quick", only=["01_a"], overrides={"n": 4}, log=quiet)
    assert again.status == "skipped"

    [pub] = rb.rebuild(book, "quick", only=["01_a"], overrides={"n": 4}, publish=True, log=quiet)
    assert pub.status == "ran" and pub.variant == out.variant
    gen = nbformat.read(book / "book" / "generated" / "01_a.ipynb", as_version=4)
    [banner] = [c for c in gen.cells if "provenance" in c.metadata.get("tags", [])]
    assert "**with overrides**" in banner.source and "`n = 4`" in banner.source
    assert f"results/{out.variant}/" in banner.source
    assert gen.metadata["countingargs"]["overrides"] == {"n": 4}
    assert snapshot(book)[f"{RES}/squares.csv"] == before[f"{RES}/squares.csv"]  # the profile's results stay
    assert "holds another run" in rb.stale(book, "quick")["01_a"]
    [back] = rb.rebuild(book, "quick", log=quiet)
    assert back.status == "ran"
    gen = nbformat.read(book / "book" / "generated" / "01_a.ipynb", as_version=4)
    assert "overrides" not in [c for c in gen.cells if "provenance" in c.metadata.get("tags", [])][0].source


def test_the_executed_notebook_shows_no_path_of_this_machine(book):
    write_notebook(book, "01_a", extra_md="See the results.")
    [out] = rb.rebuild(book, "quick", log=quiet)
    assert out.status == "ran"
    nb = nbformat.read(book / "book" / "generated" / "01_a.ipynb", as_version=4)
    shown = json.dumps([c.get("outputs", []) for c in nb.cells]) + json.dumps(nb.metadata)
    assert "wrote results/quick/01_a/squares.csv" in shown            # printed path, made relative
    assert "PosixPath('results/quick/01_a/glue.json')" in shown       # a displayed Path, too
    text = (book / "book" / "generated" / "01_a.ipynb").read_text()
    assert str(book) not in text and ".rebuild-tmp" not in text
    assert str(Path(book).resolve()) not in text
