import json

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from countingargs.figures import save_figure
from countingargs.notebook import Run


def _fig():
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [1, 0, 1])
    return fig


def test_save_figure_writes_png_and_pdf_reproducibly(tmp_path):
    p1 = save_figure(_fig(), "demo-fig", tmp_path / "a")
    p2 = save_figure(_fig(), "demo-fig", tmp_path / "b")
    assert p1["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert p1["pdf"].read_bytes()[:5] == b"%PDF-"
    assert p1["pdf"].read_bytes() == p2["pdf"].read_bytes()
    assert p1["png"].read_bytes() == p2["png"].read_bytes()


def test_save_figure_rejects_bad_label(tmp_path):
    with pytest.raises(ValueError, match="figure label"):
        save_figure(_fig(), "Bad Label", tmp_path)


def test_run_writes_tables_glue_and_run_json(tmp_path):
    run = Run(tmp_path / "res", tmp_path / "fig", profile="quick", notebook="99_demo")
    run.table("summary", pd.DataFrame({"a": [1, 2], "b": [0.1, 1 / 3]}))
    assert (tmp_path / "res" / "summary.csv").read_text() == "a,b\n1,0.1\n2,0.3333333333\n"
    run.figure(_fig(), "demo-x")
    assert (tmp_path / "fig" / "demo-x.png").exists()
    run.glue("x", 0.5)
    run.glue("label", "supports")
    with pytest.raises(ValueError, match="used twice"):
        run.glue("x", 1.0)
    with pytest.raises(ValueError, match="non-finite"):
        run.glue("y", float("nan"))
    assert json.loads((tmp_path / "res" / "glue.json").read_text()) == {"x": 0.5, "label": "supports"}
    run.glue("seconds", 1.25, volatile=True)
    with pytest.raises(ValueError, match="used twice"):
        run.glue("seconds", 2.0)
    assert json.loads((tmp_path / "res" / "volatile.json").read_text()) == {"seconds": 1.25}
    assert "seconds" not in json.loads((tmp_path / "res" / "glue.json").read_text())
    run.finish(seeds=[0, 1])
    info = json.loads((tmp_path / "res" / "run.json").read_text())
    assert info["seeds"] == [0, 1] and info["figures"] == ["demo-x"] and info["profile"] == "quick"
