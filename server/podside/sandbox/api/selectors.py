"""Label and field selectors: the query-string syntax (`app=blog,tier in (web)`) and the
`matchLabels`/`matchExpressions` form used by workloads and services."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from podside.sandbox.api.errors import bad_request

Predicate = Callable[[Mapping[str, str]], bool]

_SET_TERM = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQUALITY_TERM = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")
_EXISTS_TERM = re.compile(r"^\s*(!?)\s*([A-Za-z0-9./_-]+)\s*$")


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not inside `in (a,b)` parentheses."""
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [term for term in terms if term.strip()]


def _label_term(term: str) -> Predicate:
    if match := _SET_TERM.match(term):
        key, operator, values_text = match.groups()
        values = {value.strip() for value in values_text.split(",") if value.strip()}
        if operator == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if match := _EQUALITY_TERM.match(term):
        key, operator, value = match.groups()
        if operator == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if match := _EXISTS_TERM.match(term):
        negated, key = match.groups()
        if negated:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise bad_request(f"unable to parse requirement: {term.strip()!r}")


def parse_label_selector(selector: str | None) -> Predicate:
    """The `labelSelector` query parameter as a predicate over an object's labels."""
    if not selector:
        return lambda labels: True
    predicates = [_label_term(term) for term in _split_terms(selector)]
    return lambda labels: all(predicate(labels) for predicate in predicates)


def match_label_selector(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A `metav1.LabelSelector` (matchLabels + matchExpressions) against labels.

    An empty selector matches everything, as it does for workloads.
    """
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = set(expression.get("values") or [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def selector_to_string(selector: Mapping[str, Any]) -> str:
    """A LabelSelector written back as query-string syntax (for status.selector and tables)."""
    terms = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = ",".join(sorted(expression.get("values") or []))
        terms.append(
            {
                "In": f"{key} in ({values})",
                "NotIn": f"{key} notin ({values})",
                "Exists": key,
                "DoesNotExist": f"!{key}",
            }[operator]
        )
    return ",".join(terms)


_FIELD_TERM = re.compile(r"^\s*([A-Za-z0-9.]+)\s*(==|=|!=)\s*(.*?)\s*$")


def field_value(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return "" if value is None else str(value)


def parse_field_selector(
    selector: str | None, supported: frozenset[str]
) -> Callable[[Mapping[str, Any]], bool]:
    """The `fieldSelector` query parameter; unknown fields are a 400 as on a real server."""
    if not selector:
        return lambda obj: True
    checks: list[tuple[str, bool, str]] = []
    for term in _split_terms(selector):
        match = _FIELD_TERM.match(term)
        if not match:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{term}'")
        path, operator, value = match.groups()
        if path not in supported:
            raise bad_request(f"field label not supported: {path}")
        checks.append((path, operator != "!=", value))
    return lambda obj: all(
        (field_value(obj, path) == value) == equal for path, equal, value in checks
    )
