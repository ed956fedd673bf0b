"""`podside targets`: the workloads, services and pods `--target` can name, with their
containers and ports; a table for people, JSON for the editor."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "targets",
        help="list the workloads, services and pods podside exec --target can use",
        description="List targets in a namespace: workloads, services with a selector, pods.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="list targets in every namespace"
    )
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG)")
    parser.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default="table",
        help="table (default) or json: a list of {kind, name, namespace, containers, ports}",
    )
    parser.set_defaults(run=run)


def format_table(targets: list[dict[str, Any]], with_namespace: bool) -> str:
    header = ["NAMESPACE"] if with_namespace else []
    header += ["TARGET", "CONTAINERS", "PORTS"]
    rows = [header]
    for target in targets:
        row = [target["namespace"]] if with_namespace else []
        row += [
            f"{target['kind']}/{target['name']}",
            ",".join(target["containers"]) or "-",
            ",".join(str(port) for port in target["ports"]) or "-",
        ]
        rows.append(row)
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def run(args: argparse.Namespace) -> int:
    from podside.kube.config import load_context
    from podside.kube.targets import list_targets

    ctx = load_context(args.context, args.namespace, args.kubeconfig)
    targets = list_targets(ctx, ctx.namespace, all_namespaces=args.all_namespaces)
    if args.output == "json":
        print(json.dumps(targets, indent=2))
    elif targets:
        print(format_table(targets, with_namespace=args.all_namespaces))
    else:
        where = "any namespace" if args.all_namespaces else f"namespace {ctx.namespace}"
        print(f"no targets in {where} (context {ctx.name})")
    return 0
