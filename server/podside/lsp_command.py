"""`podside lsp`: serve the editor extension over stdio (see `podside.lsp`)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "lsp",
        help="the backend of the editor extension (Language Server Protocol over stdio)",
        description="Serve the podside editor extension over stdin/stdout. The extension "
        "starts this itself; it is not meant to be run by hand.",
    )
    parser.add_argument(
        "--log-file", metavar="PATH", help="write the backend's log here (stdout is the protocol)"
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from podside.lsp.server import build_server

    if args.log_file:
        logging.basicConfig(filename=args.log_file, level=logging.INFO)
    else:
        # stdout carries the protocol; warnings go where the extension's output channel reads.
        logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    build_server().start_io()
    return 0
