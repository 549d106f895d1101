"""CPython's own pickle test suite (``test.pickletester``), run through omnipickle.

The classes below are CPython's ``Lib/test/test_pickle.py`` with omnipickle in place of pickle:

* ``RawStreams``: ``omnipickle.dumps(..., raw=True)`` and ``omnipickle.loads`` (pickle's
  ``InMemoryPickleTests``: every dump test, and every load test of hand-written, damaged and
  truncated streams).
* ``Envelopes``: ``omnipickle.dumps`` (the default envelope) and ``omnipickle.loads``.
* ``PicklerClasses``: ``omnipickle.Pickler`` and ``omnipickle.Unpickler`` over files.
* ``ModuleFunctions``, and pickle's tests of persistent ids, pickler objects, dispatch tables and
  ``reducer_override`` hooks, with omnipickle's classes.

The only differences allowed are where omnipickle carries what pickle refuses (local functions,
and ``staticmethod``/``classmethod`` objects, by value): those tests are replaced by ones that
check the objects round-trip. Each other difference is listed in ``EXPECTED_FAILURES`` with its
reason (strict: a test that starts passing fails the run, to be unlisted then), and the tests
that read or edit the bytes of a plain stream are not run on envelopes (``NOT_FOR_ENVELOPES``).
Skipped where the interpreter ships no ``test`` package.
"""

from __future__ import annotations

import collections
import functools
import io
import pickle
import unittest
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest

import omnipickle

pt = pytest.importorskip("test.pickletester", reason="this Python ships no test package")

# The tests in pickletester that assert what omnipickle deliberately does otherwise, and why.
EXPECTED_FAILURES: dict[str, dict[str, str]] = {
    "PicklerClasses": {
        "test_newobj_proxies": (
            "omnipickle.Pickler writes a weakref.proxy with dill's reducer, as a proxy whose "
            "referent dies at load unless the graph holds it elsewhere (dumps' fast path "
            "writes the referent, as pickle does): to be fixed in the auto backend"
        ),
    },
    "DispatchTables": {
        "test_default_dispatch_table": (
            "omnipickle.Pickler always has a dispatch_table (its own, until one is set), so "
            "that a dict() copy of it assigned back keeps code by value (docs/api.md, Pickler)"
        ),
    },
    "ChainedDispatchTables": {
        "test_default_dispatch_table": "as for DispatchTables",
    },
}
# Tests of the bytes of a plain stream (opcodes, frames, exact output), which an envelope
# wraps in its header: RawStreams runs them.
NOT_FOR_ENVELOPES = (
    "test_float_format",
    "test_framing_large_objects",
    "test_framing_many_objects",
    "test_optional_frames",
    "test_pickle_to_2x",
)


class CarriesWhatPickleRefuses:
    """pickle refuses local functions and ``staticmethod``/``classmethod`` objects; omnipickle
    writes them by value. These replace the tests that assert the refusal."""

    dumps: Callable[..., bytes]
    loads: Callable[..., Any]

    def test_local_lookup_error(self) -> None:
        """pickle: a local function cannot be looked up by name (also without ``__module__``,
        and with its ``__qualname__`` as name). omnipickle: it is written by value and loads."""

        def f() -> str:
            return "local"

        variants: list[Callable[[], Any]] = [f]
        g = _local_function()
        del g.__module__
        variants.append(g)
        h = _local_function()
        del h.__module__
        h.__name__ = h.__qualname__
        variants.append(h)
        for func in variants:
            for proto in range(pickle.HIGHEST_PROTOCOL + 1):
                assert self.loads(self.dumps(func, proto))() == func()

    def test_py_methods(self) -> None:
        """pickle refuses a class's ``staticmethod``/``classmethod`` objects (``TypeError``);
        omnipickle carries them by value. Everything else in the test runs unchanged."""
        self._descriptors_refused_or_carried(super().test_py_methods)  # type: ignore[misc]

    def test_c_methods(self) -> None:
        """As :meth:`test_py_methods`, for the descriptors of builtin types
        (``bytearray.__dict__['maketrans']``, ``dict.__dict__['fromkeys']``)."""
        self._descriptors_refused_or_carried(super().test_c_methods)  # type: ignore[misc]

    def _descriptors_refused_or_carried(self, test: Callable[[], None]) -> None:
        # In these two tests assertRaises is used only as assertRaises(TypeError, dumps,
        # descriptor, proto).
        checked: list[Any] = []

        def refused_or_carried(expected: Any, dumps: Any, descr: Any, proto: int) -> None:
            checked.append(descr)
            try:
                data = dumps(descr, proto)
            except expected as exc:
                # Refused as pickle refuses it, and as omnipickle's own error.
                assert isinstance(exc, omnipickle.PicklingError)
                return
            back = self.loads(data)
            assert type(back) is type(descr)
            if hasattr(descr, "__func__"):
                assert back.__func__.__qualname__ == descr.__func__.__qualname__
            else:
                assert back is descr

        with mock.patch.object(self, "assertRaises", refused_or_carried):
            test()
        assert checked, "the test no longer checks descriptors: this override is stale"


