"""Hostile use of the C fast paths of ``loads`` and ``dumps`` (``omnipickle._speedups``).

Each test attacks the C callables the way a hostile payload or a careless program would: code
that runs while a payload loads and changes what the fast path reads (the callable itself, the
backend flags, the codec flags, the load hooks, a profiler), a hostile key in the table of
accepted headers, loads nested deeper than the recursion limit, call shapes the C code parses
itself (``str`` subclasses as keyword names, ``functools.partial``), a Python side that answers
the C code with the wrong type, subinterpreters. Whatever could crash runs in a child process
with a timeout; payloads that run code count their runs in a marker file, so that nothing runs
twice (the fast path hands a call to Python only before pickle is called) or not at all. The
C callable is compared with the Python function it stands for (``__wrapped__``).
"""

from __future__ import annotations

import copyreg
import functools
import pickle
import re
import signal
import sys
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import omnipickle
from conftest import run_python

ACCELERATED = hasattr(omnipickle.loads, "__wrapped__")
PYTHON_LOADS: Callable[..., Any] = getattr(omnipickle.loads, "__wrapped__", omnipickle.loads)
PYTHON_DUMPS: Callable[..., Any] = getattr(omnipickle.dumps, "__wrapped__", omnipickle.dumps)
needs_c = pytest.mark.skipif(not ACCELERATED, reason="omnipickle._speedups is not built here")


def _outcome(call: Callable[[], Any]) -> tuple[str, str]:
    try:
        return ("ok", re.sub(" at 0x[0-9a-f]+", "", repr(call())))
    except Exception as exc:
        return (type(exc).__name__, re.sub(" at 0x[0-9a-f]+", "", str(exc)))


def _child(code: str, timeout: float = 120) -> str:
    """Run ``code`` in a fresh interpreter; its stdout, after checking that no signal (a
    segfault, an abort) ended it and that it exited 0."""
    proc = run_python(code=code, timeout=timeout)
    assert proc.returncode >= 0, (
        f"killed by {signal.Signals(-proc.returncode).name}:\n{proc.stdout}\n{proc.stderr}"
    )
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


# --- the Python side answers with the wrong type ---------------------------------------------

_FAILURE_NOT_AN_EXCEPTION = r"""
import pickle
import omnipickle, omnipickle.api as api

damaged = pickle.dumps([1, 2, 3], 4)[:-1]  # pickle.loads fails: the C path asks the Python side
for answer in (42, "no", ValueError):
    api.load_failure = lambda *args, answer=answer, **kwargs: answer
    for loads in (omnipickle.loads, omnipickle.loads.__wrapped__):
        try:
            loads(damaged)
        except TypeError as exc:
            print(type(loads).__name__, answer, exc, type(exc.__context__).__name__)
        except ValueError as exc:  # the class: Python instantiates it
            print(type(loads).__name__, answer, "ValueError")
"""


@needs_c
def test_a_failure_mapping_that_returns_no_exception_raises_type_error_not_a_crash() -> None:
    # Monkeypatched internals must not crash the interpreter: what `raise answer from exc`
    # raises in Python, a TypeError (for an instance that is no exception).
    lines = _child(_FAILURE_NOT_AN_EXCEPTION).splitlines()
    refused = "exceptions must derive from BaseException UnpicklingError"
    assert lines == [
        f"FastLoads 42 {refused}",
        f"function 42 {refused}",
        f"FastLoads no {refused}",
        f"function no {refused}",
        # A class: Python instantiates it; the C path, which expects an instance, refuses it.
        f"FastLoads <class 'ValueError'> {refused}",
        "function <class 'ValueError'> ValueError",
    ]


# --- keyword names the C code parses itself --------------------------------------------------


class _NeverEqual(str):
    """A keyword name the Python function does not recognise (it compares with ``==``)."""

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = str.__hash__


class _PlainSubclass(str):
    pass


