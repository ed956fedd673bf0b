"""`podside sandbox`: the argument parser only; the work is imported when a command runs."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sandbox",
        help="run an embedded Kubernetes-compatible cluster on this machine (needs root)",
        description="An embedded Kubernetes-API-compatible cluster whose pods are local processes.",
    )
    commands = parser.add_subparsers(dest="sandbox_command", metavar="ACTION", required=True)
    commands.add_parser("up", help="start the sandbox (idempotent) and add its kubeconfig context")
    commands.add_parser("down", help="stop the sandbox and remove everything it created")
    commands.add_parser("status", help="say what runs; exit 0 if up, 3 if down")
    add_user = commands.add_parser(
        "add-user",
        help="add a user with limited rights and a kubeconfig context podside-sandbox-NAME",
    )
    add_user.add_argument("name")
    add_user.add_argument(
        "--allow",
        action="append",
        required=True,
        metavar="VERBS:RESOURCES",
        help="e.g. get,list,watch:pods,deployments or patch:pods/ephemeralcontainers (repeatable)",
    )
    add_user.add_argument(
        "--namespace", action="append", default=[], help="limit the rules to these namespaces"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from podside.sandbox import control
    from podside.sandbox.layout import StateDir
    from podside.sandbox.users import Rule

    state = StateDir.from_env()
    if args.sandbox_command == "up":
        return control.up(state)
    if args.sandbox_command == "down":
        return control.down(state)
    if args.sandbox_command == "status":
        return control.status(state)
    rules = tuple(Rule.parse(text, tuple(args.namespace)) for text in args.allow)
    context, standalone = control.add_restricted_user(state, args.name, rules)
    print(f"user {args.name}: context {context} (standalone kubeconfig: {standalone})")
    return 0
