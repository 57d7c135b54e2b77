"""Values and configuration: YAML 1.2 / JSON numbers, malformed profiles.yml, declared ranges.
Everything here is refused before anything runs, so these tests execute no notebook."""
from __future__ import annotations

import math

import pytest

from countingargs.build import RebuildError
from countingargs.build import runner as rb
from countingargs.build.cli import _parse_overrides
from countingargs.build.sources import parameter_specs, render_parameters
from countingargs.build.values import load_yaml, parse_declaration, parse_value
from runner_books import make_light_book, write_notebook


@pytest.mark.parametrize("raw, value", [
    ("10", 10), ("0", 0), ("-3", -3), ("1e-3", 0.001), ("2.5", 2.5), ("-1.5E+2", -150.0),
    ("true", True), ("False", False), ("yes", "yes"), ("off", "off"), ("sgd", "sgd"),
    ('"010"', "010"), ("[100, 200]", [100, 200]), ("[[0.0003, 100.0]]", [[0.0003, 100.0]]),
    ("2001-12-14", "2001-12-14"), ("x1|x2", "x1|x2"), ("null", None),
])
def test_values_are_read_as_yaml_1_2_and_json_numbers(raw, value):
    got = parse_value(raw, "x")
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("raw", ["010", "0x10", "0o17", "0b101", "1_000", "+5", ".5", "1.", "1e",
                                 ".nan", ".NaN", ".inf", "-.inf", "[1, 010]"])
def test_number_like_text_that_is_not_a_json_number_is_refused(raw):
    with pytest.raises(RebuildError, match="is not a number as JSON and YAML 1.2 write numbers"):
        parse_value(raw, "seeds")


def test_duplicate_keys_are_refused_with_their_lines():
    with pytest.raises(RebuildError, match=r"line 3: duplicate key 'timeout' \(first given on line 2\)"):
        load_yaml("quick:\n  timeout: 10\n  timeout: 20\n", "profiles.yml")
    with pytest.raises(RebuildError, match="-p n is given twice"):
        _parse_overrides([("n", "2"), ("n", "3")])
    assert _parse_overrides([("lr", "1e-3"), ("seeds", "010".lstrip("0"))]) == {"lr": 0.001, "seeds": 10}


QUICK = "quick:\n  timeout: {t}\n  notebooks:\n    01_a: {entry}\n"


@pytest.mark.parametrize("text, message", [
    (QUICK.format(t='"ten minutes"', entry="{}"), "quick > timeout: must be a positive number of seconds"),
    (QUICK.format(t="ten minutes", entry="{}"), "quick > timeout: must be a positive number of seconds"),
    (QUICK.format(t="0", entry="{}"), "quick > timeout: must be a positive number of seconds (per cell), got 0"),
    (QUICK.format(t="-5", entry="{}"), "got -5"),
    (QUICK.format(t="true", entry="{}"), "got True"),
    (QUICK.format(t="1e400", entry="{}"), "got inf"),
    (QUICK.format(t="10", entry="[n, 2]"), "quick > notebooks > 01_a: expected a mapping of parameter: value"),
    (QUICK.format(t="10", entry="3"), "quick > notebooks > 01_a: expected a mapping"),
    (QUICK.format(t="10", entry="{n: 2, n: 3}"), "duplicate key 'n'"),
    (QUICK.format(t="10", entry="{n: 010}"), "'010' is not a number"),
    (QUICK.format(t="10", entry="{}") + "quick:\n  notebooks: {}\n", "line 5: duplicate key 'quick'"),
    ("quick:\n  timeout: 10\n", "quick > notebooks: expected a mapping of notebook name to parameters, got nothing"),
    ("quick:\n  notebooks: [01_a]\n", "quick > notebooks: expected a mapping"),
    ("quick: [1, 2]\n", "quick: expected a mapping with 'notebooks'"),
    ("- quick\n", "must map profile names to settings, not a list"),
    ("quick:\n  notebooks: {01_a: {}}\n  timeuot: 5\n", "unknown keys ['timeuot']"),
    ("fast:\n  notebooks: {}\n", "unknown profile 'fast'"),
    ("quick:\n  notebooks: {01_a: {n: }\n", "profiles.yml: line"),
    (QUICK.format(t="10", entry="{1: 2}"), "parameter names must be text"),
])
def test_malformed_profiles_are_clear_errors(tmp_path, text, message):
    root = make_light_book(tmp_path, profiles=text)
    with pytest.raises(RebuildError) as err:
        rb.plan(root, "quick")
    assert message in str(err.value)
    assert "Traceback" not in str(err.value)


def test_a_float_timeout_is_accepted_and_used(tmp_path):
    root = make_light_book(tmp_path, profiles=QUICK.format(t="2.5", entry="{}"))
    from countingargs.build.profiles import load_profiles, timeout_of
    assert timeout_of(load_profiles(root), "quick") == 2.5


@pytest.mark.parametrize("overrides, message", [
    ({"n": 0}, "parameter 'n' = 0 is outside its declared range '>= 1'"),
    ({"n": -2}, "'n' = -2 is outside its declared range '>= 1'"),
    ({"scale": 0.0}, "'scale' = 0.0 is outside its declared range '> 0'"),
    ({"scale": math.nan}, "NaN and infinite numbers are not allowed"),
    ({"scale": math.inf}, "NaN and infinite numbers are not allowed"),
    ({"n": 2.0}, "has type float, expected int"),
    ({"scale": "nan"}, "'scale' = 'nan' has type str, expected float"),
])
def test_declared_ranges_are_enforced_before_anything_runs(tmp_path, overrides, message):
    root = make_light_book(tmp_path)
    with pytest.raises(RebuildError) as err:
        rb.rebuild(root, "quick", only=["01_a"], overrides=overrides, log=print)
    assert message in str(err.value)
    assert not (root / "results").exists() and not (root / ".rebuild-tmp").exists()


