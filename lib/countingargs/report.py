"""What an analysis returns, and the ledger's row format.

Every chapter's ``analysis.py`` turns *saved* tables into :class:`Findings`: the numbers and
sentences the prose shows (``glue``) and any derived tables (per-cell verdicts, the ledger
rows). The notebook records them with ``run.record(findings)``; ``python -m countingargs
verify`` calls the chapter's ``analysis.analyse(tables, params)`` on the saved CSVs and checks
that it gives exactly what ``glue.json`` and the derived CSVs hold.

A *ledger row* states one sub-claim and what the data say of it, so that a reader understands
the row without opening the chapter (columns: :data:`LEDGER_COLUMNS`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import pandas as pd

VERDICTS = ("supports", "contradicts", "mixed")
#: the side of the debate a claim argues for
SCEPTIC = "against the counting argument"
PROPONENT = "for the counting argument"
SIDES = (SCEPTIC, PROPONENT)
NEITHER = "neither side"

LEDGER_COLUMNS = (
    "id",           # stable identifier, e.g. "01-heldout-early-stopped"
    "chapter",      # notebook name, e.g. "01_distillation"
    "claim",        # the sub-claim in one plain sentence (our words)
    "who",          # who made it: Pope, Turner, Hubinger, Carlsmith, ...
    "quote",        # a few of their words
    "source",       # where in the discussion the quote is
    "version",      # which version / reading of the claim this row tests
    "claim_side",   # SCEPTIC or PROPONENT: the side the claim argues for
    "favours",      # computed: the claim's side if supported, the other if contradicted, else NEITHER
    "effect_name",  # what the effect size measures
    "effect",       # point estimate
    "effect_lo",    # interval (95% unless the chapter says otherwise)
    "effect_hi",
    "units",        # units of the effect ("nats", "share of seeds", ...)
    "verdict",      # supports / contradicts / mixed
    "finding",      # one sentence written from the data by analysis.py
    "figure",       # label of the figure that shows it (book/figures/<label>.png)
)


@dataclass
class Findings:
    """Glued values (key -> int, float, str or bool) and derived tables (name -> DataFrame)."""

    glue: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    @staticmethod
    def merge(*parts: "Findings") -> "Findings":
        """All parts together; a glue key or table name given twice is an error."""
        out = Findings()
        for p in parts:
            for k, v in p.glue.items():
                if k in out.glue:
                    raise ValueError(f"glue key {k!r} computed twice")
                out.glue[k] = v
            for k, v in p.tables.items():
                if k in out.tables:
                    raise ValueError(f"table {k!r} computed twice")
                out.tables[k] = v
        return out


def other_side(side: str) -> str:
    if side not in SIDES:
        raise ValueError(f"claim_side must be one of {SIDES}, got {side!r}")
    return SIDES[1 - SIDES.index(side)]


def ledger_row(*, id: str, chapter: str, claim: str, who: str, quote: str, source: str,
               version: str, claim_side: str, effect_name: str, effect: float, effect_lo: float,
               effect_hi: float, units: str, verdict: str, finding: str, figure: str) -> dict:
    """One validated ledger row (a dict with :data:`LEDGER_COLUMNS`)."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    favours = (claim_side if verdict == "supports" else other_side(claim_side)
               if verdict == "contradicts" else NEITHER)
    if claim_side not in SIDES:
        raise ValueError(f"claim_side must be one of {SIDES}, got {claim_side!r}")
    for name, text in (("id", id), ("claim", claim), ("who", who), ("finding", finding)):
        if not str(text).strip():
            raise ValueError(f"ledger row {id!r}: {name} is empty")
    row = dict(id=id, chapter=chapter, claim=claim, who=who, quote=quote, source=source,
               version=version, claim_side=claim_side, favours=favours, effect_name=effect_name,
               effect=float(effect), effect_lo=float(effect_lo), effect_hi=float(effect_hi),
               units=units, verdict=verdict, finding=finding, figure=figure)
    return row


def ledger_table(rows: list[Mapping]) -> pd.DataFrame:
    """The ledger rows of one chapter as a table; ids must be unique."""
    df = pd.DataFrame(list(rows), columns=list(LEDGER_COLUMNS))
    dup = df.id[df.id.duplicated()].tolist()
    if dup:
        raise ValueError(f"ledger ids used twice: {dup}")
    return df
