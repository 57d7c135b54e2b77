"""How the runner reads values: YAML 1.2 / JSON numbers, no duplicate keys, declared ranges.

PyYAML follows YAML 1.1, where ``010`` is 8, ``0x10`` is 16, ``yes`` is true and ``1e-3`` is a
string. The runner reads ``notebooks/profiles.yml`` and every ``-p NAME VALUE`` with
:func:`load_yaml`, which resolves plain scalars as YAML 1.2's core schema and JSON do:

- integers are ``-?(0|[1-9][0-9]*)``; floats add a fraction and/or an exponent (``1e-3`` is 0.001);
- booleans are ``true``/``false`` (also ``True``, ``TRUE``, ...); ``yes``/``no``/``on``/``off`` are text;
- anything else that looks like a number but is not written as JSON writes numbers (``010``,
  ``0x10``, ``0o7``, ``1_000``, ``+5``, ``.5``, ``1.``, ``.nan``, ``.inf``) is refused with a clear
  message, never guessed; quote it to mean text;
- dates stay text; a key given twice in one mapping is an error.

A parameter may declare its valid range in a trailing comment of its line in the notebook's
``parameters`` cell (see :func:`parse_declaration`); :func:`check_value` applies it, refuses NaN
and infinities everywhere, and refuses an empty list where the default is not empty.
"""
from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

import yaml
from yaml.constructor import ConstructorError

from . import RebuildError

_INT = r"-?(?:0|[1-9][0-9]*)"
_FLOAT = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+(?:[eE][-+]?[0-9]+)?|[eE][-+]?[0-9]+)"
_NUMBERISH = (r"[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9_]*)?"
              r"|[-+]?0[xXoObB][0-9a-fA-F_]*"
              r"|[-+]?\.?(?:inf|Inf|INF|nan|NaN|NAN|Infinity)")
_BAD_NUMBER_TAG = "tag:countingargs,2026:not-a-json-number"
_NUMBER_START = list("-+0123456789.")
_DROPPED = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
            "tag:yaml.org,2002:timestamp"}


