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
import sys
import types
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from .errors import PicklingError, combined, pickling_cause
from .resources import resource_rule

__all__ = [
    "ATOMIC",
    "BY_NAME",
    "BY_VALUE",
    "NullSink",
    "Saving",
    "Step",
    "children",
    "deepest_entered",
    "deepest_part",
    "describe_failure",
    "failure_fix",
    "failure_reason",
    "find_paths",
    "format_path",
    "is_live_resource",
    "locate_failure",
    "recursing_code",
    "saved_by",
    "too_deep_fix",
    "type_name",
    "walk",
]


class NullSink:
    """A file that discards what is written (used to test-pickle parts of a graph)."""

    __slots__ = ()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        # A large in-band buffer comes as a PickleBuffer or bytearray, which may have no len().
        return memoryview(data).nbytes


_MAX_CHILDREN = 100_000
_MAX_DEPTH = 2_000


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

    # Looked into as the dump's own pickler saves it: a class, a bound method or a cached
    # function it sends by value has parts (code, globals) where the problem can be.
    return _locate(obj, fails, refused, exc, Saving(make_pickler(NullSink())))


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
            # Where the nesting bottoms out: the same place explain() names, whatever the depth
            # the caller already had.
            deepest = deepest_part(obj, saving=Saving(make_pickler(NullSink())))
            return _error(
                cause,
                path=deepest.path,
                culprit=obj,
                reason=f"the graph is nested too deeply for the pickler ({cause})",
                fix=too_deep_fix(),
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


def too_deep_fix() -> str:
    """What to do about a graph nested too deeply for the pickler (``dumps`` and ``explain``
    say the same)."""
    fix = "flatten it (keep the nodes in a list and link them by index, say)"
    if sys.version_info < (3, 12):  # later, the C pickler's own limit is fixed
        fix += " or raise sys.setrecursionlimit()"
    return fix


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
    saving: Saving | None = None,
) -> tuple[str, Any, BaseException]:
    """Follow failing children down from ``obj``; stop at a node refused for itself."""
    labels: list[str] = []
    current, cause = obj, exc
    seen = {id(obj)}
    for _ in range(_MAX_DEPTH):
        if refused(current):
            break
        for label, child in children(current, saving=saving):
            if id(child) in seen:
                continue
            seen.add(id(child))
            err = fails(child)
            if err is not None:
                labels.append(label)
                current, cause = child, err
                break
        else:
            break
    return format_path(labels), current, cause


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


def _atomic(t: type) -> bool:
    """Whether the pickler saves ``t``'s objects itself (a type whose metaclass makes it
    unhashable is not one of them, and cannot be looked up in a set)."""
    try:
        return t in ATOMIC
    except TypeError:
        return False


def _own_reduction_fails(obj: Any, pickler: pickle.Pickler) -> bool:
    """Whether reducing ``obj`` itself (not its parts) fails, as ``pickler`` would do it."""
    t = type(obj)
    # By type, not isinstance(): isinstance() asks the object for __class__, which runs its
    # own __getattribute__ (the very code that may have failed).
    if _atomic(t) or issubclass(t, (type, types.FunctionType)):
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


def children(obj: Any, *, saving: Saving | None = None) -> Iterator[tuple[str, Any]]:
    """The parts the pickler would save for ``obj``, each with a label for the path, in the
    order the pickler saves them.

    Args:
        obj: anything.
        saving: how a particular pickler saves things (:class:`Saving`). With it, an object
            is reduced as that pickler reduces it (its dispatch table first), a function it
            writes by name has no parts, the class of an instance it sends by value is a part
            (``.__class__``), and so are the namespace and bases of such a class (its
            methods and, through them, the globals they use travel with it). Without it
            objects are reduced as the standard pickler does, classes have no parts and every
            function has its closure, globals and defaults as parts.
    """
    t = type(obj)
    if t in _LEAVES:
        return
    try:
        if t is dict or isinstance(obj, (dict, types.MappingProxyType)):
            for i, (k, v) in enumerate(obj.items()):
                if i >= _MAX_CHILDREN:
                    return
                yield f".keys()[{i}]", k  # the pickler saves each key before its value
                yield f"[{k!r}]", v
            if t is dict or t is types.MappingProxyType:
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
        if _atomic(t):
            return  # atoms (a str, an int) have no parts, whatever their __reduce_ex__ says
        if isinstance(obj, types.FunctionType):
            if saving is None or saving.by_value(obj):
                yield from _function_children(obj)
            return
        if isinstance(obj, type):
            if saving is not None and saving.by_value(obj):
                yield from _class_children(obj)
            return
        wrapped = _wrapper_children(obj)
        if wrapped is not None:
            yield from wrapped
            return
        yield from _reduce_children(obj, saving)
    except Exception:  # noqa: BLE001 - a misbehaving object ends the walk here, not the error report
        return


