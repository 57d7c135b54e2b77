"""`verify` recomputes glue from saved tables and catches damage; `replot` redraws figures."""
import json
import textwrap

import pandas as pd
import pytest

from countingargs import chapters
from countingargs.build import RebuildError
from countingargs.build import check
from countingargs.build.provenance import sha256
from countingargs.notebook import Run
from countingargs.report import Findings, ledger_row, ledger_table

ANALYSIS = '''
from countingargs.report import Findings

def analyse(tables, params):
    sq = tables["squares"]
    total = float(sq.sq.sum() * params["scale"])
    derived = sq.assign(double=sq.sq * 2)
    return Findings(glue={"total": total, "label": "big" if total > 1 else "small"},
                    tables={"derived": derived})
'''
PLOTS = '''
import matplotlib.pyplot as plt
from countingargs.figures import figure

@figure("zz-squares")
def squares(tables, params):
    fig, ax = plt.subplots()
    ax.plot(tables["squares"].i, tables["squares"].sq)
    ax.set_xlabel("i")
    ax.set_ylabel("square")
    return fig
'''


@pytest.fixture
def book(tmp_path, monkeypatch):
    pkg = tmp_path / "pkgs" / "ch99_fake"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "analysis.py").write_text(textwrap.dedent(ANALYSIS))
    (pkg / "plots.py").write_text(textwrap.dedent(PLOTS))
    monkeypatch.setattr(chapters, "__path__", [*chapters.__path__, str(tmp_path / "pkgs")])
    root = tmp_path / "book"
    (root / "notebooks").mkdir(parents=True)
    (root / "notebooks" / "99_fake.md").write_text("# fake\n")
    res = root / "results" / "quick" / "99_fake"
    figs = root / "book" / "figures"
    run = Run(res, figs, profile="quick", notebook="99_fake", params={"scale": 2.0})
    run.table("squares", pd.DataFrame({"i": range(4), "sq": [i * i / 3 for i in range(4)]}))
    from countingargs.chapters.ch99_fake import analysis, plots
    from countingargs.figures import use_style
    use_style()
    run.analyse(analysis.analyse)
    run.plot(plots.squares)
    prov = {"parameters": {"scale": 2.0},
            "tables": {p.name: sha256(p) for p in sorted(res.glob("*.csv"))}}
    (res / "provenance.json").write_text(json.dumps(prov))
    return root, res


def test_verify_passes_on_untouched_results(book):
    root, _ = book
    [rep] = check.verify(root, "quick")
    assert rep.ok, rep.problems
    assert rep.checked_glue == 2 and rep.checked_tables == 1


def test_verify_catches_a_tampered_csv_a_edited_glue_and_a_stray_key(book):
    root, res = book
    csv = res / "squares.csv"
    csv.write_text(csv.read_text().replace("3,3", "3,4"))
    [rep] = check.verify(root, "quick")
    text = "\n".join(rep.problems)
    assert "squares.csv: its hash differs" in text
    assert "glue 'total'" in text and "derived.csv: differs" in text
    root2, res2 = root, res
    glue = json.loads((res2 / "glue.json").read_text())
    glue["extra"] = 1
    (res2 / "glue.json").write_text(json.dumps(glue))
    [rep] = check.verify(root2, "quick")
    assert any("'extra': in glue.json but analysis.analyse does not compute it" in p for p in rep.problems)


def test_verify_and_replot_refuse_when_there_is_nothing(tmp_path):
    (tmp_path / "notebooks").mkdir()
    with pytest.raises(RebuildError, match="no results"):
        check.verify(tmp_path, "quick")
    with pytest.raises(RebuildError, match="unknown notebook"):
        check.replot(tmp_path, "quick", ["01_nope"])


def test_replot_redraws_the_same_bytes(book, tmp_path):
    root, _ = book
    out = tmp_path / "redrawn"
    written = check.replot(root, "quick", out=out)
    assert sorted(p.name for p in written["99_fake"]) == ["zz-squares.pdf", "zz-squares.png"]
    for p in written["99_fake"]:
        assert p.read_bytes() == (root / "book" / "figures" / p.name).read_bytes()


def test_findings_merge_and_ledger_rows():
    a = Findings(glue={"x": 1}, tables={"t": pd.DataFrame({"a": [1]})})
    b = Findings(glue={"y": 2})
    assert Findings.merge(a, b).glue == {"x": 1, "y": 2}
    with pytest.raises(ValueError, match="twice"):
        Findings.merge(a, a)
    base = dict(id="99-x", chapter="99_fake", claim="c", who="Pope", quote="q", source="s",
                version="v", claim_side="against the counting argument", effect_name="e",
                effect=1.0, effect_lo=0.5, effect_hi=1.5, units="nats", finding="f", figure="zz")
    assert ledger_row(**base, verdict="supports")["favours"] == "against the counting argument"
    assert ledger_row(**base, verdict="contradicts")["favours"] == "for the counting argument"
    assert ledger_row(**base, verdict="mixed")["favours"] == "neither side"
    with pytest.raises(ValueError, match="verdict"):
        ledger_row(**base, verdict="maybe")
    with pytest.raises(ValueError, match="used twice"):
        ledger_table([ledger_row(**base, verdict="mixed")] * 2)
