"""A small fake book for testing the generated pages without running any experiment.

Three chapters, as the runner would have left them: ``01_alpha`` has results, an executed
notebook with one figure and a ``ledger.csv`` of synthetic rows; ``02_beta`` has results and an
executed notebook but no ledger yet; ``03_gamma`` has never been run. The prose pages, the
extension, ``_config.yml`` and ``CITATION.cff`` are the real book's, so building this root with
jupyter-book exercises the same machinery as the real book.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pandas as pd  # noqa: E402

from conftest import REPO  # noqa: E402
from countingargs.build import runner  # noqa: E402
from countingargs.build.profiles import plan  # noqa: E402
from countingargs.figures import provenance_metadata, save_figure  # noqa: E402
from countingargs.notebook import write_table  # noqa: E402
from countingargs.report import PROPONENT, SCEPTIC, ledger_row, ledger_table  # noqa: E402

NOTEBOOK = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# {title}

Some prose.

```{{code-cell}}
:tags: [parameters]

profile = "standard"
results_dir = "../results/scratch/{name}"
figures_dir = "../book/figures"
seeds = 5
width = 8
```
"""

PROFILES = """quick:
  timeout: 60
  notebooks:
    01_alpha: {seeds: 2}
    02_beta: {seeds: 2, width: 4}
    03_gamma: {}
standard:
  notebooks: {01_alpha: {}, 02_beta: {}, 03_gamma: {}}
full:
  notebooks: {01_alpha: {seeds: 20}, 02_beta: {}, 03_gamma: {}}
"""

TOC = """format: jb-book
root: book/intro
parts:
  - caption: The experiments
    chapters:
      - file: book/generated/01_alpha
      - file: book/generated/02_beta
  - caption: What the book finds
    chapters:
      - file: book/ledger
      - file: book/coverage
      - file: book/figure-index
      - file: book/status
  - caption: About this book
    chapters:
      - file: book/rerun
      - file: book/cite
      - file: book/bibliography
"""

COVERAGE = """people:
  Pope: Quintin Pope
  Turner: Alex Turner
  Other: Other participants
arguments:
  - id: pope-fake
    who: Pope
    title: A fake argument
    quote: "a few words"
    where: Pope, first comment
    argument: Something checkable about $x$ and *emphasis* that must stay literal.
    kind: empirical
    chapters: ["01"]
    ledger: ["01-alpha-*"]
  - id: turner-fake
    who: Turner
    title: Another fake argument
    quote: "other words"
    where: Turner, reply
    argument: Tested by a chapter without a ledger.
    kind: empirical
    chapters: ["02"]
  - id: other-untested
    who: Other
    title: Untested
    quote: "more words"
    where: a commenter
    argument: Nobody tests this.
    kind: empirical
    chapters: ["09"]
    needs: a ninth chapter
"""


def ledger_rows() -> list[dict]:
    base = dict(chapter="01_alpha", quote="to use compute {effectively}", source="Turner, reply",
                effect_name="gap in held-out loss", units="nats", figure="alpha-fig")
    return [
        ledger_row(id="01-alpha-heldout", claim="Distilled students reach lower held-out loss | *not bold*.",
                   who="Turner", version="H (held-out loss)", claim_side=SCEPTIC, effect=0.01234,
                   effect_lo=0.00456, effect_hi=0.0201, verdict="supports",
                   finding="The distilled student's held-out loss is 0.0123 nats lower.", **base),
        ledger_row(id="01-alpha-train", claim="Distilled students reach lower training loss.",
                   who="Turner", version="T (training loss)", claim_side=SCEPTIC, effect=-0.5,
                   effect_lo=-0.7, effect_hi=-0.3, verdict="contradicts",
                   finding="The hard-label student has the lower training loss, by 0.5 nats.", **base),
        ledger_row(id="01-alpha-count", claim="Counting favours the schemer.", who="Pope",
                   quote="many possibilities", source="Pope, first comment", version="",
                   claim_side=PROPONENT, effect_name="log volume ratio", effect=0.1, effect_lo=-0.2,
                   effect_hi=0.4, units="nats", verdict="mixed",
                   finding="The interval spans zero; the count does not decide.", figure="",
                   chapter="01_alpha"),
    ]