# What the pickler writes as it is (reducing a str would give a copy of it, as parts, forever).
_LEAVES = frozenset(
    {str, bytes, bytearray, int, float, complex, bool, type(None), pickle.PickleBuffer}
)


def _function_children(func: types.FunctionType) -> Iterator[tuple[str, Any]]:
    """What a function sent by value carries, in the order the auto backend saves it (that of
    cloudpickle's reducer, which writes the few functions auto leaves to it)."""
    for key, value in func.__dict__.items():
        yield _attr_label(key), value
    if func.__annotations__:
        yield ".__annotations__", func.__annotations__
    for name, value in (func.__kwdefaults__ or {}).items():
        yield f"<default {name}>", value
    for i, value in enumerate(func.__defaults__ or ()):
        yield f"<default {i}>", value
    code = func.__code__
    for name, cell in zip(code.co_freevars, func.__closure__ or (), strict=False):
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        yield f"<closure {name}>", value
    for name in _code_globals(code):
        if name in func.__globals__:
            yield f"<global {name}>", func.__globals__[name]


_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL"})


def _code_globals(code: types.CodeType) -> list[str]:
    """The global names ``code`` and the code nested in it (local functions, lambdas,
    comprehensions) read or write: the globals a function sent by value takes along.

    Read from the bytecode, not ``co_names``, which also holds attribute names (``self.conn``
    must not be taken for a global ``conn``).
    """
    import dis  # only when a function's parts are looked at (explain, a failed dump)

    names: dict[str, None] = {}
    pending = [code]
    while pending:  # depth first, own names before the nested code's, as cloudpickle does
        co = pending.pop()
        for instruction in dis.get_instructions(co):
            if instruction.opname in _GLOBAL_OPS:
                names[instruction.argval] = None
        pending.extend(c for c in reversed(co.co_consts) if isinstance(c, types.CodeType))
    return list(names)


# What cloudpickle's reducer of a class leaves out of its namespace (rebuilt, or not picklable).
_CLASS_SKIPPED = frozenset({"__dict__", "__weakref__", "_abc_impl", "__annotate_func__"})


def _class_children(cls: type) -> Iterator[tuple[str, Any]]:
    """What a class sent by value carries: its metaclass, bases and namespace."""
    if type(cls) is not type:
        yield ".__class__", type(cls)
    for i, base in enumerate(cls.__bases__):
        yield f".__bases__[{i}]", base
    slots = cls.__dict__.get("__slots__", ())
    skipped = _CLASS_SKIPPED.union((slots,) if isinstance(slots, str) else slots)
    for name, value in list(cls.__dict__.items()):
        if name not in skipped:
            yield _attr_label(name), value


def _wrapper_children(obj: Any) -> Iterator[tuple[str, Any]] | None:
    """The parts of the wrappers cloudpickle and dill reduce (the standard pickler cannot)."""
    if isinstance(obj, property):
        parts = [(".fget", obj.fget), (".fset", obj.fset), (".fdel", obj.fdel)]
        return iter([(label, part) for label, part in parts if part is not None])
    if isinstance(obj, (classmethod, staticmethod)):
        return iter([(".__func__", obj.__func__)])
    if type(obj) is weakref.ReferenceType:
        referent = obj()
        return iter([("()", referent)] if referent is not None else [])
    return None


