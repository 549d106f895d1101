"""Diagnostics: where in an object graph serialization fails, and what to do about it.

The C pickler says *what* failed but, before Python 3.14, never *where*. When a dump fails, this
module walks the graph the way the pickler does (containers, ``__reduce_ex__`` arguments and
state, closures) and test-pickles children one by one to find the deepest part that fails on its
own. The walk only happens on the error path, so it costs nothing when a dump succeeds.
"""

from __future__ import annotations

import collections
import copyreg
import pickle
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import PicklingError

__all__ = [
    "Explanation",
    "Finding",
    "describe_failure",
    "explain",
    "find_paths",
    "locate_failure",
    "type_name",
]

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
    from .backends.base import NullSink

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
    """A :class:`PicklingError` for ``exc`` naming the path, type, reason and fix."""
    if isinstance(exc, RecursionError):
        return PicklingError(
            "cannot serialize the object: the graph is nested too deeply for the pickler "
            f"({exc}); flatten it or raise sys.setrecursionlimit()",
            path="root",
            type_name=type_name(obj),
        )
    path, culprit, cause = locate_failure(obj, exc, make_pickler)
    reason = _reason(culprit, cause)
    fix = _fix(culprit)
    tname = type_name(culprit)
    message = f"cannot serialize {tname} at {path}: {reason}; {fix}"
    return PicklingError(message, path=path, type_name=tname)


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
        for label, child in _children(node):
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
        for label, child in _children(current):
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


