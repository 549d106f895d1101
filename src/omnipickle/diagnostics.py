"""Where in an object graph serialization fails, and what to do about it.

The C pickler says *what* failed but, before Python 3.14, never *where*. When a dump fails, this
module walks the graph the way the pickler does (containers, ``__reduce_ex__`` arguments and
state, closures) and test-pickles children one by one to find the deepest part that fails on its
own. The walk only happens on the error path, so it costs nothing when a dump succeeds.

It sits below the backends (which call it when a dump fails) and above nothing but the errors and
the resource registry, so that :mod:`omnipickle.explain`, above the backends, can share its walk.
"""

from __future__ import annotations

import collections
import copyreg
import pickle
import types
from collections.abc import Callable, Iterator
from typing import Any

from .errors import PicklingError, combined, pickling_cause
from .resources import resource_rule

__all__ = [
    "ATOMIC",
    "NullSink",
    "children",
    "describe_failure",
    "failure_fix",
    "failure_reason",
    "find_paths",
    "is_live_resource",
    "locate_failure",
    "recursing_code",
    "type_name",
]


class NullSink:
    """A file that discards what is written (used to test-pickle parts of a graph)."""

    __slots__ = ()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        # A large in-band buffer comes as a PickleBuffer or bytearray, which may have no len().
        return memoryview(data).nbytes


_MAX_CHILDREN = 100_000
_MAX_DEPTH = 200


def type_name(obj: Any) -> str:
    """``module.QualName`` of ``obj``'s type (``builtins`` left out)."""
    t = type(obj)
    module = getattr(t, "__module__", None)
    qual = getattr(t, "__qualname__", t.__name__)
    if module in (None, "builtins"):
        return str(qual)
    return f"{module}.{qual}"


def locate_failure(
    obj: Any, exc: BaseException, make_pickler: Callable[[Any], pickle.Pickler]
) -> tuple[str, Any, BaseException]:
    """Where a failed dump of ``obj`` failed: ``(path, culprit, cause)``."""

    def fails(candidate: Any) -> BaseException | None:
        try:
            make_pickler(NullSink()).dump(candidate)
        except RecursionError as err:
            return err
        except Exception as err:  # noqa: BLE001 - any failure marks the culprit's branch
            return err
        return None

    def refused(candidate: Any) -> bool:
        return _own_reduction_fails(candidate, make_pickler(NullSink()))

    return _locate(obj, fails, refused, exc)


def describe_failure(
    obj: Any, exc: BaseException, make_pickler: Callable[[Any], pickle.Pickler]
) -> PicklingError:
    """A :class:`PicklingError` for ``exc`` naming the path, type, reason and fix.

    It is also an instance of the type pickle raises for the failure (``TypeError``,
    ``AttributeError``, ``RecursionError``: see :func:`omnipickle.errors.combined`); raise it
    ``from exc``.
    """
    cause = pickling_cause(exc)
    if isinstance(cause, RecursionError):
        loop = recursing_code(cause)
        if loop is None:
            return _error(
                cause,
                path="root",
                culprit=obj,
                reason=f"the graph is nested too deeply for the pickler ({cause})",
                fix="flatten it or raise sys.setrecursionlimit()",
                what="the object",
            )
        path, culprit, _ = locate_failure(obj, exc, make_pickler)
        return _error(
            cause,
            path=path,
            culprit=culprit,
            reason=f"its own code recursed until the limit: {loop} called itself ({cause})",
            fix="fix that recursion (a __getattr__ that reads an attribute missing from self "
            "calls itself without end), or raise sys.setrecursionlimit() if it only runs deep",
        )
    path, culprit, found = locate_failure(obj, exc, make_pickler)
    return _error(
        cause,
        path=path,
        culprit=culprit,
        reason=failure_reason(culprit, found),
        fix=failure_fix(culprit),
    )


def _error(
    cause: BaseException, *, path: str, culprit: Any, reason: str, fix: str, what: str = ""
) -> PicklingError:
    tname = type_name(culprit)
    message = f"cannot serialize {what or tname} at {path}: {reason}; {fix}"
    error = combined(PicklingError, cause, message)
    error.path, error.type_name, error.reason, error.fix = path, tname, reason, fix
    return error


