"""Early parameter validation for configuration dataclasses (scikit-learn style): every
field's type is checked against its annotation, then its range against a rule table, and
all problems are reported together, before any data is loaded or file written."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any, Literal

Rule = tuple[Callable[[Any], bool], str]  # (check, what the value must be)


def between(lo: float, hi: float) -> Callable[[float], bool]:
    return lambda v: lo <= v <= hi


def is_a(value: Any, hint: Any) -> bool:
    """Whether `value` fits a field annotation: str, int, float (ints accepted), bool, dict,
    list, None, Literal[...] and unions of those (bools are not numbers here; the items of a
    list[...] or dict[...] and anything typed Any are not checked)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (list, dict, tuple, set, frozenset):
        return isinstance(value, origin)
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return any(is_a(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def describe(hint: Any) -> str:
    """An annotation in words, for error messages."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(describe(h) for h in typing.get_args(hint))
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def field_problems(obj: Any, rules: Mapping[str, Rule]) -> tuple[list[str], set[str]]:
    """Problems of a dataclass instance's fields: wrong types (from the annotations), then
    broken range rules (for fields of the right type, None skipped). Returns the messages
    and the names of the fields that have one."""
    hints = typing.get_type_hints(type(obj))
    problems, bad = [], set()
    for f in fields(obj):
        value = getattr(obj, f.name)
        if not is_a(value, hints[f.name]):
            problems.append(f"{f.name}={value!r}: expected {describe(hints[f.name])}")
            bad.add(f.name)
    for name, (ok, rule) in rules.items():
        value = getattr(obj, name)
        if name not in bad and value is not None and not ok(value):
            problems.append(f"{name}={value!r}: must be {rule}")
            bad.add(name)
    return problems, bad
