"""`podside schema`: print the JSON Schema of `.podside/config.json` (editors validate with it).

The schema is derived from `podside exec`'s options; `config.schema.json` in the package is the
same document, written out for tools that read files (the editor extension registers it).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from podside.config import schema

SCHEMA_FILE = "config.schema.json"


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "schema",
        help="print the JSON Schema of the config file (.podside/config.json)",
        description="Print the JSON Schema of .podside/config.json and .podside/config.toml.",
    )
    parser.set_defaults(run=run)


def exec_parser() -> argparse.ArgumentParser:
    """A fresh `podside exec` parser, the source of every config key."""
    from podside import exec_command

    root = argparse.ArgumentParser(prog="podside")
    subparsers = root.add_subparsers()
    exec_command.add_parser(subparsers)
    parser: argparse.ArgumentParser = subparsers.choices["exec"]
    return parser


def schema_text() -> str:
    return json.dumps(schema(exec_parser()), indent=2) + "\n"


def run(args: argparse.Namespace) -> int:
    print(schema_text(), end="")
    return 0
