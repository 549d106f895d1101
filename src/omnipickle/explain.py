"""``explain(obj)``: every part of an object graph that cannot be serialized, at once.

One walk of the graph in the order the pickler saves it (the walk of
:mod:`omnipickle.diagnostics`, which also locates a single failure for the backends); nothing is
pickled for that. How each object is saved is asked of the ``auto`` backend's own pickler
(:class:`omnipickle.diagnostics.Saving`: its ``reducer_override`` and dispatch table;
:func:`omnipickle.backends.auto.borrowed_reducer`), so this report and the dump cannot disagree:
what goes by value is looked into (a class's methods, the globals and closures they use), what
goes by name is not.

Only how deep a graph is can no walk tell: where the pickler gives up depends on the
interpreter and on how deep the caller already is. A graph deeper than a few dozen steps is
therefore dumped to nowhere by the pickler ``dumps`` uses: once, and a second time when it is
too deep, to find where the pickler gives up.
"""

from __future__ import annotations

import collections
import pickle
import sys
import types
import weakref
from dataclasses import dataclass, field
from typing import Any

from .backends.auto import AutoPickler, borrowed_reducer
from .diagnostics import (
    ATOMIC,
    BY_NAME,
    NullSink,
    Saving,
    Step,
    deepest_entered,
    deepest_part,
    failure_fix,
    failure_reason,
    too_deep_fix,
    type_name,
    walk,
)
from .resources import resource_rule

