"""Session snapshots: save and restore the variables of ``__main__`` (a notebook, a script).

Unlike ``dill.dump_session``, which fails as a whole on one bad object, :func:`dump_session`
saves what can travel, drops live resources (they load as ``None``), skips variables that
cannot be saved at all, and reports what was left out.

A session is a dict of the variables plus one marker entry, ``SESSION_MARKER`` (a dunder name,
which no saved variable has) mapped to the session format's version: :func:`load_session`
refuses a payload without it, so that loading some other dict cannot overwrite the variables
of ``__main__``.
"""

from __future__ import annotations

import os
import re
import sys
import types
import warnings
from dataclasses import dataclass, field
from typing import IO, Any

from .api import dump, dumps, info, load
from .errors import DroppedResourceWarning, IncompatiblePayloadError, PicklingError, UnpicklingError

__all__ = ["SESSION_MARKER", "NotASessionError", "SessionReport", "dump_session", "load_session"]

# The marker entry of a session payload, and the version of the session format it names.
SESSION_MARKER = "__omnipickle_session__"
_SESSION_VERSION = 1


class NotASessionError(UnpicklingError, TypeError):
    """The payload loaded, but was not written by :func:`dump_session`.

    It is an :class:`omnipickle.UnpicklingError`, and a :class:`TypeError` (what
    ``load_session`` raised for such a payload before).
    """


# Names an interactive shell keeps for itself (IPython's history and helpers).
_SHELL_NAMES = re.compile(r"^(_+|_i+|_i\d+|_\d+|_ih|_oh|_dh|In|Out|exit|quit|get_ipython)$")

PathOrFile = str | os.PathLike[str] | IO[bytes]


@dataclass
class SessionReport:
    """What a session snapshot saved, dropped and skipped.

    Attributes:
        saved: names of the variables saved (or restored).
        dropped: ``{path: type}`` of live resources inside saved variables that were left out
            and load as ``None`` (paths start at ``root['name']``).
        skipped: ``{name: reason}`` of variables that could not be saved at all.
    """

    saved: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{len(self.saved)} variable(s): {', '.join(self.saved) or '-'}"]
        lines += [f"  dropped (loads as None): {p} ({t})" for p, t in self.dropped.items()]
        lines += [f"  skipped: {name}: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)


def _main(main: types.ModuleType | None) -> types.ModuleType:
    if main is None:
        main = sys.modules["__main__"]
    if not isinstance(main, types.ModuleType):
        raise TypeError(f"main must be a module, not {type(main).__name__}")
    return main


def _session_variables(main: types.ModuleType) -> dict[str, Any]:
    return {
        name: value
        for name, value in vars(main).items()
        if not (name.startswith("__") and name.endswith("__")) and not _SHELL_NAMES.match(name)
    }


def dump_session(
    file: PathOrFile, *, main: types.ModuleType | None = None, **options: Any
) -> SessionReport:
    """Save the variables of ``__main__`` (or of ``main``) to ``file``.

    Live resources inside variables are dropped (they load as ``None``); a variable that cannot
    be saved even so is skipped. Nothing fails on one bad object. A
    :class:`DroppedResourceWarning` summarizes what was left out.

    Args:
        file: a path (written atomically) or a binary file object.
        main: the module whose variables to save (default ``sys.modules["__main__"]``).
        **options: passed to :func:`omnipickle.dump` (``compression``, ``key``...).

    Returns:
        A :class:`SessionReport`.
    """
    main = _main(main)
    variables = _session_variables(main)
    report = SessionReport()
    keep: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DroppedResourceWarning)
        for name, value in variables.items():
            try:
                dumps(value, on_unpicklable="drop")
            except PicklingError as exc:
                report.skipped[name] = str(exc).split(";")[0]
                continue
            except Exception as exc:  # noqa: BLE001 - a variable's own __reduce__ may raise anything; one bad variable must not sink the session
                report.skipped[name] = f"{type(exc).__name__}: {exc}"
                continue
            keep[name] = value
        session = {SESSION_MARKER: _SESSION_VERSION, **keep}
        data = dumps(session, on_unpicklable="drop", **_without(options, "compression", "level"))
    report.saved = list(keep)
    report.dropped = {d["path"]: d["type"] for d in info(data).dropped}
    # Write what was checked: one more dump, with the caller's file options.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DroppedResourceWarning)
        dump(session, file, on_unpicklable="drop", **options)
    if report.dropped or report.skipped:
        left_out = [*report.dropped, *(f"{n} (skipped)" for n in report.skipped)]
        warnings.warn(
            f"session saved without {len(left_out)} part(s): {', '.join(left_out[:10])}"
            + (" ..." if len(left_out) > 10 else ""),
            DroppedResourceWarning,
            stacklevel=2,
        )
    return report


def _without(options: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k not in names}


def load_session(
    file: PathOrFile,
    *,
    main: types.ModuleType | None = None,
    legacy: bool = False,
    **options: Any,
) -> SessionReport:
    """Restore variables saved by :func:`dump_session` into ``__main__`` (or ``main``).

    The payload must carry the session marker :func:`dump_session` writes; nothing is
    restored otherwise. The check is made after loading (the payload is unpickled first): it
    keeps another dict from overwriting your variables, it is not a trust check (``key=`` is).

    Args:
        file: a path or a binary file object.
        main: the module to restore into (default ``sys.modules["__main__"]``).
        legacy: also accept a session written by omnipickle 0.2 or earlier (a plain dict of
            variables, with no marker).
        **options: passed to :func:`omnipickle.load` (``key``, ``resources``...).

    Returns:
        A :class:`SessionReport` of the names restored and the resources that load as None.

    Raises:
        NotASessionError: the payload was not written by :func:`dump_session` (an
            :class:`~omnipickle.UnpicklingError` and a :class:`TypeError`).
        IncompatiblePayloadError: the session was written by a newer release, in a session
            format this one does not know.
        and everything :func:`omnipickle.load` raises.
    """
    main = _main(main)
    variables = _session_variables_of(load(file, **options), legacy=legacy)
    vars(main).update(variables)
    report = SessionReport(saved=list(variables))
    if isinstance(file, (str, os.PathLike)):
        report.dropped = {d["path"]: d["type"] for d in info(file).dropped}
    return report


def _session_variables_of(payload: Any, *, legacy: bool) -> dict[str, Any]:
    """The variables a loaded session payload holds, after checking it is one."""
    if not isinstance(payload, dict) or not all(isinstance(k, str) for k in payload):
        raise NotASessionError(
            f"the file does not hold a session saved by omnipickle.dump_session (it holds "
            f"{type(payload).__name__}, not a dict of variables); nothing was restored"
        )
    if SESSION_MARKER not in payload:
        if legacy:
            return dict(payload)
        raise NotASessionError(
            "the file does not hold a session saved by omnipickle.dump_session (a dict without "
            "the session marker); nothing was restored. A session saved by omnipickle 0.2 or "
            "earlier has no marker: load_session(..., legacy=True) loads it"
        )
    version = payload[SESSION_MARKER]
    if type(version) is not int or version < 1:
        raise NotASessionError(
            f"the file holds a dict with a damaged session marker ({version!r}); nothing was "
            "restored"
        )
    if version > _SESSION_VERSION:
        raise IncompatiblePayloadError(
            f"the session was written in session format {version}, by a newer omnipickle; "
            f"this release reads format {_SESSION_VERSION}: upgrade omnipickle to load it"
        )
    return {k: v for k, v in payload.items() if k != SESSION_MARKER}
