"""The config file: `.podside/config.json` or `.podside/config.toml`, or `--config FILE`.

Its keys are not listed anywhere by hand: every long option of `podside exec` is a key (its
name without the dashes, e.g. `port-map`, `no-env`, `fs-remote`), typed after its argparse
action, so a new flag gets a key (and a place in the JSON Schema) the moment it is added. The
file gives defaults: the command line is parsed again on top of them, so a flag given there
wins (for repeatable flags, its values come after the file's, and the later one wins where
that matters, e.g. `--env NAME=VALUE`). A bad file is one line naming the file, the key and
what was expected.
"""

from __future__ import annotations

import argparse
import difflib
import json
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podside import exec_values
from podside.errors import PodsideError

CONFIG_DIR = ".podside"
CONFIG_NAMES = ("config.json", "config.toml")
SCHEMA_ID = "https://podside.dev/schema/config.json"
# Options that are about this run only, not a project's settings.
_NOT_KEYS = frozenset({"help", "config", "command"})


@dataclass(frozen=True)
class Key:
    """One config key and the exec option it sets."""

    name: str
    dest: str
    kind: str  # "boolean", "string", "number", "integer", "array"
    choices: tuple[str, ...] | None
    help: str
    const: Any = None  # for flags like --no-fs that set another option's value: true sets it


def keys_of(parser: argparse.ArgumentParser) -> dict[str, Key]:
    """The config keys of a subcommand's parser: one per long option."""
    keys: dict[str, Key] = {}
    for action in parser._actions:
        long_names = [name for name in action.option_strings if name.startswith("--")]
        if not long_names or action.dest in _NOT_KEYS:
            continue
        name = long_names[0][2:]
        choices = tuple(str(choice) for choice in action.choices) if action.choices else None
        const = None
        if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
            kind = "boolean"
        elif isinstance(action, argparse._StoreConstAction):
            kind, const = "boolean", action.const
        elif isinstance(action, argparse._AppendAction):
            kind = "array"
        elif action.type is float:
            kind = "number"
        elif action.type is int:
            kind = "integer"
        else:
            kind = "string"
        help_text = action.help or ""
        keys[name] = Key(name, action.dest, kind, choices, help_text, const)
    return keys


def schema(parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The JSON Schema of the config file, derived from `parser` like the keys are."""
    properties: dict[str, Any] = {}
    for key in keys_of(parser).values():
        check = exec_values.CHECKS.get(key.dest)
        item: dict[str, Any] = {"type": "string"}
        if key.choices:
            item["enum"] = list(key.choices)
        if key.kind == "array":
            prop: dict[str, Any] = {"type": "array", "items": item}
        elif key.kind == "string":
            prop = item
        else:
            prop = item = {"type": key.kind}
        if check is not None:
            item.update(check.schema)
        prop["description"] = key.help
        properties[key.name] = prop
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "podside config (.podside/config.json or .podside/config.toml)",
        "description": "Defaults for podside exec: every long option is a key; flags on the "
        "command line win.",
        "type": "object",
        "properties": {"$schema": {"type": "string"}, **properties},
        "additionalProperties": False,
    }


def find_config(start: Path) -> Path | None:
    """The nearest `.podside/config.json|toml` in `start` or a folder above it."""
    for folder in (start, *start.parents):
        found = [folder / CONFIG_DIR / name for name in CONFIG_NAMES]
        found = [path for path in found if path.is_file()]
        if len(found) > 1:
            raise PodsideError(
                f"{found[0].parent}: both config.json and config.toml; keep one", exit_code=2
            )
        if found:
            return found[0]
    return None


def read_config(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise PodsideError(f"{path}: cannot read the config file ({error.strerror})", 2) from None
    try:
        if path.suffix == ".toml":
            data: Any = tomllib.loads(raw.decode())
        else:
            data = json.loads(raw)
    except json.JSONDecodeError as error:
        raise PodsideError(
            f"{path}:{error.lineno}:{error.colno}: not valid JSON ({error.msg})", 2
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise PodsideError(f"{path}: not valid TOML ({error})", 2) from None
    if not isinstance(data, dict):
        raise PodsideError(f"{path}: expected an object of settings at the top", 2)
    return data


def add_argument(parser: argparse.ArgumentParser, applies: str = "") -> None:
    """`--config FILE` of a command that reads the settings file; `applies`: which of its
    settings the command takes, when not all."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="settings file (default: .podside/config.json or .toml here or in a folder above)"
        + (f"; {applies}" if applies else ""),
    )


def defaults_from(
    path: Path,
    data: dict[str, Any],
    keys: dict[str, Key],
    every: dict[str, Key] | None = None,
) -> dict[str, Any]:
    """The parser defaults (dest -> value) the file's `data` sets; a bad value raises.

    `every` is every key a file may hold, when the command takes only some of them (`keys`):
    the others are checked as well, then passed over.
    """
    every = keys if every is None else every
    defaults: dict[str, Any] = {}
    for name, value in data.items():
        if name == "$schema":
            continue
        key = every.get(name)
        if key is None:
            close = difflib.get_close_matches(name, list(every), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise PodsideError(f"{path}: unknown key {name!r}{hint}", 2)
        checked = _checked(path, key, value)
        if name not in keys:
            continue
        if key.const is None:
            defaults[key.dest] = checked
        elif checked:
            defaults[key.dest] = key.const
    return defaults


def _checked(path: Path, key: Key, value: Any) -> Any:
    def bad(expected: str) -> PodsideError:
        return PodsideError(
            f"{path}: key {key.name!r}: expected {expected}, got {json.dumps(value)}", 2
        )

    if key.kind == "boolean":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if key.kind in ("number", "integer"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("a number")
        if key.kind == "integer" and not isinstance(value, int):
            raise bad("a whole number")
        _check_value(path, key, value)
        return value
    items = value if key.kind == "array" else [value]
    if key.kind == "array" and not isinstance(value, list):
        raise bad("a list of strings")
    for item in items:
        if not isinstance(item, str):
            raise bad("a list of strings" if key.kind == "array" else "a string")
        if key.choices and item not in key.choices:
            raise bad("one of " + ", ".join(repr(choice) for choice in key.choices))
        _check_value(path, key, item)
    return list(value) if key.kind == "array" else value


def _check_value(path: Path, key: Key, value: Any) -> None:
    """The check the option has wherever its value comes from (`exec_values`)."""
    try:
        exec_values.checked(key.dest, value)
    except exec_values.InvalidValue as error:
        raise PodsideError(
            f"{path}: key {key.name!r}: {error}, got {json.dumps(value)}", 2
        ) from None


def apply_config(
    root: argparse.ArgumentParser,
    subparser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    args: argparse.Namespace,
    cwd: Path | None = None,
    every: argparse.ArgumentParser | None = None,
) -> argparse.Namespace:
    """Parse the command line again with the config file's values as defaults; with `every`
    (exec's parser, whose options are the file's keys) `subparser` takes only its own."""
    explicit = getattr(args, "config", None)
    path = Path(explicit) if explicit else find_config(cwd or Path.cwd())
    if path is None:
        return args
    if explicit and not path.is_file():
        raise PodsideError(f"--config {explicit}: no such file", exit_code=2)
    known = keys_of(every) if every is not None else None
    defaults = defaults_from(path, read_config(path), keys_of(subparser), known)
    subparser.set_defaults(**defaults)
    reparsed = root.parse_args(argv)
    reparsed.config_file = str(path)
    return reparsed