_ATOMIC = frozenset(
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
    if t in _ATOMIC or isinstance(obj, (type, types.FunctionType)):
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


def _children(obj: Any) -> Iterator[tuple[str, Any]]:
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


def _reason(culprit: Any, cause: BaseException) -> str:
    if isinstance(culprit, types.FunctionType):
        return (
            f"the function cannot be found by name and could not be serialized by value ({cause})"
        )
    if _is_live_resource(culprit):
        return "live resources (connections, sockets, threads, open handles) cannot travel"
    return str(cause) or type(cause).__name__


def _fix(culprit: Any) -> str:
    if _is_live_resource(culprit):
        return (
            "mark the attribute transient (omnipickle.TransientMixin, omnipickle.transient) or "
            'pass on_unpicklable="drop" to load it as None; omnipickle.explain(obj) lists '
            "every such part"
        )
    return (
        "give its class a __reduce__ or __getstate__/__setstate__, or leave the object out "
        "of what you serialize; omnipickle.explain(obj) lists every such part"
    )


def _is_live_resource(obj: Any) -> bool:
    """A resource by the registry: dropped, or recreatable/reopenable but failing (a pipe)."""
    from .resources import resource_rule

    try:
        return resource_rule(type(obj)) is not None  # type: ignore[arg-type]
    except TypeError:
        return False


# --- explain(): every problem at once ----------------------------------------------------------

PROBLEM = "cannot serialize"
BY_VALUE = "by value"
DILL = "dill"
CLOUDPICKLE = "cloudpickle"
RECREATED = "recreated"
REOPENED = "reopened"
UNINSPECTABLE = "not inspectable"

_MAX_ROWS_KEPT = 10_000
_MAX_ROWS_SHOWN = 40


@dataclass(frozen=True)
class Finding:
    """One part of an object graph that is a problem or needs special handling.

    Attributes:
        path: where it is, from ``root``.
        type_name: its type.
        kind: ``"cannot serialize"``, ``"by value"``, ``"dill"``, ``"cloudpickle"``,
            ``"recreated"``, ``"reopened"`` or ``"not inspectable"``.
        reason: why.
        fix: what to do (problems only).
    """

    path: str
    type_name: str
    kind: str
    reason: str
    fix: str = ""


@dataclass
class Explanation:
    """What :func:`explain` found. ``str()`` of it is a table for a terminal.

    Attributes:
        rows: the findings, problems first (at most 10,000 are kept; ``counts`` has them all).
        counts: how many findings of each (kind, type).
        visited: how many objects were looked at.
        complete: False if the walk stopped at its node limit.
    """

    rows: list[Finding] = field(default_factory=list)
    counts: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    visited: int = 0
    complete: bool = True

    @property
    def problems(self) -> list[Finding]:
        """The parts that cannot be serialized."""
        return [row for row in self.rows if row.kind in (PROBLEM, UNINSPECTABLE)]

    @property
    def ok(self) -> bool:
        """Whether ``dumps`` would succeed (no problems found)."""
        return not any(kind in (PROBLEM, UNINSPECTABLE) for kind, _ in self.counts)

    def __str__(self) -> str:
        if not self.counts:
            return f"nothing to report: {self.visited:,} objects, all plain to pickle"
        problems = sum(n for (kind, _), n in self.counts.items() if kind == PROBLEM)
        head = (
            f"{problems} part(s) cannot be serialized"
            if problems
            else "everything can be serialized"
        ) + f" ({self.visited:,} objects looked at{'' if self.complete else ', stopped early'})"
        shown = self.rows[:_MAX_ROWS_SHOWN]
        width = min(60, max(len(r.path) for r in shown))
        twidth = min(30, max(len(r.type_name) for r in shown))
        lines = [head, f"{'path':<{width}}  {'type':<{twidth}}  {'kind':<16}  reason"]
        for row in shown:
            lines.append(
                f"{row.path:<{width}}  {row.type_name:<{twidth}}  {row.kind:<16}  {row.reason}"
            )
            if row.fix:
                lines.append(f"{'':<{width}}  {'':<{twidth}}  {'':<16}  fix: {row.fix}")
        hidden = sum(self.counts.values()) - len(shown)
        if hidden > 0:
            lines.append(f"... and {hidden:,} more:")
            for (kind, tname), n in self.counts.most_common(10):
                lines.append(f"  {n:>8,} x {tname} ({kind})")
        return "\n".join(lines)


def explain(obj: Any, *, max_objects: int = 1_000_000) -> Explanation:
    """Report every part of ``obj`` that cannot be serialized, and every part that needs a
    special backend, in one walk of the graph (nothing is pickled).

    Args:
        obj: anything.
        max_objects: stop after looking at this many objects (``complete`` is then False).

    Returns:
        An :class:`Explanation`: ``str()`` is a table; ``.rows``, ``.problems`` and ``.ok``
        are the data. It never raises for a strange object: what it cannot inspect is
        reported as such.
    """
    report = Explanation()
    stack: list[tuple[str, Any]] = [("root", obj)]
    seen: set[int] = {id(obj)}
    while stack:
        if report.visited >= max_objects:
            report.complete = False
            break
        path, node = stack.pop()
        report.visited += 1
        descend = _classify(path, node, report)
        if not descend:
            continue
        fresh = []
        for label, child in _children(node):
            if id(child) not in seen:
                seen.add(id(child))
                fresh.append((path + label, child))
        stack.extend(reversed(fresh))  # so that the first child is looked at first
    report.rows.sort(key=lambda row: row.kind not in (PROBLEM, UNINSPECTABLE))
    return report


def _add(report: Explanation, finding: Finding) -> None:
    report.counts[(finding.kind, finding.type_name)] += 1
    if len(report.rows) < _MAX_ROWS_KEPT:
        report.rows.append(finding)


def _classify(path: str, node: Any, report: Explanation) -> bool:
    """Record what ``node`` needs; return whether to look at its parts."""
    from .backends.auto import _SPECIAL, _TABLE, importable
    from .resources import resource_rule

    t = type(node)
    if t in _ATOMIC:
        return True
    tname = type_name(node)
    if isinstance(node, (types.FunctionType, type)):
        if not importable(node):
            what = "class" if isinstance(node, type) else "function"
            _add(
                report,
                Finding(
                    path, tname, BY_VALUE, f"{what} not importable by name: serialized by value"
                ),
            )
        return not isinstance(node, type)
    try:
        rule = resource_rule(t)  # type: ignore[arg-type]
    except TypeError:
        rule = None
    if rule is not None:
        if rule.action == "drop":
            _add(report, Finding(path, tname, PROBLEM, _reason(node, TypeError()), _fix(node)))
            return False
        if rule.reducer is not None:
            try:
                rule.reducer(node)
            except Exception as exc:  # noqa: BLE001 - reported as the problem it is
                _add(report, Finding(path, tname, PROBLEM, str(exc), _fix(node)))
                return False
        if rule.action == "recreate":
            _add(report, Finding(path, tname, RECREATED, "recreated fresh at load time"))
        else:
            _add(report, Finding(path, tname, REOPENED, "reopened at load time"))
        return False
    if t in _SPECIAL:
        _add(report, Finding(path, tname, DILL, "serialized with dill's reducer"))
        return True
    if t in _TABLE:
        _add(report, Finding(path, tname, CLOUDPICKLE, "serialized with cloudpickle's reducer"))
        return False
    try:
        reducer = copyreg.dispatch_table.get(t)
        rv = reducer(node) if reducer is not None else node.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - reported as the problem it is
        _add(report, Finding(path, tname, PROBLEM, _reason(node, exc), _fix(node)))
        return False
    if not isinstance(rv, (str, tuple)):
        _add(
            report,
            Finding(
                path,
                tname,
                PROBLEM,
                f"__reduce__ returned {type(rv).__name__}, not a tuple",
                _fix(node),
            ),
        )
        return False
    return True