# Code of the picklers themselves: a deep graph recurses through it, not through the user's.
_PICKLER_PACKAGES = frozenset(
    {"pickle", "copyreg", "_compat_pickle", "cloudpickle", "dill", "omnipickle"}
)


def recursing_code(exc: RecursionError) -> str | None:
    """The code that called itself until ``exc`` was raised (``Class.__getattr__
    (file.py:12)``), or ``None`` when the recursion is the pickler's own, through a graph
    nested too deeply.

    Found from the traceback, not the message: a pickler recursing through a deep graph calls
    each object's own code (a ``__reduce__``) once per level, and each call returns before the
    next level starts; code that appears twice in the traceback was still running when it
    called itself again.
    """
    counts: collections.Counter[types.CodeType] = collections.Counter()
    lines: dict[types.CodeType, int] = {}
    trace = exc.__traceback__
    while trace is not None:
        frame = trace.tb_frame
        module = str(frame.f_globals.get("__name__", ""))
        if module.partition(".")[0] not in _PICKLER_PACKAGES:
            counts[frame.f_code] += 1
            lines.setdefault(frame.f_code, trace.tb_lineno)
        trace = trace.tb_next
    if not counts:
        return None
    code, seen = counts.most_common(1)[0]
    if seen < 2:
        return None
    return f"{code.co_qualname} ({code.co_filename}:{lines[code]})"


def find_paths(root: Any, targets: list[Any], limit: int = 1_000_000) -> list[str]:
    """The path from ``root`` to each object in ``targets`` (breadth first: the shortest).

    Objects not reached within ``limit`` visited nodes get ``"<not found>"``.
    """
    wanted = {id(t): i for i, t in enumerate(targets)}
    found: dict[int, str] = {}
    if id(root) in wanted:
        found[wanted[id(root)]] = "root"
    queue: collections.deque[tuple[str, Any]] = collections.deque([("root", root)])
    seen = {id(root)}
    visited = 0
    while queue and len(found) < len(wanted) and visited < limit:
        path, node = queue.popleft()
        visited += 1
        for label, child in children(node):
            if id(child) in seen:
                continue
            seen.add(id(child))
            child_path = path + label
            if id(child) in wanted:
                found.setdefault(wanted[id(child)], child_path)
            queue.append((child_path, child))
    return [found.get(i, "<not found>") for i in range(len(targets))]


def _locate(
    obj: Any,
    fails: Callable[[Any], BaseException | None],
    refused: Callable[[Any], bool],
    exc: BaseException,
) -> tuple[str, Any, BaseException]:
    """Follow failing children down from ``obj``; stop at a node refused for itself."""
    path, current, cause = "root", obj, exc
    seen = {id(obj)}
    for _ in range(_MAX_DEPTH):
        if refused(current):
            break
        for label, child in children(current):
            if id(child) in seen:
                continue
            seen.add(id(child))
            err = fails(child)
            if err is not None:
                path += label
                current, cause = child, err
                break
        else:
            break
    return path, current, cause


# Types the pickler saves itself (no reduction of their own to fail); only their parts can.
ATOMIC: frozenset[type] = frozenset(
    {
        dict,
        list,
        tuple,
        set,
        frozenset,
        str,
        bytes,
        bytearray,
        int,
        float,
        complex,
        bool,
        type(None),
    }
)


def _own_reduction_fails(obj: Any, pickler: pickle.Pickler) -> bool:
    """Whether reducing ``obj`` itself (not its parts) fails, as ``pickler`` would do it."""
    t = type(obj)
    # By type, not isinstance(): isinstance() asks the object for __class__, which runs its
    # own __getattribute__ (the very code that may have failed).
    if t in ATOMIC or issubclass(t, (type, types.FunctionType)):
        return False
    try:
        override = getattr(pickler, "reducer_override", None)
        if override is not None and override(obj) is not NotImplemented:
            return False
        table = getattr(pickler, "dispatch_table", None)
        if table is None:
            table = copyreg.dispatch_table
        try:
            reducer = table[t]
        except KeyError:
            reducer = None
        if reducer is not None:
            reducer(obj)
        else:
            obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - any failure to reduce the object itself
        return True
    return False