class Yaml12Loader(yaml.SafeLoader):
    """A safe loader with YAML 1.2 core-schema scalars (see the module docstring) that refuses
    duplicate keys and number-like text that is not a JSON number."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # unhashable: SafeConstructor reports it
                if first is not None:
                    raise ConstructorError(None, None, f"duplicate key {key!r} (first given on line "
                                           f"{first + 1})", key_node.start_mark)
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _DROPPED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool",
                                   re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(f"^{_INT}$"), _NUMBER_START)
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(f"^{_FLOAT}$"), _NUMBER_START)
Yaml12Loader.add_implicit_resolver(_BAD_NUMBER_TAG, re.compile(f"^(?:{_NUMBERISH})$"), _NUMBER_START)


def _construct_int(loader, node):
    return int(loader.construct_scalar(node))


def _construct_float(loader, node):
    return float(loader.construct_scalar(node))


def _construct_bool(loader, node):
    return loader.construct_scalar(node).lower() == "true"


def _refuse_number(loader, node):
    text = loader.construct_scalar(node)
    raise ConstructorError(None, None, f"{text!r} is not a number as JSON and YAML 1.2 write numbers "
                           "(no leading zeros, 0x/0o/0b, '_', leading '+', bare '.', nan or inf); "
                           "write it plainly (e.g. 10, 0.5, 1e-3), or quote it to mean text",
                           node.start_mark)


Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
Yaml12Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)
Yaml12Loader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)
Yaml12Loader.add_constructor(_BAD_NUMBER_TAG, _refuse_number)


def load_yaml(text: str, where: str) -> Any:
    """Parse ``text`` with :class:`Yaml12Loader`; a problem raises RebuildError naming ``where``
    and the line."""
    try:
        return yaml.load(text, Loader=Yaml12Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RebuildError(f"{where}:{line} {problem}") from None


def parse_value(raw: str, name: str) -> Any:
    """The value of ``-p NAME RAW`` (a YAML 1.2 flow value: ``3``, ``1e-3``, ``[100, 200]``,
    ``"text"``)."""
    return load_yaml(raw, f"-p {name} {raw!r}")


# ---------------------------------------------------------------------------------------------
# Declared ranges
# ---------------------------------------------------------------------------------------------
_NUM = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_COND = re.compile(
    rf"\s*(?:(?P<op>>=|<=|>|<)\s*(?P<num>{_NUM})"
    rf"|in\s*(?P<lb>[\[(])\s*(?P<lo>{_NUM})\s*,\s*(?P<hi>{_NUM})\s*(?P<rb>[\])])"
    rf"|in\s*\{{(?P<set>[^}}]*)\}})\s*")
_STARTS = re.compile(r"^\s*(?:>=|<=|>|<|in\s*[\[({])")


@dataclass(frozen=True)
class Condition:
    text: str                              # as written, e.g. ">= 2" or "in (0, 1]"
    test: Callable[[Any], bool]
    numeric: bool


def _number(text: str) -> float | int:
    v = float(text)
    return int(v) if re.fullmatch(r"[-+]?[0-9]+", text) else v


def _make_condition(m: re.Match) -> Condition:
    text = " ".join(m.group(0).split())
    if m["op"]:
        x, op = _number(m["num"]), m["op"]
        test = {">=": lambda v: v >= x, ">": lambda v: v > x,
                "<=": lambda v: v <= x, "<": lambda v: v < x}[op]
        return Condition(text, test, True)
    if m["lb"]:
        lo, hi = _number(m["lo"]), _number(m["hi"])
        lo_ok = (lambda v: v >= lo) if m["lb"] == "[" else (lambda v: v > lo)
        hi_ok = (lambda v: v <= hi) if m["rb"] == "]" else (lambda v: v < hi)
        return Condition(text, lambda v: lo_ok(v) and hi_ok(v), True)
    try:
        choices = ast.literal_eval(f"[{m['set']}]")
    except (ValueError, SyntaxError):
        raise ValueError(f"the choices in {text!r} must be literals, e.g. in {{\"sgd\", \"adam\"}}") from None
    if not choices:
        raise ValueError(f"{text!r} lists no choices")
    return Condition(text, lambda v: any(v == c and type(v) is type(c) for c in choices), False)


def parse_declaration(comment: str) -> tuple[Condition, ...]:
    """The conditions a trailing comment declares, or ``()`` for a comment of plain text.

    A declaration starts the comment and ends at ``;`` (the rest is free text)::

        seeds = 5          # >= 2; independent seeds per cell
        lr = 0.003         # > 0
        margin = 0.05      # in (0, 1)
        widths = [4, 8]    # >= 1 (every element of a list)
        optimiser = "sgd"  # in {"sgd", "adam"}

    Conditions are separated by commas (``# > 0, <= 1``). A comment that starts like a
    declaration but does not parse raises ValueError, so a typo never disables a check.
    """
    text = comment.lstrip("#").strip()
    if not _STARTS.match(text):
        return ()
    decl = text.split(";", 1)[0]
    out, pos = [], 0
    while True:
        m = _COND.match(decl, pos)
        if not m:
            raise ValueError(f"cannot read the declared range {decl.strip()!r} (write e.g. '>= 2', "
                             "'> 0, <= 1', 'in (0, 1]' or 'in {\"a\", \"b\"}', then '; free text')")
        out.append(_make_condition(m))
        pos = m.end()
        if pos == len(decl):
            return tuple(out)
        if decl[pos] != ",":
            raise ValueError(f"cannot read the declared range {decl.strip()!r}: expected ',' or ';' "
                             f"after {m.group(0).strip()!r}")
        pos += 1


def _leaves(value: Any):
    if isinstance(value, (list, tuple)):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def _has_empty_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and (not value or any(_has_empty_list(v) for v in value))


def check_value(name: str, value: Any, default: Any, conditions: tuple[Condition, ...] = ()) -> list[str]:
    """Problems with ``value`` for parameter ``name`` (empty if none): a NaN or infinite number,
    an empty list where the default has none, or an element outside the declared range."""
    problems = []
    leaves = list(_leaves(value))
    if any(isinstance(v, float) and not math.isfinite(v) for v in leaves):
        problems.append(f"parameter {name!r} = {value!r}: NaN and infinite numbers are not allowed")
        return problems
    if _has_empty_list(value) and not _has_empty_list(default):
        problems.append(f"parameter {name!r} = {value!r}: an empty list is not allowed "
                        f"(default {default!r})")
    for cond in conditions:
        for v in leaves:
            numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
            if cond.numeric and not numeric:
                problems.append(f"parameter {name!r} = {value!r}: {v!r} is not a number, but the "
                                f"notebook declares '{cond.text}'")
                break
            if not cond.test(v):
                what = f"{v!r} (in {value!r})" if isinstance(value, (list, tuple)) else f"{v!r}"
                problems.append(f"parameter {name!r} = {what} is outside its declared range "
                                f"'{cond.text}'")
                break
    return problems
