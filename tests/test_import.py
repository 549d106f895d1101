"""Importing omnipickle has no side effects (checked in a fresh interpreter)."""

from __future__ import annotations

from conftest import check_python

_SNAPSHOT = """
import copyreg, pickle, sys, warnings
before = (dict(copyreg.dispatch_table), dict(copyreg._extension_registry),
          list(warnings.filters), pickle.Pickler, pickle.Unpickler, pickle.dumps, pickle.loads,
          dict(getattr(pickle._Pickler, 'dispatch', {})))
import omnipickle
after = (dict(copyreg.dispatch_table), dict(copyreg._extension_registry),
         list(warnings.filters), pickle.Pickler, pickle.Unpickler, pickle.dumps, pickle.loads,
         dict(getattr(pickle._Pickler, 'dispatch', {})))
print(before == after)
print(sorted(m for m in ('cloudpickle', 'dill', 'zstandard', 'lz4', 'numpy') if m in sys.modules))
"""


def test_import_changes_no_global_state_of_pickle_copyreg_or_warnings() -> None:
    lines = check_python(code=_SNAPSHOT).split("\n")
    assert lines[0] == "True"


def test_import_imports_no_optional_package() -> None:
    lines = check_python(code=_SNAPSHOT).split("\n")
    assert lines[1] == "[]"


def test_using_dill_for_one_object_leaves_stdlib_picklers_alone() -> None:
    code = (
        "import copyreg, pickle, weakref, omnipickle, fractions\n"
        "before = dict(copyreg.dispatch_table)\n"
        "f = fractions.Fraction(1, 2)\n"
        "class A: pass\n"
        "a = A()\n"
        "omnipickle.loads(omnipickle.dumps([a, weakref.ref(a)]))\n"
        "print(before == dict(copyreg.dispatch_table))\n"
    )
    assert check_python(code=code).strip() == "True"
