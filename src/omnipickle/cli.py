"""The ``omnipickle`` command.

Exit codes: 0 success, 1 a problem with the data, 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .errors import OmnipickleError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omnipickle",
        description="Serialize anything a Python program holds; inspect payloads.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("demo", help="a guided tour, in a few seconds")
    info = commands.add_parser("info", help="what a payload's envelope says (nothing is unpickled)")
    info.add_argument("file", help="a payload file (omnipickle, pickle, or compressed pickle)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 for --help
        return int(exc.code or 0)
    if args.command == "demo":
        from .demo import run

        return run()
    if args.command == "info":
        from .api import info

        try:
            print(info(args.file))
        except OSError as exc:
            print(f"omnipickle: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        except OmnipickleError as exc:
            print(f"omnipickle: {args.file}: {exc}", file=sys.stderr)
            return 1
        return 0
    print(f"omnipickle: unknown command {args.command!r}", file=sys.stderr)  # pragma: no cover
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