def _reduce_children(obj: Any, saving: Saving | None = None) -> Iterator[tuple[str, Any]]:
    if saving is not None:
        rv = saving.reduce(obj)
    else:
        reducer = copyreg.dispatch_table.get(type(obj))
        rv = reducer(obj) if reducer is not None else obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    if isinstance(rv, str) or not isinstance(rv, tuple):
        return
    func, args, *rest = (*rv, None, None, None, None)[:6]
    state, listitems, dictitems = rest[0], rest[1], rest[2]
    newobj = getattr(func, "__name__", "") in ("__newobj__", "__newobj_ex__")
    # The pickler saves the callable (for __newobj__, the class) first, then the arguments,
    # the items and last the state.
    if saving is not None:
        maker = args[0] if newobj and isinstance(args, tuple) and args else func
        if isinstance(maker, (type, types.FunctionType)) and saving.by_value(maker):
            yield (".__class__" if maker is type(obj) else "<reduce>"), maker
    if isinstance(args, tuple):
        for i, arg in enumerate(args):
            if i == 0 and newobj:
                continue
            yield f"<arg {i}>", arg
    if listitems is not None:
        for i, item in enumerate(listitems):
            yield f"[{i}]", item
    if dictitems is not None:
        for key, value in dictitems:
            yield f"[{key!r}]", value
    if isinstance(state, tuple) and len(state) == 2:  # (dict state, slots state)
        for part in state:
            if isinstance(part, dict):
                yield from _state_children(part)
    elif isinstance(state, dict):
        yield from _state_children(state)
    elif state is not None:
        yield "<state>", state


def _attr_label(key: Any) -> str:
    return f".{key}" if isinstance(key, str) and key.isidentifier() else f"[{key!r}]"


def _state_children(state: dict[Any, Any]) -> Iterator[tuple[str, Any]]:
    for key, value in state.items():
        yield _attr_label(key), value


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


# --- the walk in the pickler's order, and graphs nested too deeply --------------------------


class Step:
    """One object met by :func:`walk`: how it was reached from the root.

    Attributes:
        parent: the step it was reached from (``None`` for the root).
        label: the last part of its path (``"[0]"``, ``".conn"``, ``"<global CONN>"``).
        obj: the object.
        depth: how many steps from the root.
        descend: set it to False before the walk goes on to skip the object's parts.
    """

    __slots__ = ("depth", "descend", "label", "obj", "parent")

    def __init__(self, parent: Step | None, label: str, obj: Any) -> None:
        self.parent = parent
        self.label = label
        self.obj = obj
        self.depth: int = 0 if parent is None else parent.depth + 1
        self.descend = True

    @property
    def path(self) -> str:
        """The path from ``root``, long repetitions shortened (:func:`format_path`)."""
        labels: list[str] = []
        step: Step | None = self
        while step is not None and step.parent is not None:
            labels.append(step.label)
            step = step.parent
        labels.reverse()
        return format_path(labels)


def walk(root: Any, *, saving: Saving | None = None) -> Iterator[Step]:
    """Every object of ``root``'s graph once, where the pickler first saves it: depth first, in
    the order of :func:`children`. No recursion, so any depth is fine.

    Set ``step.descend = False`` on a step before asking for the next one to skip its parts.
    ``saving`` is passed to :func:`children`.
    """
    stack: list[tuple[Step | None, str, Any]] = [(None, "root", root)]
    # Values kept alive, so that the id of a temporary (a state dict a __getstate__ built) is
    # not reused by another object while the walk still remembers it.
    seen: dict[int, Any] = {}
    while stack:
        parent, label, obj = stack.pop()
        if id(obj) in seen:
            continue
        seen[id(obj)] = obj
        step = Step(parent, label, obj)
        yield step
        if step.descend:
            parts = [(step, part_label, part) for part_label, part in children(obj, saving=saving)]
            stack.extend(reversed(parts))  # so that the first part is met first


_REPEATS_SHORTENED = 8
_LONGEST_REPEATED = 4


def format_path(labels: list[str]) -> str:
    """``root`` followed by ``labels``, where a run of more than 8 repetitions of the same one
    to four labels is written once with its count: ``root<100,000 x .next>.value``."""
    out = ["root"]
    i, n = 0, len(labels)
    while i < n:
        best_size, best_count = 1, 1
        for size in range(1, _LONGEST_REPEATED + 1):
            count = 1
            while (
                i + (count + 1) * size <= n
                and labels[i + count * size : i + (count + 1) * size] == labels[i : i + size]
            ):
                count += 1
            if count > _REPEATS_SHORTENED and count * size > best_count * best_size:
                best_size, best_count = size, count
        if best_count > 1:
            out.append(f"<{best_count:,} x {''.join(labels[i : i + best_size])}>")
            i += best_count * best_size
        else:
            out.append(labels[i])
            i += 1
    return "".join(out)


BY_NAME = "by name"
BY_VALUE = "by value"


