"""The generated pages (ledger, coverage map, status, citation, figure provenance) from synthetic
ledger tables and small fake chapters; the book's own coverage map; figure metadata."""
import json
import re
import shutil

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import yaml
from markdown_it import MarkdownIt
from mdit_py_plugins.dollarmath import dollarmath_plugin

from conftest import REPO, copy_book
from countingargs.build import pages
from countingargs.figures import provenance_metadata, read_metadata, save_figure
from countingargs.notebook import Run, write_table
from countingargs.report import LEDGER_COLUMNS, ledger_table
from fakebook import ledger_rows, make_fake_book


@pytest.fixture
def fake(tmp_path):
    return make_fake_book(tmp_path / "book")


def _ledger_path(root):
    return root / "results" / "quick" / "01_alpha" / "ledger.csv"


def test_ledger_page_from_synthetic_rows(fake):
    data = pages.generate(fake, pdf=False)
    assert data["problems"] == []
    text = (fake / pages.PAGES / "ledger.md").read_text()
    for row in ledger_rows():
        assert f"(ledger-{row['id']})=" in text
        assert pages.md(row["finding"]) in text
    # the effect with its interval and units, three significant digits of the largest
    assert "gap in held\\-out loss: **0\\.0123 \\[0\\.0046, 0\\.0201\\] nats**" in text
    assert "{numref}`fig-alpha-fig`" in text
    # the quick profile is flagged; the two chapters without a ledger are listed, not dropped
    assert "```{warning}" in text and "quick" in text
    assert "Beta chapter </book/generated/02_beta>" in text and "its results have no ledger.csv yet" in text
    assert "Gamma chapter (03\\_gamma): has not been run" in text
    # the coverage argument each row tests is linked from the row
    assert text.count("<coverage-pope-fake>") == 3


def test_findings_for_the_introduction_come_from_the_ledger(fake):
    pages.generate(fake, pdf=False)
    text = (fake / pages.PAGES / "findings.md").read_text()
    assert "holds 3 sub-claims from 1 of 3 chapters: 1 supported, 1 contradicted and 1 mixed" in text
    assert "1 verdict favours the side against the counting argument, 1 the side for" in text
    for row in ledger_rows():
        assert pages.md(row["finding"]) in text
    (_ledger_path(fake)).unlink()
    pages.generate(fake, pdf=False)
    text = (fake / pages.PAGES / "findings.md").read_text()
    assert "No chapter has written its ledger rows yet" in text


def test_markdown_escaping_keeps_text_literal():
    md = MarkdownIt("commonmark").use(dollarmath_plugin)
    for raw in ["a *b* _c_ $x$ `d` <b>e</b> [f](g) | h \\ i {glue} 1. j # k",
                "- starts like a list", "100% of {x}: y = 2^3 ~ 4 & <5>"]:
        html = md.render(pages.md(raw))
        text = re.sub(r"<[^>]+>", "", html).strip()
        text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        assert text == raw, (raw, html)
        assert "<em>" not in html and "math" not in html and "<code>" not in html


def test_effect_formatting():
    row = {"effect": 0.01234, "effect_lo": 0.00456, "effect_hi": 0.0201, "units": "nats"}
    assert pages.format_effect(row) == "0.0123 [0.0046, 0.0201] nats"
    assert pages.format_effect({**row, "effect": -1234.5, "effect_lo": -2000, "effect_hi": -3}) == \
        "\u22121,234 [\u22122,000, \u22123] nats"
    assert pages.format_effect({**row, "effect_lo": float("nan")}) == "0.0123 (no interval) nats"
    assert pages.format_effect({"effect": "", "effect_lo": "", "effect_hi": "", "units": ""}) == \
        "n/a (no interval)"


@pytest.mark.parametrize("change, message", [
    (lambda df: df.drop(columns=["finding"]), "missing ledger columns \\['finding'\\]"),
    (lambda df: df.assign(verdict="maybe"), "verdict 'maybe' is not one of"),
    (lambda df: df.assign(favours="neither side"), "favours is 'neither side', but a 'supports'"),
    (lambda df: df.assign(finding=" "), "finding is empty"),
    (lambda df: df.assign(effect="big"), "effect = 'big' is not a number"),
    (lambda df: df.assign(id="same"), "ledger ids used twice"),
    (lambda df: df.assign(chapter="02_beta"), "but the file belongs to '01_alpha'"),
])
def test_a_broken_ledger_is_refused_with_a_clear_message(fake, change, message):
    path = _ledger_path(fake)
    df = pd.read_csv(path, keep_default_na=False)
    write_table(change(df), path)
    with pytest.raises(pages.PagesError, match=message) as err:
        pages.generate(fake, pdf=False)
    assert "ledger.csv" in str(err.value)


