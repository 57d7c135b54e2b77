"""Figure style and the one helper that writes every figure of the book.

Every figure is saved under a stable, citable name as ``<label>.png`` and ``<label>.pdf``.
PDFs carry no creation date, so the same figure gives the same bytes on every run.
"""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABEL_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.hashsalt": "countingargs",
    "pdf.fonttype": 42,
}


def use_style() -> None:
    """Apply the book's matplotlib style (seaborn's colour-blind palette, light grid)."""
    import seaborn as sns

    sns.set_palette("colorblind")
    plt.rcParams.update(STYLE)


def figure(label: str):
    """Mark a plot function of a chapter's ``plots.py`` as the maker of figure ``label``.

    The function takes ``(tables, params)`` (the saved tables by name, the parameters) and
    returns a matplotlib figure; ``run.plot(fn)`` saves it under ``label`` and
    ``python -m countingargs replot`` redraws it from ``results/`` alone."""
    if not LABEL_RE.match(label):
        raise ValueError(f"figure label {label!r} must match {LABEL_RE.pattern}")

    def mark(fn):
        fn.figure_label = label
        return fn

    return mark


def figure_functions(module) -> dict:
    """Label -> plot function for every function of ``module`` marked with :func:`figure`."""
    out = {}
    for value in vars(module).values():
        label = getattr(value, "figure_label", None)
        if callable(value) and label:
            if label in out and out[label] is not value:
                raise ValueError(f"{module.__name__}: two functions draw figure {label!r}")
            out[label] = value
    return dict(sorted(out.items()))


def save_figure(fig, label: str, figures_dir: str | Path) -> dict[str, Path]:
    """Save ``fig`` as ``<label>.png`` and ``<label>.pdf`` in ``figures_dir`` and close it.

    ``label`` must be lower-case letters, digits and dashes (it becomes the citable file name).
    Returns the paths written. Metadata that changes from run to run (dates, software
    versions) is stripped so the files are reproducible.
    """
    if not LABEL_RE.match(label):
        raise ValueError(f"figure label {label!r} must match {LABEL_RE.pattern} "
                         "(lower-case letters, digits and dashes)")
    out = Path(figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"png": out / f"{label}.png", "pdf": out / f"{label}.pdf"}
    fig.savefig(paths["png"], bbox_inches="tight", metadata={"Software": None})
    fig.savefig(paths["pdf"], bbox_inches="tight",
                metadata={"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None})
    plt.close(fig)
    return paths