def saved_by(pickler: pickle.Pickler, obj: Any) -> str | BaseException:
    """How ``pickler`` saves the function or class ``obj``: :data:`BY_NAME`, :data:`BY_VALUE`
    (its parts are pickled: code, closure, globals, a class's namespace), or the exception its
    ``reducer_override`` raised."""
    override = getattr(pickler, "reducer_override", None)
    if override is None:
        return BY_NAME
    try:
        rv = override(obj)
    except Exception as exc:  # noqa: BLE001 - the dump fails the same way: the caller reports it
        return exc
    if rv is NotImplemented:
        return BY_NAME
    # A class rebuilt from its namespace has that namespace as its state; NoneType and the
    # like are reduced to a name with no state.
    if isinstance(obj, type) and (not isinstance(rv, tuple) or len(rv) < 3 or rv[2] is None):
        return BY_NAME
    return BY_VALUE


class Saving:
    """How one pickler saves objects: which functions and classes it sends by value, and how
    it reduces each object (its own dispatch table first). One answer per function or class.

    Args:
        pickler: the pickler (it is asked, never run).
    """

    def __init__(self, pickler: pickle.Pickler) -> None:
        self.pickler = pickler
        self._table: Any = getattr(pickler, "dispatch_table", None)
        self._protocol: int = getattr(pickler, "proto", pickle.HIGHEST_PROTOCOL)
        self._answers: dict[int, tuple[Any, str | BaseException]] = {}

    def saved_by(self, obj: Any) -> str | BaseException:
        """:func:`saved_by` for this pickler, asked once per object."""
        known = self._answers.get(id(obj))
        if known is None:
            known = (obj, saved_by(self.pickler, obj))  # obj kept: its id stays its own
            self._answers[id(obj)] = known
        return known[1]

    def by_value(self, obj: Any) -> bool:
        """Whether the pickler pickles the parts of the function or class ``obj`` (or fails on
        it) instead of writing its name."""
        return self.saved_by(obj) != BY_NAME

    def reduce(self, obj: Any) -> Any:
        """``obj`` reduced as the pickler reduces it (what the reducer raises, raised)."""
        reducer = None
        for table in (self._table, copyreg.dispatch_table):
            if table is not None:
                try:
                    reducer = table[type(obj)]
                except KeyError:
                    continue
                break
        if reducer is not None:
            return reducer(obj)
        return obj.__reduce_ex__(self._protocol)


def deepest_part(root: Any, *, saving: Saving | None = None) -> Step:
    """The deepest object with parts of its own in ``root``'s graph, in :func:`walk`'s order
    (the first of equals): where to point at a graph nested too deeply. It does not depend on
    the interpreter or on how deep the caller is, so every caller names the same place."""
    deepest: Step | None = None
    for step in walk(root, saving=saving):
        if type(step.obj) not in _LEAVES and (deepest is None or step.depth > deepest.depth):
            deepest = step
        if is_live_resource(step.obj):
            step.descend = False  # refused or reduced by its rule: its parts are not pickled
    assert deepest is not None  # the root is always met
    return deepest


# The last objects the pickler entered, remembered to find where it gave up.
_RECENT = 32
_SCALARS = frozenset({int, float, bool, str, bytes, type(None), complex})


def deepest_entered(
    obj: Any,
    make_pickler: Callable[[Any], pickle.Pickler],
    *,
    saving: Saving | None = None,
) -> Step | None:
    """Where the pickler gives up on ``obj`` because it is nested too deeply.

    Dumps ``obj`` to nowhere with ``make_pickler(file)``, noting each object it enters, and
    returns the :class:`Step` (of :func:`walk`) of the last one entered before the
    ``RecursionError``; ``None`` if the dump ends without one (it succeeds, or fails for
    another reason first).
    """
    recent: collections.deque[Any] = collections.deque(maxlen=_RECENT)

    def note(entered: Any) -> None:
        if type(entered) not in _SCALARS:
            recent.append(entered)

    pickler = make_pickler(NullSink())
    pickler.persistent_id = note  # type: ignore[method-assign]
    try:
        pickler.dump(obj)
    except RecursionError:
        pass
    except Exception:  # noqa: BLE001 - another failure came first: not a matter of depth
        return None
    else:
        return None
    wanted = {id(o): i for i, o in enumerate(recent)}
    best: tuple[int, Step | None] = (-1, None)
    for step in walk(obj, saving=saving):
        rank = wanted.get(id(step.obj), -1)
        if rank > best[0]:
            best = (rank, step)
            if rank == len(recent) - 1:
                break
    return best[1]