@needs_c
@pytest.mark.parametrize("name", ["protocol", "raw"])
@pytest.mark.parametrize("kind", [_NeverEqual, _PlainSubclass])
def test_keyword_names_of_a_str_subclass_get_what_the_python_function_does(
    name: str, kind: type[str]
) -> None:
    value: Any = 3 if name == "protocol" else True
    kwargs = {kind(name): value}
    fast = _outcome(lambda: omnipickle.dumps({"a": 1}, **kwargs))
    assert fast == _outcome(lambda: PYTHON_DUMPS({"a": 1}, **kwargs))
    fast = _outcome(lambda: omnipickle.loads(omnipickle.dumps(1), **{kind("key"): None}))
    assert fast == _outcome(lambda: PYTHON_LOADS(omnipickle.dumps(1), **{kind("key"): None}))


class _Bytes(bytes):
    pass


_DATA = omnipickle.dumps({"a": [1, 2]})
_RAW = pickle.dumps({"a": [1, 2]}, 5)

LOAD_SHAPES: list[Callable[[Callable[..., Any]], Any]] = [
    lambda f: f(_DATA),
    lambda f: f(*[_DATA], **{}),
    lambda f: functools.partial(f)(_DATA),
    lambda f: functools.partial(f, _DATA)(),
    lambda f: functools.partial(f, fix_imports=True)(_RAW),
    lambda f: functools.partial(f, key=None)(_DATA),
    lambda f: f(_Bytes(_DATA)),
    lambda f: f(_Bytes(_RAW)),
    lambda f: f(bytearray(_DATA)),
    lambda f: f(memoryview(_RAW)),
    lambda f: f(data=_DATA),  # positional-only
    lambda f: f(_DATA, _DATA),
    lambda f: f(),
    lambda f: f(b"\x80\x04B"),
    lambda f: f(b"\x80\x04."),
    lambda f: f(b"\x80\x09N."),
    lambda f: f(_RAW + b"more"),
    lambda f: f(_DATA + b"more"),
    lambda f: f("\x80\x04N."),
]

DUMP_SHAPES: list[Callable[[Callable[..., Any]], Any]] = [
    lambda f: f({"a": 1}, *[], **{}),
    lambda f: f(obj={"a": 1}),
    lambda f: f({"a": 1}, 2, protocol=3),
    lambda f: f({"a": 1}, **{"raw": False, "protocol": 5}),
    lambda f: f({"a": 1}, raw=1),
    lambda f: f({"a": 1}, True),
    lambda f: f({"a": 1}, protocol=None, raw=True),
    lambda f: functools.partial(f, protocol=4)([1, 2]),
    lambda f: functools.partial(f, (1,), 2)(raw=True),
    lambda f: f(),
    lambda f: f(1, 2, 3),
]


SHAPES = [("loads", shape) for shape in LOAD_SHAPES] + [("dumps", shape) for shape in DUMP_SHAPES]


@needs_c
@pytest.mark.parametrize(("name", "shape"), SHAPES)
def test_call_shapes_get_what_the_python_function_does(
    name: str, shape: Callable[[Callable[..., Any]], Any]
) -> None:
    fast = getattr(omnipickle, name)
    assert _outcome(lambda: shape(fast)) == _outcome(lambda: shape(fast.__wrapped__))


# --- weak references, as to the functions they stand for -------------------------------------


@needs_c
@pytest.mark.parametrize("name", ["loads", "dumps"])
def test_loads_and_dumps_take_weak_references_as_functions_do(name: str) -> None:
    fast = getattr(omnipickle, name)
    ref = weakref.ref(fast)
    assert ref() is fast
    assert weakref.ref(fast.__wrapped__)() is fast.__wrapped__


# --- code that runs while a payload loads ----------------------------------------------------