def test_an_id_used_by_two_chapters_is_refused(fake):
    rows = ledger_rows()[:1]
    rows[0] = {**rows[0], "chapter": "02_beta"}
    write_table(ledger_table(rows), fake / "results" / "quick" / "02_beta" / "ledger.csv")
    with pytest.raises(pages.PagesError, match="used by both 01_alpha and 02_beta"):
        pages.generate(fake, pdf=False)


def test_a_row_naming_a_figure_the_chapter_does_not_place_is_shown_and_reported(fake):
    rows = ledger_rows()
    rows[0] = {**rows[0], "figure": "nowhere-fig"}
    write_table(ledger_table(rows), _ledger_path(fake))
    data = pages.generate(fake, pdf=False)
    assert any("nowhere-fig" in p for p in data["problems"])
    assert "`nowhere-fig` (not placed in the chapter)" in (fake / pages.PAGES / "ledger.md").read_text()


def test_coverage_map_links_arguments_to_ledger_rows(fake):
    pages.generate(fake, pdf=False)
    text = (fake / pages.PAGES / "coverage.md").read_text()
    assert ("3 arguments: 2 tested by a chapter of this book (1 of them with rows in the ledger so far), "
            "1 checkable ones **not tested yet**, and 0 about framing") in text
    assert "(coverage-pope-fake)=" in text and "{ref}`01-alpha-heldout <ledger-01-alpha-heldout>`" in text
    assert "Chapter {doc}`02: Beta chapter </book/generated/02_beta>` (not yet in the ledger)" in text
    assert "not tested yet</span> A test would need: a ninth chapter" in text
    assert "Something checkable about \\$x\\$ and \\*emphasis\\*" in text


def test_coverage_reports_patterns_that_match_no_row_and_unmapped_rows(fake):
    cov = yaml.safe_load((fake / "book" / "coverage.yml").read_text())
    cov["arguments"][0]["ledger"] = ["01-alpha-nothing"]
    (fake / "book" / "coverage.yml").write_text(yaml.safe_dump(cov))
    data = pages.generate(fake, pdf=False)
    assert any("no ledger row of 01_alpha matches" in p for p in data["problems"])
    text = (fake / pages.PAGES / "coverage.md").read_text()
    assert "## Ledger rows not yet mapped to an argument" in text
    assert "not in the coverage map" in (fake / pages.PAGES / "ledger.md").read_text()


@pytest.mark.parametrize("edit, message", [
    (lambda a: a.update(who="Nobody"), "who 'Nobody' is not listed under people"),
    (lambda a: a.pop("quote"), "quote is missing"),
    (lambda a: a.update(chapters=["1"]), "two-digit numbers"),
    (lambda a: a.update(chapters=[], needs=""), "needs 'needs'"),
    (lambda a: a.update(colour="red"), "unknown keys \\['colour'\\]"),
])
def test_a_broken_coverage_file_is_refused(fake, edit, message):
    cov = yaml.safe_load((fake / "book" / "coverage.yml").read_text())
    edit(cov["arguments"][0])
    (fake / "book" / "coverage.yml").write_text(yaml.safe_dump(cov))
    with pytest.raises(pages.PagesError, match=message):
        pages.load_coverage(fake)


def test_status_says_which_results_are_stale(fake):
    data = pages.generate(fake, pdf=False)
    fresh = {k: v["freshness"] for k, v in data["chapters"].items()}
    assert fresh == {"01_alpha": "current", "02_beta": "current", "03_gamma": "not run"}
    src = fake / "notebooks" / "01_alpha.md"
    src.write_text(src.read_text().replace("Some prose.", "Some other prose."))
    data = pages.generate(fake, pdf=False)
    assert data["chapters"]["01_alpha"]["freshness"] == "stale"
    assert data["chapters"]["02_beta"]["freshness"] == "current"
    text = (fake / pages.PAGES / "status.md").read_text()
    assert "**stale**" in text and "--only 01_alpha" in text
    assert "(uncommitted changes)" in text and "12.5 s" in text and "2 \\(0, 1\\)" in text


def test_figure_provenance_and_served_files(fake):
    data = pages.generate(fake, pdf=False)
    fig = data["figures"]["alpha-fig"]
    assert fig["function"] == "countingargs.chapters.ch01_alpha.plots.loss"
    assert fig["tables"] == ["results/quick/01_alpha/metrics.csv"]
    assert fig["name"] == "fig-alpha-fig" and fig["profile"] == "quick"
    served = set(data["files"])
    for rel in ("figures/alpha-fig.png", "figures/alpha-fig.pdf", "results/quick/01_alpha/metrics.csv",
                "notebooks/01_alpha.ipynb", "notebooks/01_alpha.md", "CITATION.cff", pages.BIB_NAME):
        assert rel in served and (fake / pages.FILES / rel).exists(), rel
    # a file that disappears from the sources disappears from the served copy
    (fake / "book" / "figures" / "alpha-fig.pdf").unlink()
    data = pages.generate(fake, pdf=False)
    assert "figures/alpha-fig.pdf" not in data["files"]
    assert not (fake / pages.FILES / "figures" / "alpha-fig.pdf").exists()