def _local_function() -> Callable[[], str]:
    def g() -> str:
        return "local"

    return g


def listed(cls: type) -> type:
    """Mark the class's tests listed in ``EXPECTED_FAILURES`` (strict) and, for envelopes,
    skip those of ``NOT_FOR_ENVELOPES``."""
    for name, reason in EXPECTED_FAILURES.get(cls.__name__, {}).items():
        setattr(cls, name, unittest.expectedFailure(_own_copy(getattr(cls, name), reason)))
    if getattr(cls, "envelopes", False):
        for name in NOT_FOR_ENVELOPES:
            skip = unittest.skip("reads the bytes of a plain stream")
            setattr(cls, name, skip(_own_copy(getattr(cls, name), "")))
    return cls


def _own_copy(test: Callable[..., Any], reason: str) -> Callable[..., Any]:
    # unittest's decorators mark the function itself, which the other classes inherit.
    @functools.wraps(test)
    def copy(self: Any) -> Any:
        return test(self)

    if reason:
        copy.__doc__ = f"Expected to fail: {reason}"
    return copy


# What the C unpickler raises for truncated and badly stacked streams: omnipickle raises
# TruncatedPayloadError and CorruptPayloadError, which are pickle.UnpicklingErrors.
C_ERRORS: dict[str, Any] = {
    "bad_stack_errors": (pickle.UnpicklingError,),
    "truncated_errors": (pickle.UnpicklingError,),
}


@listed
class RawStreams(
    CarriesWhatPickleRefuses,
    pt.AbstractPickleTests,
    pt.AbstractUnpickleTests,
    pt.BigmemPickleTests,
    unittest.TestCase,
):
    bad_stack_errors = C_ERRORS["bad_stack_errors"]
    truncated_errors = C_ERRORS["truncated_errors"]

    def dumps(self, arg: Any, protocol: int | None = None, **kwargs: Any) -> bytes:
        return omnipickle.dumps(arg, protocol, raw=True, **kwargs)

    def loads(self, buf: bytes, **kwargs: Any) -> Any:
        return omnipickle.loads(buf, **kwargs)

    # pickle's own InMemoryPickleTests leaves these out too: they need a Pickler over a file,
    # or an Unpickler class (PicklerClasses runs them).
    test_framed_write_sizes_with_delayed_writer = None
    test_find_class = None
    test_custom_find_class = None


@listed
class Envelopes(CarriesWhatPickleRefuses, pt.AbstractPickleTests, unittest.TestCase):
    envelopes = True

    def dumps(self, arg: Any, protocol: int | None = None, **kwargs: Any) -> bytes:
        return omnipickle.dumps(arg, protocol, **kwargs)

    def loads(self, buf: bytes, **kwargs: Any) -> Any:
        return omnipickle.loads(buf, **kwargs)

    test_framed_write_sizes_with_delayed_writer = None


@listed
class PicklerClasses(
    CarriesWhatPickleRefuses, pt.AbstractPickleTests, pt.AbstractUnpickleTests, unittest.TestCase
):
    bad_stack_errors = C_ERRORS["bad_stack_errors"]
    truncated_errors = C_ERRORS["truncated_errors"]
    pickler = omnipickle.Pickler
    unpickler = omnipickle.Unpickler

    def dumps(self, arg: Any, proto: int | None = None, **kwargs: Any) -> bytes:
        f = io.BytesIO()
        self.pickler(f, proto, **kwargs).dump(arg)
        return f.getvalue()

    def loads(self, buf: bytes, **kwargs: Any) -> Any:
        return self.unpickler(io.BytesIO(buf), **kwargs).load()


class ModuleFunctions(pt.AbstractPickleModuleTests, unittest.TestCase):
    dump = staticmethod(omnipickle.dump)
    dumps = staticmethod(omnipickle.dumps)
    load = staticmethod(omnipickle.load)
    loads = staticmethod(omnipickle.loads)
    Pickler = omnipickle.Pickler
    Unpickler = omnipickle.Unpickler