_CODE_RUNS_WHILE_LOADING = r"""
import contextvars, gc, pickle, sys, threading
import omnipickle, omnipickle.api as api
from omnipickle._reconstruct import LOAD_HOOKS
from omnipickle.api import _PLAIN_DATA
from omnipickle.backends import DEFAULTS
from omnipickle.codecs import MAGICS

MARKER = sys.argv[1]
FAST = omnipickle.loads
INNER = omnipickle.dumps({"in": 1})
INNER_RAW = pickle.dumps({"in": 1}, 5)


def _mark(step):
    with open(MARKER, "a") as f:
        f.write(step + "\n")


def run(step):
    _mark(step)
    if step == "replace":  # the callable running this load is replaced and collected
        api.loads = omnipickle.loads = lambda *args, **kwargs: "replaced"
        gc.collect()
        return FAST(INNER), FAST(INNER_RAW)
    if step == "hooks":
        LOAD_HOOKS.set(())
        return FAST(INNER), FAST(INNER_RAW)
    if step == "flags":  # what the fast path reads, changed under it and back
        saved = DEFAULTS.builtin, DEFAULTS.fast_bits, DEFAULTS.pickle_only
        DEFAULTS.builtin = False
        MAGICS.proto_unclaimed = False
        DEFAULTS.fast_bits = frozenset(saved[1])
        DEFAULTS.pickle_only = frozenset(saved[2])
        try:
            return FAST(INNER), FAST(INNER_RAW)
        finally:
            DEFAULTS.builtin = saved[0]
            MAGICS.proto_unclaimed = True
    if step == "profile":
        sys.setprofile(lambda *args: FAST(INNER))
        try:
            return FAST(INNER), FAST(INNER_RAW)
        finally:
            sys.setprofile(None)
    if step == "trace":
        sys.settrace(lambda *args: None)
        try:
            return FAST(INNER), FAST(INNER_RAW)
        finally:
            sys.settrace(None)
    if step == "thread":
        got = []
        t = threading.Thread(target=lambda: got.append((FAST(INNER), FAST(INNER_RAW))))
        t.start()
        t.join()
        return got[0]
    raise AssertionError(step)


class Runs:
    def __init__(self, step):
        self.step = step

    def __reduce__(self):
        return (run, (self.step,))


python = FAST.__wrapped__
for step in ("hooks", "flags", "profile", "trace", "thread", "replace"):
    stream = pickle.dumps([Runs(step)], 5)
    for data in (_PLAIN_DATA.wrap(stream, 5), stream):
        for loads in (FAST, python):
            got = contextvars.copy_context().run(loads, data)
            print(step, type(loads).__name__, got)
"""


