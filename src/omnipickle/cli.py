"""The ``omnipickle`` command.

Exit codes: 0 success, 1 a problem with the data, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

from .api import dump, info, load
from .codecs import get_codec
from .errors import (
    MALFORMED_STREAM,
    MISSING_NAME,
    MISUSED_CONSTRUCTOR,
    CodecNotInstalledError,
    OmnipickleError,
    SignatureError,
    UnknownCodecError,
)
from .files import atomic_writer
from .format.signing import MIN_KEY_SIZE
from .security.entry import scan, verify_signature
from .security.policy import parse_allow
from .security.report import ScanReport
from .urls import is_url, url_writer

__all__ = ["main"]

_PROGRESS_BYTES = 50 * 1024 * 1024
_EXIT_OK, _EXIT_DATA, _EXIT_USAGE = 0, 1, 2


class _UsageError(Exception):
    """Bad usage found after parsing (a key file that cannot be used, an unknown codec)."""


class _DataError(Exception):
    """A problem with the data that is not one of omnipickle's own errors."""


# Unpickling runs the payload's own code: what it raises when the data does not fit this
# environment (see the map in errors.py) is a problem with the data, exit 1.
_LOAD_FAILURES = (*MALFORMED_STREAM, *MISUSED_CONSTRUCTOR, *MISSING_NAME)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("omnipickle")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser, and each command's own (which reports that command's misuse)."""
    parser = argparse.ArgumentParser(
        prog="omnipickle",
        description="Serialize anything a Python program holds; inspect payloads.",
        epilog="Exit codes: 0 success, 1 a problem with the data, 2 bad usage.",
    )
    parser.add_argument("--version", action="version", version=f"omnipickle {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="a guided tour, in a few seconds",
        description="A guided tour of omnipickle on an embedded example: each result with the "
        "few lines of code behind it. Exit 0 when every step behaved.",
    )
    info = commands.add_parser("info", help="what a payload's envelope says (nothing is unpickled)")
    info.add_argument("file", help="a payload file (omnipickle, pickle, or compressed pickle)")

    scan = commands.add_parser(
        "scan",
        help="list what a payload would import and call (nothing is unpickled)",
        description="List every global a payload would import and call, without unpickling "
        "it, and say whether restricted loading (omnipickle.loads(..., restricted=True)) "
        "would accept it. Exit 0: it would; 1: it would refuse it, or the file is damaged.",
    )
    scan.add_argument("file", help="a payload file (omnipickle, pickle, or compressed pickle)")
    scan.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="NAME",
        help="also allow this global ('pkg.module.Name') or package ('pkg.*'); repeatable",
    )
    scan.add_argument(
        "--key-file",
        metavar="K",
        help="a file holding the signing key: if the payload's signature verifies, code by "
        "value is accepted as it is by a load with that key",
    )
    scan.add_argument(
        "--json",
        action="store_true",
        help="print the report as one JSON object (verdict, each stream's globals, backends, "
        'notes) instead of a table; a damaged file prints {"verdict": "damaged", ...}',
    )

    verify = commands.add_parser(
        "verify",
        help="check a payload's signature (nothing is unpickled)",
        description="Check a signed payload's HMAC-SHA256 signature. Exit 0: it verifies; "
        "1: it does not, the payload is unsigned, or it is damaged.",
    )
    verify.add_argument("file", help="a signed omnipickle payload file")
    verify.add_argument(
        "--key-file",
        required=True,
        metavar="K",
        help="a file holding the key (its bytes; one trailing newline is ignored)",
    )

    convert = commands.add_parser(
        "convert",
        help="rewrite a payload with other compression or a signature (UNPICKLES it)",
        description="Load IN with omnipickle.load and write it to OUT with omnipickle.dump "
        "(atomically). WARNING: this unpickles IN, which runs whatever code IN asks for: only "
        "convert files you trust (check untrusted ones with 'omnipickle scan' first).",
    )
    convert.add_argument("input", metavar="IN", help="the payload to read")
    convert.add_argument("output", metavar="OUT", help="where to write it (replaced atomically)")
    convert.add_argument(
        "--compression",
        metavar="C",
        help="gzip, bz2, lzma (xz), zstd, lz4, a registered codec, or 'none' "
        "(default: from OUT's suffix, as omnipickle.dump does)",
    )
    convert.add_argument(
        "--key-file",
        metavar="K",
        help="sign OUT with this key; if IN is signed, it must verify with the same key",
    )
    return parser, {"demo": demo, "info": info, "scan": scan, "verify": verify, "convert": convert}


def _read_key(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            key = f.read()
    except OSError as exc:
        raise _UsageError(f"cannot read the key file {path}: {exc.strerror or exc}") from exc
    if key.endswith(b"\n"):
        key = key[:-1]
    if len(key) < MIN_KEY_SIZE:
        raise _UsageError(
            f"the key in {path} is {len(key)} bytes long; "
            f"keys must be at least {MIN_KEY_SIZE} bytes"
        )
    return key


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _progress(message: str) -> None:
    print(f"omnipickle: {message}", file=sys.stderr, flush=True)


def _info(args: argparse.Namespace) -> int:
    described = info(args.file)
    print(described)
    if described.checksum_ok is False:
        # The table is still worth reading (what wrote it, how); the data is not.
        raise _DataError("the payload is damaged or cut short: its checksum does not match")
    return _EXIT_OK


def _scan(args: argparse.Namespace) -> int:
    try:
        parse_allow(args.allow)
    except (TypeError, ValueError) as exc:
        raise _UsageError(str(exc)) from exc
    key = _read_key(args.key_file) if args.key_file is not None else None
    try:
        report = _scan_report(args.file, args.allow, key)
    except (OmnipickleError, OSError) as exc:
        if not args.json:
            raise
        failed = {"verdict": "damaged", "error": type(exc).__name__, "message": str(exc)}
        print(json.dumps(failed))
        return _EXIT_DATA
    if args.json:
        verdict = "accepted" if report.accepted else "refused"
        print(json.dumps({"verdict": verdict, "file": os.fspath(args.file), **report.to_dict()}))
    else:
        print(report)
    return _EXIT_OK if report.accepted else _EXIT_DATA


def _scan_report(file: str, allow: list[str], key: bytes | None) -> ScanReport:
    """The scan, trusted if the payload's signature verifies with ``key``: the report then
    says so itself; if it does not verify, stderr says why and the scan is untrusted."""
    if key is not None:
        try:
            return scan(file, allow=allow, key=key)
        except SignatureError as exc:
            _progress(f"{file}: {exc}; scanning as untrusted")
    return scan(file, allow=allow)


def _verify(args: argparse.Namespace) -> int:
    key = _read_key(args.key_file)
    verify_signature(args.file, key)
    print(f"{args.file}: signature OK")
    return _EXIT_OK


def _convert(args: argparse.Namespace) -> int:
    key = _read_key(args.key_file) if args.key_file is not None else None
    compression = args.compression
    if compression is not None and compression != "none":
        try:
            get_codec(compression)
        except (UnknownCodecError, CodecNotInstalledError) as exc:
            raise _UsageError(str(exc)) from exc
    size = _size(args.input)
    loud = size > _PROGRESS_BYTES
    start = time.perf_counter()
    # A signed input is verified when a key is given; an unsigned one is simply read.
    signed = info(args.input).signed
    if signed and key is None:
        _progress(f"note: {args.input} is signed, and was not verified (no --key-file)")
    if loud:
        _progress(f"loading {args.input} ({size / 1e6:,.0f} MB)...")
    try:
        obj = load(args.input, key=key if signed else None)
    except OmnipickleError:
        raise
    except _LOAD_FAILURES as exc:
        # Unpickling runs the payload's own code, which may fail in any of these ways; a note
        # says when the backend versions that wrote it differ from the ones here.
        notes = "".join(f"\n  note: {note}" for note in getattr(exc, "__notes__", ()))
        raise _DataError(f"cannot load it: {type(exc).__name__}: {exc}{notes}") from exc
    if loud:
        _progress(f"loaded in {time.perf_counter() - start:.1f} s; writing {args.output}...")
    if compression == "none":
        # For a path, dump infers the codec from the suffix when compression is None; written
        # to a file object it infers nothing (and still streams, and still goes atomically).
        writer = url_writer(args.output) if is_url(args.output) else atomic_writer(args.output)
        with writer as f:
            dump(obj, f, key=key)
    else:
        dump(obj, args.output, compression=compression, key=key)
    if loud:
        _progress(f"done in {time.perf_counter() - start:.1f} s")
    return _EXIT_OK


_COMMANDS = {"info": _info, "scan": _scan, "verify": _verify, "convert": _convert}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    try:
        return _main(argv)
    except BrokenPipeError:
        # `omnipickle scan FILE | head`: the reader left; say nothing more, as Unix tools do.
        # stdout is pointed at /dev/null so that the interpreter's own flush at exit is quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return _EXIT_OK


def _main(argv: Sequence[str] | None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser, commands = _parser()
    try:
        args, unknown = parser.parse_known_args(words)
        if unknown:
            # parse_args would report every one with the top-level usage: what follows the
            # command gets the command's own usage.
            before = words[: words.index(args.command)]
            owner = parser if any(word in before for word in unknown) else commands[args.command]
            owner.error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 for --help
        return int(exc.code or 0)
    if args.command == "demo":
        from .demo import run

        return run()
    command = _COMMANDS.get(args.command)
    if command is None:  # pragma: no cover - argparse refuses unknown commands
        print(f"omnipickle: unknown command {args.command!r}", file=sys.stderr)
        return _EXIT_USAGE
    try:
        return command(args)
    except _UsageError as exc:
        print(f"omnipickle {args.command}: {exc}", file=sys.stderr)
        return _EXIT_USAGE
    except BrokenPipeError:
        raise  # the reader of stdout left: main() ends quietly
    except OSError as exc:
        name = exc.filename or getattr(args, "file", None) or getattr(args, "input", "?")
        verb = "write" if name == getattr(args, "output", None) else "read"
        print(f"omnipickle: cannot {verb} {name}: {exc.strerror or exc}", file=sys.stderr)
        return _EXIT_DATA
    except (OmnipickleError, _DataError) as exc:
        where = getattr(args, "file", None) or getattr(args, "input", "")
        print(f"omnipickle: {where}: {exc}", file=sys.stderr)
        return _EXIT_DATA


if __name__ == "__main__":
    sys.exit(main())