def children(obj: Any) -> Iterator[tuple[str, Any]]:
    """The parts the pickler would save for ``obj``, each with a label for the path."""
    t = type(obj)
    try:
        if t is dict or isinstance(obj, dict):
            for i, (k, v) in enumerate(obj.items()):
                if i >= _MAX_CHILDREN:
                    return
                yield f"[{k!r}]", v
                yield f".keys()[{i}]", k
            if t is dict:
                return
        elif t in (list, tuple) or isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj[:_MAX_CHILDREN]):
                yield f"[{i}]", v
            if t in (list, tuple):
                return
        elif isinstance(obj, (set, frozenset)):
            for i, v in enumerate(obj):
                if i >= _MAX_CHILDREN:
                    return
                yield f"<set item {i}>", v
            if t in (set, frozenset):
                return
        if t in ATOMIC:
            return  # atoms (a str, an int) have no parts, whatever their __reduce_ex__ says
        if isinstance(obj, types.FunctionType):
            yield from _function_children(obj)
            return
        if isinstance(obj, type):
            return
        yield from _reduce_children(obj)
    except Exception:  # noqa: BLE001 - a misbehaving object ends the walk here, not the error report
        return


def _function_children(func: types.FunctionType) -> Iterator[tuple[str, Any]]:
    code = func.__code__
    for name, cell in zip(code.co_freevars, func.__closure__ or (), strict=False):
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        yield f"<closure {name}>", value
    for name in code.co_names:
        if name in func.__globals__:
            yield f"<global {name}>", func.__globals__[name]
    if func.__defaults__:
        for i, value in enumerate(func.__defaults__):
            yield f"<default {i}>", value


def _reduce_children(obj: Any) -> Iterator[tuple[str, Any]]:
    reducer = copyreg.dispatch_table.get(type(obj))
    rv = reducer(obj) if reducer is not None else obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    if isinstance(rv, str) or not isinstance(rv, tuple):
        return
    func, args, *rest = (*rv, None, None, None, None)[:6]
    state, listitems, dictitems = rest[0], rest[1], rest[2]
    if isinstance(state, tuple) and len(state) == 2:  # (dict state, slots state)
        for part in state:
            if isinstance(part, dict):
                yield from _state_children(part)
    elif isinstance(state, dict):
        yield from _state_children(state)
    elif state is not None:
        yield "<state>", state
    if isinstance(args, tuple):
        skip_first = getattr(func, "__name__", "") in ("__newobj__", "__newobj_ex__")
        for i, arg in enumerate(args):
            if i == 0 and skip_first:
                continue
            yield f"<arg {i}>", arg
    if listitems is not None:
        for i, item in enumerate(listitems):
            yield f"[{i}]", item
    if dictitems is not None:
        for key, value in dictitems:
            yield f"[{key!r}]", value


def _state_children(state: dict[Any, Any]) -> Iterator[tuple[str, Any]]:
    for key, value in state.items():
        label = f".{key}" if isinstance(key, str) and key.isidentifier() else f"[{key!r}]"
        yield label, value


def failure_reason(culprit: Any, cause: BaseException) -> str:
    """Why ``culprit`` cannot be serialized, for a message (``cause``: what the pickler raised)."""
    if issubclass(type(culprit), types.FunctionType):
        return (
            f"the function cannot be found by name and could not be serialized by value ({cause})"
        )
    if is_live_resource(culprit):
        return "live resources (connections, sockets, threads, open handles) cannot travel"
    return str(cause) or type(cause).__name__


def failure_fix(culprit: Any) -> str:
    """What the caller can do about ``culprit``, for the end of a message."""
    if is_live_resource(culprit):
        return (
            "mark the attribute transient (omnipickle.TransientMixin, omnipickle.transient) or "
            'pass on_unpicklable="drop" to load it as None; omnipickle.explain(obj) lists '
            "every such part"
        )
    return (
        "give its class a __reduce__ or __getstate__/__setstate__, or leave the object out "
        "of what you serialize; omnipickle.explain(obj) lists every such part"
    )


def is_live_resource(obj: Any) -> bool:
    """Whether the resource registry has a rule for ``obj``'s type: dropped, or recreatable or
    reopenable but failing (a pipe)."""
    try:
        return resource_rule(type(obj)) is not None  # type: ignore[arg-type]
    except TypeError:
        return False
