"""Checks of `podside exec` values that may come from several places: the command line, the
config file (`podside.config`) and the editor's launch configuration (`podside.lsp.launch`).

Each check takes the value as the user wrote it and returns it parsed, or raises
`InvalidValue` with what is wrong in a few words; the caller says where the value came from
(`--path-filter ''`, `FILE: key 'path-filter'`, `pathFilter`). All run before anything is
asked of the agent or the cluster. The rules of a steal filter, and of a regex, are the
protocol's (`podside_protocol.steal`), so the agent refuses the same filters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from podside_protocol import steal


class InvalidValue(ValueError):
    """A value that would not do what its user means; the message says why."""


def http_filter(text: str) -> tuple[str, str]:
    """`--http-filter 'Name: REGEX'` -> (name, regex)."""
    name, separator, pattern = text.partition(":")
    if not separator:
        raise InvalidValue("expected 'Header-Name: REGEX'")
    name, pattern = name.strip(), pattern.strip()
    _protocol_check(steal.check_header_filter, name, pattern)
    return name, pattern


def path_filter(text: str) -> str:
    """`--path-filter REGEX`."""
    _protocol_check(steal.check_path_filter, text)
    return text


def method_filter(text: str) -> tuple[str, ...]:
    """`--method-filter GET,POST` -> ("GET", "POST"); every item must be a method."""
    methods = tuple(method.strip().upper() for method in text.split(","))
    _protocol_check(steal.check_method_filter, methods)
    return methods


def _protocol_check(check: Callable[..., None], *values: Any) -> None:
    try:
        check(*values)
    except steal.InvalidFilter as error:
        raise InvalidValue(str(error)) from None


def path_regex(text: str) -> str:
    """`--fs-remote` / `--fs-local REGEX`, searched in absolute paths."""
    _protocol_check(steal.check_regex, text, "path")
    return text


def agent_timeout(value: float) -> float:
    """`--agent-timeout SECONDS`: a real wait, neither none nor forever."""
    if not math.isfinite(value) or value <= 0:
        raise InvalidValue("expected a number of seconds above 0")
    return value


@dataclass(frozen=True)
class Check:
    function: Callable[[Any], Any]
    schema: dict[str, Any]  # what the config file's JSON Schema can say of it


_TOKEN = steal.TOKEN_PATTERN  # names and methods as the protocol checks them

# By the exec option's argparse dest; for repeatable options, each item is checked.
CHECKS: dict[str, Check] = {
    "http_filter": Check(http_filter, {"pattern": rf"^\s*{_TOKEN}\s*:\s*\S"}),
    "path_filter": Check(path_filter, {"minLength": 1}),
    "method_filter": Check(method_filter, {"pattern": rf"^\s*{_TOKEN}\s*(,\s*{_TOKEN}\s*)*$"}),
    "fs_remote": Check(path_regex, {"minLength": 1}),
    "fs_local": Check(path_regex, {"minLength": 1}),
    "agent_timeout": Check(agent_timeout, {"exclusiveMinimum": 0}),
}


def checked(dest: str, value: Any) -> Any:
    """`value` of the option `dest`, parsed by its check (unchanged when it has none)."""
    check = CHECKS.get(dest)
    return value if check is None else check.function(value)