__all__ = ["Explanation", "Finding", "explain"]

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
    special backend, in one walk of the graph.

    ``report.ok`` is whether ``omnipickle.dumps(obj)`` succeeds, and the first of
    ``report.problems`` is the part ``dumps`` fails on.

    Args:
        obj: anything.
        max_objects: stop after looking at this many objects (``complete`` is then False).

    Returns:
        An :class:`Explanation`: ``str()`` is a table; ``.rows``, ``.problems`` and ``.ok``
        are the data. It never raises for a strange object: what it cannot inspect is
        reported as such. Nothing is pickled, except that a graph more than a few dozen
        levels deep is dumped to nowhere (once; twice if it is too deep) to learn whether the
        pickler can go that deep.
    """
    report = Explanation()
    saving = Saving(AutoPickler(NullSink()))  # what dumps' pickler does, asked of it
    problems: dict[int, Any] = {}  # what cannot be serialized, by id (kept alive)
    deepest: Step | None = None
    for step in walk(obj, saving=saving):
        if report.visited >= max_objects:
            report.complete = False
            break
        report.visited += 1
        found = len(report.rows)
        step.descend = _classify(step, report, saving)
        if len(report.rows) > found and report.rows[-1].kind in (PROBLEM, UNINSPECTABLE):
            problems[id(step.obj)] = step.obj
        if deepest is None or step.depth > deepest.depth:
            deepest = step
    if deepest is not None and deepest.depth >= _trial_depth():
        _check_depth(obj, report, saving, problems)
    report.rows.sort(key=lambda row: row.kind not in (PROBLEM, UNINSPECTABLE))
    return report


def _add(report: Explanation, finding: Finding) -> None:
    report.counts[(finding.kind, finding.type_name)] += 1
    if len(report.rows) < _MAX_ROWS_KEPT:
        report.rows.append(finding)


# Types the pickler saves itself (their parts are looked at, they need nothing themselves).
_SAVED_BY_PICKLER = ATOMIC | {pickle.PickleBuffer}


def _classify(step: Step, report: Explanation, saving: Saving) -> bool:
    """Record what ``step.obj`` needs; return whether to look at its parts."""
    node = step.obj
    t = type(node)
    if t in _SAVED_BY_PICKLER:
        return True
    tname = type_name(node)
    if isinstance(node, (types.FunctionType, type)):
        how = saving.saved_by(node)
        if how == BY_NAME:
            return False
        if isinstance(how, BaseException):
            _add(
                report,
                Finding(step.path, tname, PROBLEM, failure_reason(node, how), failure_fix(node)),
            )
            return False
        what = "class" if isinstance(node, type) else "function"
        _add(
            report,
            Finding(
                step.path, tname, BY_VALUE, f"{what} not importable by name: serialized by value"
            ),
        )
        return True
    try:
        rule = resource_rule(t)  # type: ignore[arg-type]
    except TypeError:
        rule = None
    if rule is not None:
        if rule.action == "drop":
            _add(
                report,
                Finding(
                    step.path, tname, PROBLEM, failure_reason(node, TypeError()), failure_fix(node)
                ),
            )
            return False
        if rule.reducer is not None:
            try:
                rule.reducer(node)
            except Exception as exc:  # noqa: BLE001 - reported as the problem it is
                _add(report, Finding(step.path, tname, PROBLEM, str(exc), failure_fix(node)))
                return False
        if rule.action == "recreate":
            _add(report, Finding(step.path, tname, RECREATED, "recreated fresh at load time"))
        else:
            _add(report, Finding(step.path, tname, REOPENED, "reopened at load time"))
        return False
    borrowed = borrowed_reducer(t)
    if borrowed == "dill":
        _add(report, Finding(step.path, tname, DILL, "serialized with dill's reducer"))
        # A weak reference's referent travels; dill's own reducers are not run here (that
        # would import dill, which only a dump that needs it does).
        return t is weakref.ReferenceType
    if borrowed == "cloudpickle":
        _add(
            report, Finding(step.path, tname, CLOUDPICKLE, "serialized with cloudpickle's reducer")
        )
        return True  # a property's functions, a weakly referenced object... travel too
    try:
        rv = saving.reduce(node)  # as dumps' pickler reduces it (a bound method by value...)
    except Exception as exc:  # noqa: BLE001 - reported as the problem it is
        _add(
            report, Finding(step.path, tname, PROBLEM, failure_reason(node, exc), failure_fix(node))
        )
        return False
    if not isinstance(rv, (str, tuple)):
        _add(
            report,
            Finding(
                step.path,
                tname,
                PROBLEM,
                f"__reduce__ returned {type(rv).__name__}, not a tuple",
                failure_fix(node),
            ),
        )
        return False
    return True


# --- graphs nested too deeply -----------------------------------------------------------------

# A walk step costs the pickler at most ~12 levels of the interpreter's recursion budget (a
# global of a function sent by value: the function, its state, its globals, the value); lists
# cost 2, instances 3. Graphs deeper than this many steps are tried for real.
_TRIAL_STEPS = 64
_LEVELS_PER_STEP = 16


def _trial_depth() -> int:
    """How many steps deep a graph must be before a real dump decides whether it is too deep.

    Python 3.11 counts the pickler's levels against ``sys.getrecursionlimit()``, shared with the
    frames already on the stack; 3.12 and later have a fixed C limit, at least as deep.
    """
    frames = 0
    frame: types.FrameType | None = sys._getframe()
    while frame is not None:
        frames += 1
        frame = frame.f_back
    budget = (sys.getrecursionlimit() - frames) // _LEVELS_PER_STEP
    return max(1, min(_TRIAL_STEPS, budget))


class _SkippingPickler(AutoPickler):
    """Auto's pickler, writing the parts :func:`explain` already reported as ``None``, to
    learn whether the rest is also nested too deeply."""

    def __init__(self, file: Any, skip: dict[int, Any]) -> None:
        super().__init__(file)
        self._skip = skip

    def reducer_override(self, obj: Any) -> Any:
        if id(obj) in self._skip:
            return (type(None), ())
        return super().reducer_override(obj)


def _too_deep(make: Any, obj: Any) -> bool | None:
    """Dump ``obj`` to nowhere: True if it is nested too deeply, False if it dumps, None if
    another failure comes first."""
    try:
        make(NullSink()).dump(obj)
    except RecursionError:
        return True
    except Exception:  # noqa: BLE001 - another failure first (a user's __reduce__ raising, say)
        return None
    return False


def _check_depth(obj: Any, report: Explanation, saving: Saving, problems: dict[int, Any]) -> None:
    """Add a problem for a graph the pickler cannot go down, where the pickler gives up;
    first among the problems when it is what ``dumps`` meets first."""
    make: Any = AutoPickler  # what dumps runs (its first, plain, attempt goes as deep)
    verdict = _too_deep(make, obj)
    first = verdict is True
    if verdict is None and problems:
        make = lambda file: _SkippingPickler(file, problems)  # noqa: E731
        verdict = _too_deep(make, obj)
    if not verdict:
        return
    # The place named is the bottom of the nesting, which every caller finds alike (where the
    # pickler gives up depends on how deep the caller already is), and which dumps names too.
    bottom = deepest_part(obj, saving=saving)
    gives_up = deepest_entered(obj, make, saving=saving)
    where = f", and the pickler gives up after about {gives_up.depth:,}" if gives_up else ""
    fix = too_deep_fix()
    finding = Finding(
        bottom.path,
        type_name(bottom.obj),
        PROBLEM,
        f"the graph is nested too deeply for the pickler: {bottom.depth:,} levels{where}",
        fix,
    )
    report.counts[(finding.kind, finding.type_name)] += 1
    if first:
        report.rows.insert(0, finding)
    else:
        report.rows.append(finding)