class PersistentIds:
    """CPython's PersistentPicklerUnpicklerMixin, with omnipickle's classes."""

    persistent_id: Callable[[Any], Any]
    persistent_load: Callable[[Any], Any]

    def dumps(self, arg: Any, proto: int | None = None) -> bytes:
        outer = self

        class PersPickler(omnipickle.Pickler):
            def persistent_id(self, obj: Any) -> Any:
                return outer.persistent_id(obj)

        f = io.BytesIO()
        PersPickler(f, proto).dump(arg)
        return f.getvalue()

    def loads(self, buf: bytes, **kwargs: Any) -> Any:
        outer = self

        class PersUnpickler(omnipickle.Unpickler):
            def persistent_load(self, pid: Any) -> Any:
                return outer.persistent_load(pid)

        return PersUnpickler(io.BytesIO(buf), **kwargs).load()


class PersistentPicklers(PersistentIds, pt.AbstractPersistentPicklerTests, unittest.TestCase):
    pass


class IdentityPersistentPicklers(
    PersistentIds, pt.AbstractIdentityPersistentPicklerTests, unittest.TestCase
):
    def test_protocol0_is_ascii_only(self) -> None:
        """A persistent id protocol 0 cannot write, and one it cannot read: pickle's errors,
        whose messages omnipickle's contain (Python 3.13's version of this test compares
        messages, and omnipickle's also name the path, the type and the fix)."""
        non_ascii = "\N{EMPTY SET}"
        expected = _pickle_error(lambda: _pickle_with_ids(self, non_ascii))
        with pytest.raises(omnipickle.PicklingError) as dumping:
            self.dumps(non_ascii, 0)
        assert isinstance(dumping.value, type(expected))
        assert str(expected) in str(dumping.value)
        pickled = pickle.PERSID + non_ascii.encode("utf-8") + b"\n."
        expected = _pickle_error(lambda: _unpickle_with_ids(self, pickled))
        with pytest.raises(omnipickle.UnpicklingError) as loading:
            self.loads(pickled)
        assert isinstance(loading.value, type(expected))
        assert str(expected) in str(loading.value)


def _pickle_error(run: Callable[[], Any]) -> BaseException:
    try:
        run()
    except Exception as exc:
        return exc
    raise AssertionError("pickle raised nothing")


def _pickle_with_ids(test: Any, obj: Any) -> None:
    class PersPickler(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            return test.persistent_id(obj)

    PersPickler(io.BytesIO(), 0).dump(obj)


def _unpickle_with_ids(test: Any, data: bytes) -> None:
    class PersUnpickler(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            return test.persistent_load(pid)

    PersUnpickler(io.BytesIO(data)).load()


class PicklerObjects(pt.AbstractPicklerUnpicklerObjectTests, unittest.TestCase):
    pickler_class = omnipickle.Pickler
    unpickler_class = omnipickle.Unpickler


@listed
class DispatchTables(pt.AbstractDispatchTableTests, unittest.TestCase):
    pickler_class = omnipickle.Pickler

    def get_dispatch_table(self) -> Any:
        return pickle.dispatch_table.copy()


@listed
class ChainedDispatchTables(pt.AbstractDispatchTableTests, unittest.TestCase):
    pickler_class = omnipickle.Pickler

    def get_dispatch_table(self) -> Any:
        return collections.ChainMap({}, pickle.dispatch_table)


class ReducerOverrideHooks(pt.AbstractHookTests, unittest.TestCase):
    # As CPython writes it: the hook comes from a mixin listed after the pickler class.
    class CustomPickler(omnipickle.Pickler, pt.AbstractCustomPicklerClass):  # type: ignore[misc]
        pass

    pickler_class = CustomPickler


def test_every_expected_failure_names_a_test_of_this_python() -> None:
    """A listed name that pickletester no longer has would hide nothing and mean nothing."""
    classes = {cls.__name__: cls for cls in (RawStreams, Envelopes, PicklerClasses)}
    classes.update(DispatchTables=DispatchTables, ChainedDispatchTables=ChainedDispatchTables)
    for cls_name, failures in EXPECTED_FAILURES.items():
        for name in failures:
            assert callable(getattr(classes[cls_name], name, None)), (cls_name, name)
    for name in NOT_FOR_ENVELOPES:
        assert callable(getattr(pt.AbstractPickleTests, name, None)), name