def test_ranges_in_profiles_yml_are_enforced_too(tmp_path):
    root = make_light_book(tmp_path, profiles=QUICK.format(t="10", entry="{n: 0}"))
    with pytest.raises(RebuildError, match="01_a: parameter 'n' = 0 is outside its declared range"):
        rb.plan(root, "quick")


def _cell_book(tmp_path, params_cell: str):
    root = make_light_book(tmp_path)
    path = root / "notebooks" / "01_a.md"
    text = path.read_text()
    start = text.index('profile = "standard"')
    end = text.index("```", start)
    path.write_text(text[:start] + params_cell + text[end:])
    return root, path


RUNNER = 'profile = "standard"\nresults_dir = "r"\nfigures_dir = "f"\n'


def test_declarations_in_the_parameters_cell(tmp_path):
    cell = RUNNER + ('sizes = [4, 8]      # >= 1; sizes of the hidden layers\n'
                     'alt = [[0.1, 2.0]]  # > 0\n'
                     'p = 0.5             # in (0, 1]\n'
                     'opt = "sgd"         # in {"sgd", "adam"}\n'
                     'names = ["a"]       # free text, no declaration\n'
                     'k = 3               # > 1, < 10\n')
    root, path = _cell_book(tmp_path, cell)
    specs = parameter_specs(path)
    assert specs["sizes"].declared == ">= 1" and specs["k"].declared == "> 1, < 10"
    assert specs["names"].conditions == ()
    ok = {"sizes": [1, 2], "alt": [[0.5, 1.0]], "p": 1.0, "opt": "adam", "k": 9}
    assert rb.plan(root, "standard", ["01_a"], ok)[0].resolved["p"] == 1.0
    for bad, message in [({"sizes": []}, "an empty list is not allowed"),
                         ({"sizes": [4, 0]}, "0 (in [4, 0]) is outside its declared range '>= 1'"),
                         ({"alt": [[0.1, -1.0]]}, "is outside its declared range '> 0'"),
                         ({"alt": [[]]}, "an empty list is not allowed"),
                         ({"p": 0.0}, "'p' = 0.0 is outside its declared range 'in (0, 1]'"),
                         ({"opt": "adamw"}, "outside its declared range 'in {\"sgd\", \"adam\"}'"),
                         ({"k": 10}, "'< 10'"), ({"names": []}, "an empty list is not allowed")]:
        with pytest.raises(RebuildError, match="invalid request, nothing was run") as err:
            rb.plan(root, "standard", ["01_a"], bad)
        assert message in str(err.value), (bad, str(err.value))


@pytest.mark.parametrize("line, message", [
    ("n = 0  # >= 1", "the default of parameter 'n' = 0 is outside its declared range '>= 1'"),
    ("n = 3  # >= one", "cannot read the declared range '>= one'"),
    ("n = 3  # > 1 < 5", "expected ',' or ';'"),
    ("n = 3\nn = 4", "'n' is assigned twice"),
    ('opt = "sgd"  # > 0', "'sgd' is not a number"),
])
def test_a_bad_declaration_is_an_error_in_the_notebook(tmp_path, line, message):
    root, path = _cell_book(tmp_path, RUNNER + line + "\n")
    with pytest.raises(RebuildError) as err:
        parameter_specs(path)
    assert message in str(err.value) and "01_a.md" in str(err.value)


def test_parse_declaration_reads_only_comments_that_start_like_one():
    assert parse_declaration("# independent seeds per cell") == ()
    assert parse_declaration("# [inputs, hidden units]") == ()
    [c] = parse_declaration("#   >= 2 ;  seeds, at least two for an interval")
    assert c.text == ">= 2" and c.test(2) and not c.test(1)
    lo, hi = parse_declaration("# >0, <=1")
    assert lo.test(1e-9) and not lo.test(0) and hi.test(1) and not hi.test(1.01)


def test_render_parameters_writes_the_values_used_in_place():
    src = ('profile = "standard"   # set by the runner\nn = 3  # >= 1; rows\n'
           'sizes = [\n    4,\n    8,\n]  # >= 1\nname = "é"\n')
    out = render_parameters(src, {"profile": "quick", "sizes": [16], "name": "ü"})
    assert out == ("profile = 'quick'   # set by the runner\nn = 3  # >= 1; rows\n"
                   "sizes = [16]  # >= 1\nname = 'ü'\n")


def test_int_for_a_float_becomes_a_float_and_no_op_overrides_are_not_overrides(tmp_path):
    root = make_light_book(tmp_path)
    [job] = rb.plan(root, "quick", ["01_a"], {"scale": 2})
    assert job.resolved["scale"] == 2.0 and isinstance(job.resolved["scale"], float)
    assert job.variant.startswith("quick+") and job.overrides == {"scale": 2.0}
    assert rb.plan(root, "quick", ["01_a"], {"scale": 2.0})[0].variant == job.variant
    [same] = rb.plan(root, "quick", ["01_a"], {"n": 2, "scale": 1.5})  # the profile's own values
    assert same.variant == "quick" and same.overrides == {}
    [dup] = rb.plan(root, "quick", ["01_a", "01_a"])
    assert dup.name == "01_a"
    write_notebook(root, "02_b")
    with pytest.raises(RebuildError, match="02_b: no entry in profile 'quick'"):
        rb.plan(root, "quick")