def test_rerun_box_parameters_per_profile(fake):
    data = pages.generate(fake, pdf=False)
    rerun = data["chapters"]["01_alpha"]["rerun"]
    assert rerun["profiles"] == ["quick", "standard", "full"]
    assert rerun["params"] == [["seeds", "2", "5", "20"], ["width", "8", "8", "8"]]
    assert rerun["commands"][0] == "python -m countingargs rebuild --profile quick --only 01_alpha --force"


def test_generate_writes_nothing_when_nothing_changed(fake):
    pages.generate(fake, pdf=False)
    stamp = {p: p.stat().st_mtime_ns for p in (fake / pages.PAGES).iterdir()}
    pages.generate(fake, pdf=False)
    assert stamp == {p: p.stat().st_mtime_ns for p in (fake / pages.PAGES).iterdir()}


def test_the_books_coverage_map():
    cov = pages.load_coverage(REPO)
    args = cov["arguments"]
    assert {"Pope", "Hubinger", "Turner", "Carlsmith"} <= {a["who"] for a in args}
    assert len(args) >= 30
    for a in args:
        assert 1 <= len(a["quote"].split()) <= 10, a["id"]
        assert a["id"].startswith(a["who"].lower() + "-"), a["id"]
        planned = [c for c in a["chapters"] if not list((REPO / "notebooks").glob(f"{c}_*.md"))]
        assert a.get("needs") or (a["chapters"] and not planned), \
            f"{a['id']}: say what a test would need until chapters {planned} exist"
    # the arguments the issues name are on the map
    ids = {a["id"] for a in args}
    assert {"pope-llama", "pope-parallel", "pope-reversal", "hubinger-decomposition",
            "hubinger-dual-problems", "turner-distillation", "turner-early-stopping",
            "turner-pac-bayes", "carlsmith-counting", "carlsmith-strongest"} <= ids


def test_the_books_pages_generate_from_its_sources(tmp_path):
    """The real book's data files turn into pages, in a copy without any results yet."""
    root = copy_book(tmp_path / "book")
    shutil.copy2(REPO / "CITATION.cff", root / "CITATION.cff")
    data = pages.generate(root, pdf=False)
    assert set(data["chapters"]) == {p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.md")}
    assert all(c["freshness"] == "not run" for c in data["chapters"].values())
    assert "No chapter has written its ledger rows yet" in (root / pages.PAGES / "ledger.md").read_text()
    text = (root / pages.PAGES / "coverage.md").read_text()
    for person in ("Quintin Pope", "Evan Hubinger", "Alex Turner", "Joe Carlsmith"):
        assert f"## {person}" in text


def test_figures_carry_their_provenance_in_their_metadata(tmp_path):
    info = provenance_metadata("demo-fig", "01_demo", "quick", "pkg.plots.demo", ["b", "a"],
                               "0123456789abcdef", True)
    assert info["tables"] == ["results/quick/01_demo/a.csv", "results/quick/01_demo/b.csv"]
    paths = []
    for folder in ("x", "y"):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        paths.append(save_figure(fig, "demo-fig", tmp_path / folder, info))
    for kind in ("png", "pdf"):
        assert paths[0][kind].read_bytes() == paths[1][kind].read_bytes(), kind
        meta = read_metadata(paths[0][kind])
        blob = json.loads(meta["Provenance" if kind == "png" else "Keywords"])
        assert blob == {k: info[k] for k in blob} and blob["function"] == "pkg.plots.demo"
        desc = meta["Description" if kind == "png" else "Subject"]
        assert "drawn by pkg.plots.demo" in desc and "commit 0123456789ab with uncommitted changes" in desc
        assert meta["Title"] == "demo-fig"
    with pytest.raises(ValueError, match="provenance is for figure"):
        save_figure(plt.figure(), "other-fig", tmp_path, info)


def test_run_plot_stamps_function_and_tables(tmp_path):
    from countingargs.figures import figure

    @figure("zz-demo")
    def demo(tables, params):
        fig, ax = plt.subplots()
        ax.plot(tables["t"].a)
        return fig

    run = Run(tmp_path / "res", tmp_path / "fig", profile="quick", notebook="99_demo", params={})
    run.table("t", pd.DataFrame({"a": [1, 2]}))
    run.table("unused", pd.DataFrame({"b": [1]}))
    run.plot(demo)
    blob = json.loads(read_metadata(tmp_path / "fig" / "zz-demo.png")["Provenance"])
    assert blob["notebook"] == "99_demo" and blob["profile"] == "quick"
    assert blob["tables"] == ["results/quick/99_demo/t.csv"]
    assert blob["function"].endswith("demo") and blob["commit"] is None


def test_ledger_columns_are_the_ones_the_pages_read():
    assert pages.read_ledger.__doc__ and "id" in LEDGER_COLUMNS and "finding" in LEDGER_COLUMNS
