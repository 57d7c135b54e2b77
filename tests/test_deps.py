"""The input hash covers a notebook's own imports: editing one chapter reruns only that chapter."""
import shutil

from conftest import REPO
from countingargs.build import deps, runner
from countingargs.build.profiles import plan


def _rel(paths):
    base = deps.lib_dir()
    return {p.relative_to(base).as_posix() for p in paths}


def test_closure_follows_imports_transitively_and_includes_parent_packages():
    files = _rel(deps.closure(["from countingargs.nets.train import train_until\n%matplotlib inline"]))
    assert {"__init__.py", "nets/__init__.py", "nets/train.py", "stats.py"} <= files
    assert not any(f.startswith("chapters/") for f in files)
    assert "build/runner.py" not in files


def test_relative_imports_and_from_package_import_module():
    files = _rel(deps.closure(["from countingargs.estimators import llc"]))
    assert {"estimators/__init__.py", "estimators/llc.py", "estimators/_points.py"} <= files


def test_each_chapter_hash_moves_only_with_its_own_package(tmp_path, monkeypatch):
    lib = tmp_path / "countingargs"
    shutil.copytree(deps.lib_dir(), lib, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(deps, "lib_dir", lambda: lib)
    monkeypatch.setattr(runner, "lib_dir", lambda: lib)
    jobs = {j.name: j for j in plan(REPO, "quick")}

    def hashes():
        return {n: runner.input_hash(REPO, j, "quick") for n, j in jobs.items()}

    before = hashes()
    chapters = sorted(p.name for p in (lib / "chapters").iterdir() if p.name.startswith("ch"))
    assert len(chapters) == len(jobs)
    for pkg in chapters:
        target = next((lib / "chapters" / pkg).glob("*.py"))
        target.write_text(target.read_text() + "\n# an edit\n")
        after = hashes()
        changed = {n for n in jobs if after[n] != before[n]}
        assert changed == {pkg[2:]}, (pkg, changed)
        before = after
    users = {n for n, j in jobs.items() if any(p.name == "mlp.py" for p in deps.closure(
        [c.source for c in j.nb.cells if c.cell_type == "code"], lib))}
    assert users, "no chapter imports nets/mlp.py"
    (lib / "nets" / "mlp.py").write_text((lib / "nets" / "mlp.py").read_text() + "\n# edit\n")
    after = hashes()
    assert {n for n in jobs if after[n] != before[n]} == users