def _executed(title: str, profile: str, input_hash: str, figure: str | None) -> nbformat.NotebookNode:
    cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\nWhat this chapter tests."),
             nbformat.v4.new_markdown_cell(
                 "```{admonition} How this page was produced\n:class: note\nExecuted by the runner.\n```"),
             nbformat.v4.new_code_cell("x = 1", execution_count=1)]
    if figure:
        cells.append(nbformat.v4.new_markdown_cell(
            f"```{{figure}} ../figures/{figure}.png\n:name: fig-{figure}\n:alt: A line going up.\n\n"
            "A line going up. Three seeds, one width.\n```"))
    nb = nbformat.v4.new_notebook(cells=cells)
    for c in nb.cells:
        c.pop("id", None)
    nb.nbformat_minor = 4
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["countingargs"] = {"profile": profile, "input_hash": input_hash, "commit": None,
                                   "dirty": None}
    return nb


def make_fake_book(root: Path, ledger: bool = True) -> Path:
    """Write the fake book into ``root`` (which must not exist or be empty)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "CITATION.cff", "requirements.txt"):
        shutil.copy2(REPO / name, root / name)
    shutil.copytree(REPO / "book", root / "book",
                    ignore=shutil.ignore_patterns("generated", "figures", "__pycache__", "coverage.yml"))
    if (REPO / "vendor").exists():
        (root / "vendor").symlink_to((REPO / "vendor").resolve())
    (root / "_toc.yml").write_text(TOC)
    (root / "book" / "coverage.yml").write_text(COVERAGE)
    nbdir = root / "notebooks"
    nbdir.mkdir()
    for name, title in (("01_alpha", "Alpha chapter"), ("02_beta", "Beta chapter"),
                        ("03_gamma", "Gamma chapter")):
        (nbdir / f"{name}.md").write_text(NOTEBOOK.format(title=title, name=name))
    (nbdir / "profiles.yml").write_text(PROFILES)
    gen = root / "book" / "generated"
    gen.mkdir(parents=True)
    for name, title, fig in (("01_alpha", "Alpha chapter", "alpha-fig"), ("02_beta", "Beta chapter", None)):
        [job] = plan(root, "quick", [name])
        h = runner.input_hash(root, job, "quick", 1)
        res = root / "results" / "quick" / name
        res.mkdir(parents=True)
        metrics = pd.DataFrame({"size": [1, 2, 3], "loss": [0.5, 0.25, 0.125]})
        write_table(metrics, res / "metrics.csv")
        (res / "glue.json").write_text(json.dumps({"verdict": "mixed"}))
        sources = {}
        if fig:
            fn = "countingargs.chapters.ch01_alpha.plots.loss"
            f, ax = plt.subplots(figsize=(3, 2))
            ax.plot(metrics["size"], metrics["loss"])
            ax.set_xlabel("size")
            ax.set_ylabel("loss (nats)")
            save_figure(f, fig, root / "book" / "figures",
                        provenance_metadata(fig, name, "quick", fn, ["metrics"], "abc123def4567", False))
            sources[fig] = {"function": fn, "tables": ["metrics"]}
            if ledger:
                write_table(ledger_table(ledger_rows()), res / "ledger.csv")
        (res / "run.json").write_text(json.dumps({"figure_sources": sources, "seeds": [0, 1]}))
        prov = {"notebook": name, "profile": "quick", "input_hash": h, "commit": "abc123def4567",
                "dirty": name == "02_beta", "seeds": [0, 1], "wall_seconds": 12.5,
                "started_utc": "2026-11-30T12:00:00+00:00", "device": "cpu", "torch_threads": 1}
        (res / "provenance.json").write_text(json.dumps(prov))
        nbformat.write(_executed(title, "quick", h, fig), gen / f"{name}.ipynb")
    return root