@needs_c
def test_code_that_changes_what_the_fast_path_reads_while_it_loads_gets_right_answers(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "ran"
    out = _child(_CODE_RUNS_WHILE_LOADING.replace("sys.argv[1]", repr(str(marker))))
    lines = out.splitlines()
    assert len(lines) == 24
    assert all(line.endswith("[({'in': 1}, {'in': 1})]") for line in lines), lines
    # Each payload's code ran once per load: nothing was unpickled twice, nothing skipped.
    steps = ("hooks", "flags", "profile", "trace", "thread", "replace")
    assert marker.read_text().splitlines() == [step for step in steps for _ in range(4)]


# --- dumps: the per-protocol prefix it keeps ---------------------------------------------------

_REENTRANT_PREFIX = r"""
import sys
import omnipickle
from omnipickle.api import _PLAIN_DATA

lead = _PLAIN_DATA.prefix(3)[0]  # kept by the Python side; the C path keeps it on first use
nested = [sys.argv[1] == "nested"]


class Prefixes(dict):
    # The first dumps at protocol 3 asks the Python side for the prefix, and a dumps at the
    # same protocol runs meanwhile (as another thread's could).
    def get(self, key, default=None):
        if nested[0] and key == 3:
            nested[0] = False
            assert omnipickle.dumps(1, 3) == omnipickle.dumps.__wrapped__(1, 3)
        return dict.get(self, key, default)


_PLAIN_DATA._prefixes = Prefixes(_PLAIN_DATA._prefixes)
before = sys.getrefcount(lead)
assert omnipickle.dumps([1], 3) == omnipickle.dumps.__wrapped__([1], 3)
print(sys.getrefcount(lead) - before)
"""


@needs_c
@pytest.mark.parametrize("how", ["plain", "nested"])
def test_a_dumps_nested_in_the_first_of_a_protocol_leaves_one_reference_to_its_prefix(
    how: str,
) -> None:
    code = _REENTRANT_PREFIX.replace("sys.argv[1]", repr(how))
    assert _child(code) == "1\n"  # the C path's own, and no other


# --- loads nested in loads, without end --------------------------------------------------------

_LOADS_ITSELF = r"""
import pickle
import omnipickle
from omnipickle.api import _PLAIN_DATA

# A stream that loads itself: omnipickle.loads(__main__.PAYLOAD), PAYLOAD being the stream (or
# its envelope). Between two calls of the C loads there is no Python frame, only pickle.loads.
STREAM = b"\x80\x04comnipickle\nloads\nc__main__\nPAYLOAD\n\x85R."
for kind, PAYLOAD in (("raw", STREAM), ("envelope", _PLAIN_DATA.wrap(STREAM, 4))):
    for loads in (omnipickle.loads, omnipickle.loads.__wrapped__):
        try:
            print(kind, type(loads).__name__, loads(PAYLOAD))
        except RecursionError as exc:
            print(kind, type(loads).__name__, type(exc).__name__)
"""


@needs_c
def test_a_payload_that_loads_itself_is_a_recursion_error_not_a_crash() -> None:
    # pickle.loads's own recursion check stops it (the C recursion limit, on 3.12 and later).
    assert _child(_LOADS_ITSELF).splitlines() == [
        "raw FastLoads RecursionError",
        "raw function RecursionError",
        "envelope FastLoads RecursionError",
        "envelope function RecursionError",
    ]


# --- a hostile key in the table of accepted headers ------------------------------------------

_HOSTILE_TABLE_KEY = r"""
import gc
import omnipickle
from omnipickle.backends import DEFAULTS, PICKLE_LOADER_ID
from omnipickle.format.header import PLAIN_LAYOUT, accepted_first_bytes

data = omnipickle.dumps({"a": [1, 2]})
first = data[: PLAIN_LAYOUT["after_fields"]]
bits = DEFAULTS.pickle_only  # cloudpickle is not imported here
whole = accepted_first_bytes(PICKLE_LOADER_ID, bits)
entry = whole.pop(first)
compared = []


class Hostile:
    # Compared with the payload's first bytes during the lookup (same hash, met first): it
    # empties and refills the table, replaces the bits (so the nested loads fetches a table
    # again and the C path lets go of the one it had) and loads, nested.
    def __hash__(self):
        return hash(first)

    def __eq__(self, other):
        compared.append(1)
        if len(compared) < 20:
            DEFAULTS.pickle_only = frozenset(DEFAULTS.pickle_only)
            assert omnipickle.loads(data) == {"a": [1, 2]}
            whole.pop(first, None)
            gc.collect()
            whole[first] = entry
        return False


whole[Hostile()] = (0, 0, 0)
whole[first] = entry
for loads in (omnipickle.loads, omnipickle.loads.__wrapped__):
    compared.clear()
    print(type(loads).__name__, loads(data), len(compared) >= 20)
"""


@needs_c
def test_a_hostile_key_in_the_accepted_headers_changes_nothing_but_its_own_calls() -> None:
    assert _child(_HOSTILE_TABLE_KEY).splitlines() == [
        "FastLoads {'a': [1, 2]} True",
        "function {'a': [1, 2]} True",
    ]


# --- payloads the C path declines run once, in Python ----------------------------------------

_DECLINED_RUN_ONCE = r"""
import pickle, sys
import omnipickle
from omnipickle.api import _PLAIN_DATA

MARKER = sys.argv[1]


def run(tag):
    with open(MARKER, "a") as f:
        f.write(tag + "\n")
    return tag


class Runs:
    def __init__(self, tag, pad=""):
        self.tag, self.pad = tag, pad

    def __reduce__(self):
        return (run, (self.tag,))


small = pickle.dumps([Runs("small")], 5)
large = pickle.dumps([Runs("large"), "x" * 10_000], 5)
payloads = {
    "small": _PLAIN_DATA.wrap(small, 5),  # the C path reads it
    "large": _PLAIN_DATA.wrap(large, 5),  # too large for the C path's checksum: Python
    "raw": small.replace(b"small", b"raw__"),  # a plain pickle stream: the C path
    "bad": small.replace(b"small", b"bad__")[:-1] + b"\\xff",  # pickle fails at the end
}
for name, data in payloads.items():
    try:
        print(name, omnipickle.loads(data)[0])
    except Exception as exc:
        print(name, type(exc).__name__)
"""


@needs_c
def test_a_payload_runs_its_code_once_whichever_path_reads_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    out = _child(_DECLINED_RUN_ONCE.replace("sys.argv[1]", repr(str(marker))))
    assert out.splitlines() == [
        "small small",
        "large large",
        "raw raw__",
        "bad TruncatedPayloadError",
    ]
    assert marker.read_text().splitlines() == ["small", "large", "raw__", "bad__"]


# --- dumps: no code can run between the C path's look and pickle's writing ------------------


@needs_c
@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("atom", [bytearray, bytes, str, int, float, bool, type(None)])
def test_copyreg_entries_for_atoms_run_no_code_in_either_path(protocol: int, atom: type) -> None:
    # The C path checks that a container holds atoms only, then calls pickle.dumps: the
    # container could change in between only if pickle ran Python code for an atom. It writes
    # every atom itself, whatever copyreg says; so no reducer can add to the container.
    ran: list[Any] = []
    obj = [atom(), 1]

    def reducer(value: Any) -> Any:
        ran.append(value)
        obj.append(lambda: 0)
        return (atom, ())

    saved = copyreg.dispatch_table.get(atom)
    copyreg.pickle(atom, reducer)
    try:
        fast = omnipickle.dumps(obj, protocol)
        assert fast == PYTHON_DUMPS(obj, protocol)
        assert omnipickle.dumps({"k": atom()}, protocol, raw=True) == pickle.dumps(
            {"k": atom()}, protocol
        )
    finally:
        if saved is None:
            del copyreg.dispatch_table[atom]
        else:
            copyreg.dispatch_table[atom] = saved
    assert ran == []
    assert omnipickle.loads(fast) == [atom(), 1]


# --- subinterpreters ---------------------------------------------------------------------------

_SUBINTERPRETERS = r"""
import sys
try:
    import _xxsubinterpreters as interpreters
except ImportError:
    import _interpreters as interpreters
import omnipickle

code = '''
import pickle
import omnipickle
for obj in ({"a": 1}, [1, 2.5, "x"], None):
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        assert omnipickle.loads(omnipickle.dumps(obj, protocol)) == obj
        assert omnipickle.loads(omnipickle.dumps(obj, protocol, raw=True)) == obj
try:
    omnipickle.loads(pickle.dumps([1], 4)[:-1])
except omnipickle.UnpicklingError:
    pass
print(type(omnipickle.loads).__name__, flush=True)
'''
if sys.version_info >= (3, 13):
    kinds = [("isolated", ()), ("legacy", ("legacy",))]
elif sys.version_info >= (3, 12):
    kinds = [("isolated", {}), ("legacy", {"isolated": False})]
else:
    kinds = [("legacy", {})]
for name, config in kinds:
    for _ in range(2):
        if isinstance(config, dict):
            interp = interpreters.create(**config)
        else:
            interp = interpreters.create(*config)
        print(name, end=" ", flush=True)
        interpreters.run_string(interp, code)
        interpreters.destroy(interp)
assert omnipickle.loads(omnipickle.dumps({"b": 2})) == {"b": 2}
"""


@needs_c
def test_in_subinterpreters_it_works_or_leaves_loads_to_python() -> None:
    pytest.importorskip("_xxsubinterpreters" if sys.version_info < (3, 13) else "_interpreters")
    lines = _child(_SUBINTERPRETERS).splitlines()
    # Single-phase init: an isolated interpreter (3.12+) refuses the extension, and the
    # package imports without it; a legacy one shares it.
    assert "legacy FastLoads" in lines
    assert all(line in ("legacy FastLoads", "isolated function") for line in lines), lines
