"""``explain(obj)``: every part of an object graph that cannot be serialized, at once.

One walk of the graph (the walk of :mod:`omnipickle.diagnostics`, which locates a single failure
for the backends); nothing is pickled. What the ``auto`` backend does with each type is asked of
the backend itself (:func:`omnipickle.backends.auto.borrowed_reducer`), so this report and the
dump cannot disagree.
"""

from __future__ import annotations

import collections
import copyreg
import pickle
import types
from dataclasses import dataclass, field
from typing import Any

from .backends.auto import borrowed_reducer, importable
from .diagnostics import ATOMIC, children, failure_fix, failure_reason, type_name
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
        for label, child in children(node):
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
    t = type(node)
    if t in ATOMIC:
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
            _add(
                report,
                Finding(path, tname, PROBLEM, failure_reason(node, TypeError()), failure_fix(node)),
            )
            return False
        if rule.reducer is not None:
            try:
                rule.reducer(node)
            except Exception as exc:  # noqa: BLE001 - reported as the problem it is
                _add(report, Finding(path, tname, PROBLEM, str(exc), failure_fix(node)))
                return False
        if rule.action == "recreate":
            _add(report, Finding(path, tname, RECREATED, "recreated fresh at load time"))
        else:
            _add(report, Finding(path, tname, REOPENED, "reopened at load time"))
        return False
    borrowed = borrowed_reducer(t)
    if borrowed == "dill":
        _add(report, Finding(path, tname, DILL, "serialized with dill's reducer"))
        return True
    if borrowed == "cloudpickle":
        _add(report, Finding(path, tname, CLOUDPICKLE, "serialized with cloudpickle's reducer"))
        return False
    try:
        reducer = copyreg.dispatch_table.get(t)
        rv = reducer(node) if reducer is not None else node.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - reported as the problem it is
        _add(report, Finding(path, tname, PROBLEM, failure_reason(node, exc), failure_fix(node)))
        return False
    if not isinstance(rv, (str, tuple)):
        _add(
            report,
            Finding(
                path,
                tname,
                PROBLEM,
                f"__reduce__ returned {type(rv).__name__}, not a tuple",
                failure_fix(node),
            ),
        )
        return False
    return True
