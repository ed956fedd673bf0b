"""The `podside` command line: one subcommand per module, each with `add_parser` and `run`.

Subcommand modules are imported lazily so that `podside exec` does not pay for the
Kubernetes client or the sandbox on start-up.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from podside import __version__
from podside.config import apply_config
from podside.errors import PodsideError

# subcommand name -> module that provides add_parser(subparsers) and run(args) -> int
SUBCOMMANDS: dict[str, str] = {
    "exec": "podside.exec_command",
    "env": "podside.env_command",
    "agent": "podside.agent_command",
    "sandbox": "podside.sandbox.cli",
    "targets": "podside.targets_command",
    "lsp": "podside.lsp_command",
    "schema": "podside.schema_command",
    "doctor": "podside.doctor_command",
    "port-forward": "podside.port_forward_command",
}
# subcommands whose options also come from the config file (podside.config): exec's options
# are its keys; another command takes the keys it shares with exec and passes over the rest
CONFIGURED = frozenset({"exec", "port-forward", "env"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="podside",
        description="Run a local process in the context of a Kubernetes pod.",
    )
    parser.add_argument("--version", action="version", version=f"podside {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in SUBCOMMANDS.values():
        module = importlib.import_module(module_name)
        module.add_parser(subparsers)
    return parser


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices[name]
            return found
    raise KeyError(name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # args.command may be the subcommand's own positional (exec's CMD): ask its module.
        for name in CONFIGURED:
            if args.run.__module__ == SUBCOMMANDS[name]:
                args = apply_config(
                    parser, _subparser(parser, name), argv, args, every=_subparser(parser, "exec")
                )
        return int(args.run(args))
    except PodsideError as error:
        print(f"podside: {error.message}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
