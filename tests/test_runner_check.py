"""verify / replot on an unpublished override run (results/<profile>+<hash>/): verify reads it,
replot redraws its figures into its own folder, never into the book."""
import io
import json
import shutil

from PIL import Image

from countingargs.build import check
from test_check import book  # noqa: F401 - the fixture: a fake chapter with saved results


def test_replot_of_an_override_run_stays_out_of_the_book(book):  # noqa: F811
    root, res = book
    own = root / "results" / "quick+0123abcd" / "99_fake"
    own.parent.mkdir(parents=True)
    shutil.move(str(res), str(own))
    prov = json.loads((own / "provenance.json").read_text())
    (own / "provenance.json").write_text(json.dumps({**prov, "published": False}))
    book_figures = {p.name: p.read_bytes() for p in (root / "book" / "figures").iterdir()}
    shutil.rmtree(root / "book" / "figures")
    [rep] = check.verify(root, "quick+0123abcd")
    assert rep.ok, rep.problems
    written = check.replot(root, "quick+0123abcd")
    assert sorted(p.relative_to(own).as_posix() for p in written["99_fake"]) == \
        ["figures/zz-squares.pdf", "figures/zz-squares.png"]
    assert not (root / "book" / "figures").exists()
    # The same pixels; the embedded provenance names the run the figure was redrawn from.
    redrawn, published = (Image.open(io.BytesIO(b)) for b in (
        (own / "figures" / "zz-squares.png").read_bytes(), book_figures["zz-squares.png"]))
    assert redrawn.tobytes() == published.tobytes()
    assert "results/quick+0123abcd/99_fake/squares.csv" in redrawn.text["Description"]
    assert "results/quick/99_fake/squares.csv" in published.text["Description"]
