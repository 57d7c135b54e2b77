"""CITATION.cff: valid Citation File Format, the same version as the package, a preferred
citation, and the BibTeX the "How to cite" page shows is generated from it and parses."""
import json
import re
import tomllib

import jsonschema
import pytest
import yaml

from conftest import REPO
from countingargs import __version__
from countingargs.build import pages

SCHEMA = REPO / "tests" / "data" / "cff-1.2.0.schema.json"


@pytest.fixture(scope="module")
def cff():
    return yaml.safe_load((REPO / "CITATION.cff").read_text())


def test_citation_cff_is_valid_against_the_vendored_schema(cff):
    schema = json.loads(SCHEMA.read_text())
    assert schema["$id"] == "https://citation-file-format.github.io/1.2.0/schema.json"
    assert cff["cff-version"] == "1.2.0"
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
                    .iter_errors(cff), key=str)
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def test_the_validation_can_fail(cff):
    """The schema check is not vacuous: a broken file is refused."""
    schema = json.loads(SCHEMA.read_text())
    for broken in ({**cff, "authors": []}, {**cff, "date-released": "27 Nov 2026"},
                   {k: v for k, v in cff.items() if k != "title"}, {**cff, "colour": "blue"}):
        assert list(jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
                    .iter_errors(broken))


def test_version_matches_pyproject_and_the_package(cff):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert cff["version"] == project["version"] == __version__
    pref = cff["preferred-citation"]
    assert pref["version"] == cff["version"]
    assert pref["title"] and pref["authors"] and pref["type"]
    assert str(pref["year"]) == cff["date-released"][:4]


def test_bibtex_is_generated_from_the_cff_and_parses(cff):
    from pybtex.database import parse_string

    book = pages.citation(REPO, commit="0123456789abcdef0123")
    db = parse_string(book["bibtex"], "bibtex")
    [(key, entry)] = db.entries.items()
    assert key == book["key"]
    assert entry.fields["title"].strip("{}") == cff["preferred-citation"]["title"]
    assert entry.fields["version"] == cff["version"]
    assert "commit 0123456789ab" in entry.fields["note"]
    assert book["plain"].startswith(cff["preferred-citation"]["authors"][0]["name"])
    plain, bib = pages.figure_citation(book, {"label": "demo-fig", "profile": "standard",
                                              "commit": "fedcba9876543210", "dirty": True},
                                       "3", "Loss against size. More words.")
    entry = parse_string(bib, "bibtex").entries["countingargs2026-demo-fig"]
    assert entry.fields["title"] == "{Figure 3: Loss against size}"
    assert "standard profile; commit fedcba987654 with uncommitted changes" in entry.fields["note"]
    assert re.search(r"Figure 3: Loss against size\. File figures/demo-fig\.pdf", plain)
